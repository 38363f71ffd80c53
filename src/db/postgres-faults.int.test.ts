// Faults on a PostgreSQL this test starts itself (initdb + pg_ctl on a free port; never the shared
// one): a flush whose reply is lost is reported as OutcomeUnknownError (and was in fact stored), a
// connection cut before the flush reached the server is OutcomeUnknownError too (the client cannot
// tell the two apart) and nothing was stored, a stopped server is a DependencyError (no crash),
// service resumes by itself when the server is back, and two processes' seqs follow the server's
// own commit timestamps.
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DependencyError, OutcomeUnknownError } from '../errors.js';
import { msg } from './database.contract.js';
import { openDatabase, type KyselyDatabase } from './index.js';
import { DbOutboxRelay } from './outbox-relay.js';
import { spawnChild } from '../../test/helpers/db/child.js';
import { testDbConfig } from '../../test/helpers/db/config.js';
import { hasPgBinaries, startCluster, type Cluster } from '../../test/helpers/db/pg-cluster.js';
import { PgFaultProxy } from '../../test/helpers/db/pg-proxy.js';
import { RecordingEventLog } from '../../test/helpers/db/recording-event-log.js';
import { eventually } from '../../test/helpers/eventually.js';

const silent = pino({ level: 'silent' });

describe.skipIf(!hasPgBinaries())('PostgreSQL faults (own cluster)', () => {
  let cluster: Cluster;
  let proxy: PgFaultProxy;
  let db: KyselyDatabase;

  beforeAll(async () => {
    cluster = await startCluster(['track_commit_timestamp=on']);
    proxy = new PgFaultProxy(cluster.port);
    const port = await proxy.listen();
    db = await openDatabase(
      testDbConfig({ url: `postgres://postgres@127.0.0.1:${port}/postgres`, autoMigrate: true, poolSize: 4, connectTimeoutMs: 2000 }),
      silent,
    );
  });
  afterAll(async () => {
    await db?.close();
    await proxy?.close();
    await cluster?.destroy();
  });

  it('a flush whose reply is lost is OutcomeUnknownError, and a retry with the same clientMessageId finds it stored', async () => {
    // A flush is one autocommit call: its reply comes after COMMIT.
    proxy.fault = { kind: 'lose-reply', match: /chatd_accept_batch/ };
    const m = msg('faults', 'lost-reply', 'did it land?', { clientMessageId: 'c-1' });
    const err = await db.messages.accept(m).catch((e: unknown) => e);
    expect(proxy.fired).toBe(1);
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    const retry = await db.messages.accept(m);
    expect(retry.kind).toBe('duplicate');
    expect(retry.kind === 'duplicate' && retry.message.seq).toBe(1);
    // Its outbox row was committed with it: the relay will publish it.
    expect(await db.outbox.pendingCount()).toBeGreaterThanOrEqual(1);
  });

  it('a connection cut before the flush reached the server is OutcomeUnknownError, and nothing was stored', async () => {
    proxy.fault = { kind: 'drop-before', match: /chatd_accept_batch/ };
    const m = msg('faults', 'cut-early', 'not stored', { clientMessageId: 'c-2' });
    const before = proxy.fired;
    const err = await db.messages.accept(m).catch((e: unknown) => e);
    expect(proxy.fired).toBe(before + 1);
    // The call is one autocommit statement: a connection lost while it is out may have committed.
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    const retry = await db.messages.accept(m);
    expect(retry.kind).toBe('created');
    expect(retry.kind === 'created' && retry.message.seq).toBe(1);
  });

  it('two processes: seq order is the order the server committed in', async () => {
    const config = testDbConfig({ url: cluster.url });
    const child = await spawnChild('db-child', { CHATD_TEST_DB: JSON.stringify(config) });
    const direct = await openDatabase(config, silent);
    try {
      await child.next((m) => m.event === 'ready');
      const sessions = ['ct-a', 'ct-b'];
      child.send({ op: 'write', tenant: 'ct', sessions, count: 200, concurrency: 16, label: 'child' });
      let next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < 200) {
            const i = next++;
            await direct.messages.accept(msg('ct', sessions[i % 2]!, `parent ${i}`));
          }
        }),
      );
      await child.next((m) => m.event === 'written');
      for (const sid of sessions) {
        const { rows } = await import('kysely').then(({ sql }) =>
          sql<{ seq: number; ts: string }>`
            select seq, to_char(pg_xact_commit_timestamp(xmin), 'YYYY-MM-DD HH24:MI:SS.US') as ts
            from messages where session_id = ${sid} order by seq`.execute(direct.kysely),
        );
        expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 200 }, (_, k) => k + 1));
        const ts = rows.map((r) => r.ts);
        expect(ts.every((t) => t !== null)).toBe(true);
        expect(ts).toEqual([...ts].sort());
      }
    } finally {
      await child.kill();
      await direct.close();
    }
  });

  it('a stopped server is DependencyError everywhere, nothing crashes, and service resumes when it is back', async () => {
    const events = new RecordingEventLog();
    let failedSweeps = 0;
    const relayLog = pino({ level: 'debug' }, { write: (line: string) => void (line.includes('outbox sweep failed') && failedSweeps++) });
    const relay = new DbOutboxRelay(db.outbox, events, relayLog, { staleAfterMs: 0, sweepIntervalMs: 100 }).start();
    try {
      await cluster.stop('immediate');
      const err = await db.messages.accept(msg('faults', 'down', 'refused', { clientMessageId: 'd-1' })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DependencyError);
      await expect(db.messages.history({ tenantId: 'faults', sessionId: 'down', limit: 5 })).rejects.toBeInstanceOf(DependencyError);
      await expect(db.ping()).rejects.toBeInstanceOf(DependencyError);
      // Let the relay's sweeps fail a few times (they must only log).
      const before = failedSweeps;
      await eventually(() => failedSweeps >= before + 3, 'three failed outbox sweeps');
      await cluster.start();
      await expect
        .poll(
          () =>
            db.ping().then(
              () => true,
              () => false,
            ),
          { timeout: 30_000, interval: 200 },
        )
        .toBe(true);
      const ok = await db.messages.accept(msg('faults', 'down', 'accepted', { clientMessageId: 'd-2' }));
      expect(ok.kind).toBe('created');
      // The refused message was never stored; the outbox drains (the lost-reply message included).
      const page = await db.messages.history({ tenantId: 'faults', sessionId: 'down', limit: 5 });
      expect(page.messages.map((m) => m.text)).toEqual(['accepted']);
      await expect.poll(() => db.outbox.pendingCount(), { timeout: 30_000, interval: 100 }).toBe(0);
      expect(events.published.some((m) => m.text === 'did it land?')).toBe(true);
    } finally {
      await relay.stop();
    }
  });
});
