#!/usr/bin/env node
// The inbox list at scale, on PostgreSQL:
//   node scripts/bench/conversations-list.mjs [--conversations 100000] [--messages-per 10]
//        [--others 4] [--others-conversations 20000] [--repeat 30] [--url postgres://…] [--keep]
// Seeds a fresh schema with one big tenant (100k conversations, 1M messages by default, statuses and
// assignees spread over them) plus `--others` tenants beside it, then for each filter of
// GET /api/chat/conversations (status × assignee) reads the first page and the 20th page (following
// nextCursor) `--repeat` times through the same database code the api role runs
// (`db.conversations.list`), and prints the server time per page (median and p95, in ms). It also runs
// EXPLAIN (ANALYZE, BUFFERS) on each filter's actual SQL (captured from the pg client) and reports
// the scans it uses: the run fails if any plan reads conversations or messages with a sequential
// scan. The schema is dropped at the end unless --keep. docs/benchmarks.md records the numbers.
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { importBundled } from './lib/bundle.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const { values: o } = parseArgs({
  options: {
    conversations: { type: 'string', default: '100000' },
    'messages-per': { type: 'string', default: '10' },
    others: { type: 'string', default: '4' },
    'others-conversations': { type: 'string', default: '20000' },
    repeat: { type: 'string', default: '30' },
    pages: { type: 'string', default: '20' },
    url: {
      type: 'string',
      default: process.env.DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    },
    keep: { type: 'boolean', default: false },
  },
});
const N = Number(o.conversations);
const PER = Number(o['messages-per']);
const OTHERS = Number(o.others);
const OTHER_N = Number(o['others-conversations']);
const REPEAT = Number(o.repeat);
const DEEP = Number(o.pages);
const AGENTS = 20;

const { openDatabase } = await importBundled(
  path.join(root, 'src/db/index.ts'),
  path.join(root, 'node_modules', '.cache', 'chatd-bench', `db-${process.pid}.mjs`),
  { target: 'node20' },
);
const { default: pino } = await import('pino');

// Every query the database code sends, so EXPLAIN runs on exactly the SQL the list ran.
let capture = null;
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (...args) {
  const [q, values] = args;
  if (capture && typeof q === 'string' && /from conversations c/.test(q)) capture.push({ text: q, values });
  else if (capture && q && typeof q === 'object' && /from conversations c/.test(q.text))
    capture.push({ text: q.text, values: q.values ?? values });
  return query.apply(this, args);
};

const schema = `bench_inbox_${randomBytes(4).toString('hex')}`;
const admin = new pg.Client({ connectionString: o.url });
await admin.connect();
const log = (s) => process.stderr.write(`${s}\n`);
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;

