// Preloaded into a benchmarked chatd (`node --import ./count-queries.mjs bin/chatd serve …`): counts
// the database round trips the process makes — every pg client query (the pool's included) and every
// PGlite query or exec — and writes the counts as JSON to $CHATD_BENCH_COUNTS each time it receives
// SIGUSR2 (chatd itself leaves that signal alone). pg and PGlite are external packages of the build,
// so this process's chatd imports the very prototypes patched here.
import { writeFileSync } from 'node:fs';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';

const counts = { pg: 0, pglite: 0 };

const pgQuery = pg.Client.prototype.query;
pg.Client.prototype.query = function (...args) {
  counts.pg++;
  return pgQuery.apply(this, args);
};

// query/exec live on PGlite's base class; transaction() runs its statements through them.
const base = Object.getPrototypeOf(PGlite.prototype);
for (const name of ['query', 'exec']) {
  const original = base[name];
  base[name] = function (...args) {
    counts.pglite++;
    return original.apply(this, args);
  };
}

const out = process.env.CHATD_BENCH_COUNTS;
process.on('SIGUSR2', () => {
  if (out) writeFileSync(out, JSON.stringify(counts));
});
