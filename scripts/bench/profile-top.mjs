// Summarises a V8 .cpuprofile (from `npm run bench -- <scenario> --profile DIR`): the functions
// with the most self time, and the functions with the most inclusive time (self + callees).
//   node scripts/bench/profile-top.mjs FILE.cpuprofile [--top 30] [--from-ms A --to-ms B]
// --from-ms/--to-ms keep only the samples in that window after the profile started (the result
// JSON's `window.fromMs`/`toMs`: the load generator's measured window, startup left out).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: o, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: 'string', default: '30' },
    'from-ms': { type: 'string', default: '0' },
    'to-ms': { type: 'string', default: '1e12' },
  },
});
const prof = JSON.parse(readFileSync(positionals[0], 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map();
const counts = new Map();
const from = Number(o['from-ms']) * 1000;
const to = Number(o['to-ms']) * 1000;
let t = 0;
let total = 0;
prof.samples.forEach((s, i) => {
  t += prof.timeDeltas[i];
  if (t < from || t > to) return;
  counts.set(s, (counts.get(s) ?? 0) + 1);
  total++;
});
const key = (n) =>
  `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`;
for (const [id, c] of counts) {
  const k = key(byId.get(id));
  self.set(k, (self.get(k) ?? 0) + c);
}
const idle = ['(idle)', '(program)', '(garbage collector)'];
const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(o.top));
const busy = total - [...self.entries()].filter(([k]) => idle.includes(k.split(' ')[0])).reduce((s, [, c]) => s + c, 0);
process.stdout.write(`samples ${total} (busy excluding idle/program/gc: ${busy})\n`);
for (const [k, c] of rows)
  process.stdout.write(
    `${((100 * c) / total).toFixed(1).padStart(5)}%  ${((100 * c) / Math.max(1, busy)).toFixed(1).padStart(5)}% of busy  ${k}\n`,
  );

// Inclusive (total) time: every function on the sampled stack, counted once per sample.
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const inclusive = new Map();
for (const [id, c] of counts) {
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const k = key(byId.get(cur));
    if (seen.has(k)) continue;
    seen.add(k);
    inclusive.set(k, (inclusive.get(k) ?? 0) + c);
  }
}
process.stdout.write(`\ninclusive (function and everything it called), top ${o.top}:\n`);
const skip = new Set(['(root)', ...idle]);
for (const [k, c] of [...inclusive.entries()]
  .filter(([k]) => !skip.has(k.split(' ')[0]))
  .sort((a, b) => b[1] - a[1])
  .slice(0, Number(o.top)))
  process.stdout.write(
    `${((100 * c) / total).toFixed(1).padStart(5)}%  ${((100 * c) / Math.max(1, busy)).toFixed(1).padStart(5)}% of busy  ${k}\n`,
  );
