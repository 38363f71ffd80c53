#!/usr/bin/env node
// Group commit vs one transaction per message, on the same PostgreSQL, in one run:
//   node scripts/bench/group-commit.mjs [--senders 64] [--seconds 5] [--pool 10] [--url postgres://…]
// `--senders` concurrent senders each write to their own conversation as fast as their
// acknowledgements come back, first through accept() (group commit), then through acceptSingle()
// (the same SQL, one transaction per message), each for `--seconds`, in a fresh schema that is
// dropped afterwards. Also measures the single-row INSERT floor: one connection, one autocommit
// INSERT at a time (what one synchronous commit costs on this machine).
// Prints a table and a JSON line; docs/deployment.md "Storage" records the numbers.
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { importBundled } from './lib/bundle.mjs';
import pg from 'pg';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const { values: o } = parseArgs({
  options: {
    senders: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '5' },
    pool: { type: 'string', default: '10' },
    url: {
      type: 'string',
      default: process.env.DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    },
  },
});
const senders = Number(o.senders);
const seconds = Number(o.seconds);
const poolSize = Number(o.pool);

// The database code is TypeScript: bundle it next to node_modules so its imports resolve.
const { openDatabase } = await importBundled(
  path.join(root, 'src/db/index.ts'),
  path.join(root, 'node_modules', '.cache', 'chatd-bench', `db-${process.pid}.mjs`),
  { target: 'node20' },
);
const { default: pino } = await import('pino');

const schema = `bench_gc_${randomBytes(4).toString('hex')}`;
const admin = new pg.Client({ connectionString: o.url });
await admin.connect();
const settings = Object.fromEntries(
  (
    await admin.query(
      `select name, setting from pg_settings where name in ('fsync', 'synchronous_commit', 'wal_sync_method', 'server_version')`,
    )
  ).rows.map((r) => [r.name, r.setting]),
);

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;

async function run(mode, db) {
  const latencies = [];
  let flushes = 0;
  let flushed = 0;
  db.__onFlush = (n) => {
    flushes++;
    flushed += n;
  };
  const deadline = performance.now() + seconds * 1000;
  const meta = { domain: 'bench', origin: '', url: '', referrer: '', siteId: '' };
  await Promise.all(
    Array.from({ length: senders }, async (_, s) => {
      const sessionId = `${mode}-${s}-${schema}`;
      for (let i = 0; performance.now() < deadline; i++) {
        const message = {
          tenantId: 'bench',
          sessionId,
          sender: { type: 'visitor', id: sessionId, verified: false },
          text: `message ${i} from sender ${s}`,
          clientMessageId: `c${i}`,
          meta,
          conversation: { fingerprint: 'fp' },
        };
        const t0 = performance.now();
        const r = mode === 'group' ? await db.messages.accept(message) : await db.messages.acceptSingle(message);
        latencies.push(performance.now() - t0);
        if (r.kind !== 'created') throw new Error(`unexpected ${r.kind}`);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return {
    mode,
    messages: latencies.length,
    perSecond: latencies.length / seconds,
    p50ms: quantile(latencies, 0.5),
    p99ms: quantile(latencies, 0.99),
    avgBatch: mode === 'group' && flushes > 0 ? flushed / flushes : 1,
  };
}

async function insertFloor() {
  const c = new pg.Client({ connectionString: o.url });
  await c.connect();
  await c.query(`create table ${schema}.floor (id bigint generated always as identity primary key, body text not null)`);
  const latencies = [];
  const deadline = performance.now() + Math.min(seconds, 3) * 1000;
  while (performance.now() < deadline) {
    const t0 = performance.now();
    await c.query(`insert into ${schema}.floor (body) values ($1)`, ['x']);
    latencies.push(performance.now() - t0);
  }
  await c.end();
  latencies.sort((a, b) => a - b);
  return { perSecond: latencies.length / Math.min(seconds, 3), p50ms: quantile(latencies, 0.5) };
}

let db;
try {
  const flushHook = (n, ms) => db?.__onFlush?.(n, ms);
  db = await openDatabase(
    {
      dataDir: os.tmpdir(),
      database: { url: o.url, schema, autoMigrate: true, poolSize, connectTimeoutMs: 5000, statementTimeoutMs: 30000 },
    },
    pino({ level: 'warn' }),
    { onFlush: flushHook },
  );
  const floor = await insertFloor();
  const group = await run('group', db);
  const single = await run('single', db);
  const ratio = group.perSecond / single.perSecond;
  const fmt = (n, d = 0) => n.toFixed(d);
  const rows = [
    ['single-row INSERT floor (1 connection, autocommit)', fmt(floor.perSecond), fmt(floor.p50ms, 2), '-', '-'],
    [
      `one transaction per message (${senders} senders, pool ${poolSize})`,
      fmt(single.perSecond),
      fmt(single.p50ms, 2),
      fmt(single.p99ms, 2),
      '1',
    ],
    [
      `group commit (${senders} senders, pool ${poolSize})`,
      fmt(group.perSecond),
      fmt(group.p50ms, 2),
      fmt(group.p99ms, 2),
      fmt(group.avgBatch, 1),
    ],
  ];
  const head = ['path', 'msg/s', 'p50 ms', 'p99 ms', 'avg batch'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(
    `PostgreSQL ${settings.server_version} (fsync=${settings.fsync}, synchronous_commit=${settings.synchronous_commit}, wal_sync_method=${settings.wal_sync_method}), ${os.cpus().length} CPUs, ${seconds} s per path`,
  );
  console.log(line(head));
  for (const r of rows) console.log(line(r));
  console.log(`group commit / one transaction per message = ${ratio.toFixed(2)}x (target >= 3x)`);
  console.log(JSON.stringify({ senders, seconds, poolSize, settings, floor, single, group, ratio }));
} finally {
  await db?.close();
  await admin.query(`drop schema if exists ${schema} cascade`).catch(() => undefined);
  await admin.end();
}