/** One tenant's conversations and messages, generated in SQL (statuses 3:1:1 open/pending/resolved; a third unassigned). */
async function seed(tenant, n, per) {
  const t0 = performance.now();
  await admin.query(`set search_path to ${schema}`);
  await admin.query(
    `insert into conversations (id, tenant_id, session_id, fingerprint, status, last_seq, created_at, updated_at, assignee,
       agents_read_seq, visitor_read_seq, unread_by_agents, unread_by_visitor, message_count, last_message_id, last_activity_at)
     select md5($1 || ':c:' || g)::uuid, $1, $1 || '-s' || g, 'fp', (array['open','open','open','pending','resolved'])[1 + g % 5], $3,
            now() - make_interval(secs => g * 60), now(),
            case when g % 3 = 0 then null else 'agent-' || ((g / 5) % ${AGENTS}) end,
            $3 - 1, $3, 1, 0, $3, md5($1 || ':m:' || g || ':' || $3)::uuid,
            -- chatd writes activity times from JavaScript dates: millisecond precision, as here
            date_trunc('milliseconds', now() - make_interval(secs => g * 7) + make_interval(secs => (g % 13) * 0.001))
     from generate_series(1, $2::int) g`,
    [tenant, n, per],
  );
  // Messages in chunks (one statement per 50k conversations keeps each transaction's memory small).
  for (let from = 1; from <= n; from += 50_000) {
    const to = Math.min(n, from + 49_999);
    await admin.query(
      `insert into messages (id, tenant_id, conversation_id, session_id, seq, sender_type, sender_id, sender_verified, text,
         client_message_id, content_hash, meta, created_at)
       select md5($1 || ':m:' || g || ':' || s)::uuid, $1, md5($1 || ':c:' || g)::uuid, $1 || '-s' || g, s,
              case when s % 2 = 1 then 'visitor' else 'agent' end,
              case when s % 2 = 1 then $1 || '-s' || g else 'agent-' || ((g / 5) % ${AGENTS}) end,
              s % 2 = 0, 'message ' || s || ' of conversation ' || g, null, md5('m' || s),
              '{"domain":"bench.example","origin":"","url":"","referrer":"","siteId":""}'::jsonb,
              now() - make_interval(secs => g * 7) - make_interval(secs => ($4::int - s))
       from generate_series($2::int, $3::int) g, generate_series(1, $4::int) s`,
      [tenant, from, to, per],
    );
  }
  log(`seeded ${tenant}: ${n} conversations, ${n * per} messages in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** The scans of a plan (node type and relation), depth first. */
function scans(plan, out = []) {
  if (plan['Relation Name'] || /Scan/.test(plan['Node Type']))
    out.push(
      `${plan['Node Type']}${plan['Index Name'] ? ` ${plan['Index Name']}` : ''}${plan['Relation Name'] ? ` on ${plan['Relation Name']}` : ''}`,
    );
  for (const p of plan.Plans ?? []) scans(p, out);
  return out;
}

let db;
const results = [];
let failed = false;
try {
  // The migrations create the tables; the seed goes in before the server's code reads anything.
  db = await openDatabase(
    {
      dataDir: os.tmpdir(),
      database: { url: o.url, schema, autoMigrate: true, poolSize: 4, connectTimeoutMs: 5000, statementTimeoutMs: 60000 },
    },
    pino({ level: 'warn' }),
  );
  await seed('big', N, PER);
  for (let t = 1; t <= OTHERS; t++) await seed(`other${t}`, OTHER_N, PER);
  await admin.query(`analyze ${schema}.conversations`);
  await admin.query(`analyze ${schema}.messages`);
  const sizes = (
    await admin.query(
      `select (select count(*) from ${schema}.conversations)::int as c, (select count(*) from ${schema}.messages)::int as m`,
    )
  ).rows[0];
  log(`tables: ${sizes.c} conversations, ${sizes.m} messages`);

  const filters = [];
  for (const status of [undefined, 'open', 'pending', 'resolved'])
    for (const assignee of [undefined, null, 'agent-7']) filters.push({ status, assignee });

  for (const f of filters) {
    const q = { tenantId: 'big', status: f.status, assignee: f.assignee, limit: 50 };
    // The 20th page's cursor, by following nextCursor from the first.
    let cursor;
    for (let p = 1; p < DEEP; p++) {
      const page = await db.conversations.list({ ...q, before: cursor });
      if (!page.nextCursor) break;
      cursor = page.nextCursor;
    }
    const time = async (before) => {
      const ms = [];
      for (let i = 0; i < REPEAT; i++) {
        const t0 = performance.now();
        const page = await db.conversations.list({ ...q, before });
        ms.push(performance.now() - t0);
        if (page.conversations.length === 0) throw new Error(`empty page for ${JSON.stringify(f)}`);
        if (page.conversations.some((c) => (f.status && c.status !== f.status) || (f.assignee !== undefined && c.assignee !== f.assignee)))
          throw new Error(`a page for ${JSON.stringify(f)} holds a conversation outside its filter`);
      }
      return ms.sort((a, b) => a - b);
    };
    const first = await time(undefined);
    const deep = cursor ? await time(cursor) : [];
    capture = [];
    await db.conversations.list({ ...q, before: cursor });
    const captured = capture.at(-1);
    capture = null;
    const explained = await admin.query({ text: `explain (analyze, buffers, format json) ${captured.text}`, values: captured.values });
    const plan = explained.rows[0]['QUERY PLAN'][0];
    const used = scans(plan.Plan);
    const seq = used.filter((s) => /^Seq Scan on (conversations|messages)$/.test(s));
    if (seq.length) failed = true;
    results.push({
      status: f.status ?? 'all',
      assignee: f.assignee === undefined ? 'any' : f.assignee === null ? 'none' : f.assignee,
      firstP50: quantile(first, 0.5),
      firstP95: quantile(first, 0.95),
      deepP50: deep.length ? quantile(deep, 0.5) : null,
      deepP95: deep.length ? quantile(deep, 0.95) : null,
      explainMs: plan['Execution Time'],
      scans: [...new Set(used)].join('; '),
    });
  }
} finally {
  pg.Client.prototype.query = query;
  await db?.close?.().catch(() => undefined);
  if (!o.keep) await admin.query(`drop schema if exists ${schema} cascade`).catch(() => undefined);
  await admin.end();
}

const f2 = (x) => (x === null ? '–' : x.toFixed(2));
console.log(
  `\nInbox list, tenant "big": ${N} conversations, ${N * PER} messages; ${OTHERS} other tenants of ${OTHER_N}. ${REPEAT} reads each, 50 per page.`,
);
console.log(
  `load average ${os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}\n`,
);
console.log('| status | assignee | page 1 p50 / p95 (ms) | page 20 p50 / p95 (ms) | EXPLAIN ANALYZE (ms) | scans |');
console.log('|---|---|---|---|---|---|');
for (const r of results)
  console.log(
    `| ${r.status} | ${r.assignee} | ${f2(r.firstP50)} / ${f2(r.firstP95)} | ${f2(r.deepP50)} / ${f2(r.deepP95)} | ${f2(r.explainMs)} | ${r.scans} |`,
  );
console.log(JSON.stringify({ conversations: N, messages: N * PER, others: OTHERS, results }));
if (failed) {
  console.error('a plan read conversations or messages with a sequential scan');
  process.exit(1);
}
