// Counts the garbage collections in a `--trace-gc` log (from `npm run bench -- … --trace-gc DIR`):
// scavenges (young generation) and mark-compacts, their total and longest pause.
//   node scripts/bench/gc-count.mjs FILE.gc.log [--from-ms A --to-ms B] [--events N]
// --from-ms/--to-ms keep the collections in that window of the process's life (the result JSON's
// `window.fromMs`/`toMs`, counted from just before the spawn: a few ms early); --events N adds
// the counts per 1,000 events (N = the events the server handled in the window). `allocatedMB` is
// the heap growth from the end of one collection to the start of the next, summed over the window's
// collections: what the process allocated from its last collection before the window to its last
// one in it (to within one young generation: run with a small fixed one,
// `--node-flags="--min-semi-space-size=1 --max-semi-space-size=1"`, for a fine-grained figure).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: o, positionals } = parseArgs({
  allowPositionals: true,
  options: { 'from-ms': { type: 'string', default: '0' }, 'to-ms': { type: 'string', default: '1e12' }, events: { type: 'string' } },
});
const from = Number(o['from-ms']);
const to = Number(o['to-ms']);
// [pid:0x…]     1234 ms: Scavenge 10.1 (12.3) -> 9.8 (13.3) MB, 1.23 / 0.00 ms  (…) allocation failure;
const line =
  /^\[\d+:0x[0-9a-f]+\]\s+(\d+) ms: (Scavenge|Mark-Compact|Mark-sweep|Minor Mark-Compact)\b\S* ([\d.]+) \([\d.]+\) -> ([\d.]+) .*?MB, ([\d.]+) \/ [\d.]+ ms/;
const kinds = new Map();
let lastAfter;
let allocated = 0;
for (const l of readFileSync(positionals[0], 'utf8').split('\n')) {
  const m = line.exec(l);
  if (!m) continue;
  const at = Number(m[1]);
  const before = Number(m[3]);
  const after = Number(m[4]);
  const prev = lastAfter;
  lastAfter = after;
  if (at < from || at > to) continue;
  if (prev !== undefined) allocated += before - prev;
  const k = kinds.get(m[2]) ?? { count: 0, pauseMs: 0, maxMs: 0 };
  const pause = Number(m[5]);
  k.count++;
  k.pauseMs += pause;
  k.maxMs = Math.max(k.maxMs, pause);
  kinds.set(m[2], k);
}
const per = o.events ? 1000 / Number(o.events) : undefined;
const out = Object.fromEntries(
  [...kinds].map(([kind, k]) => [
    kind,
    {
      count: k.count,
      pauseMs: Number(k.pauseMs.toFixed(2)),
      maxMs: k.maxMs,
      ...(per ? { per1kEvents: Number((k.count * per).toFixed(3)) } : {}),
    },
  ]),
);
out.allocatedMB = Number(allocated.toFixed(1));
if (o.events) out.allocatedBytesPerEvent = Math.round((allocated * 2 ** 20) / Number(o.events));
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
