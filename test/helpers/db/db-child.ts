// The second process of the two-process tests (see child.ts). Env: CHATD_TEST_DB (a DatabaseConfig
// as JSON). Commands on stdin, one JSON object a line:
//   { op: 'write', sessions: string[], tenant, count, concurrency, label } → accepts `count` messages
//       round-robin over `sessions`, `concurrency` at a time; prints { event: 'written', results }
//   { op: 'commit-no-publish', tenant, session, count } → accepts messages and hands them to a relay
//       whose publish never completes (a node that dies between commit and publish); prints
//       { event: 'committed', ids } and waits to be killed.
import readline from 'node:readline';
import pino from 'pino';
import { emptyMeta } from '../../../src/chat/message.js';
import { openDatabase, type DatabaseConfig } from '../../../src/db/index.js';
import { DbOutboxRelay } from '../../../src/db/outbox-relay.js';
import { RecordingEventLog } from './recording-event-log.js';

const out = (m: unknown) => process.stdout.write(`${JSON.stringify(m)}\n`);
const config = JSON.parse(process.env.CHATD_TEST_DB ?? '{}') as DatabaseConfig;
const db = await openDatabase(config, pino({ level: 'silent' }));
out({ event: 'ready', pid: process.pid });

const message = (tenantId: string, sessionId: string, text: string) => ({
  tenantId,
  sessionId,
  sender: { type: 'visitor' as const, id: sessionId, verified: false },
  text,
  meta: emptyMeta(),
  conversation: {},
});

for await (const line of readline.createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line) as Record<string, unknown>;
  if (cmd.op === 'write') {
    const sessions = cmd.sessions as string[];
    const count = cmd.count as number;
    const concurrency = cmd.concurrency as number;
    const results: { i: number; sessionId: string; seq: number; id: string }[] = [];
    let next = 0;
    const worker = async () => {
      while (next < count) {
        const i = next++;
        const sessionId = sessions[i % sessions.length]!;
        const r = await db.messages.accept(message(cmd.tenant as string, sessionId, `${cmd.label as string} ${i}`));
        if (r.kind !== 'created') throw new Error(`unexpected ${r.kind}`);
        results.push({ i, sessionId, seq: r.message.seq, id: r.message.id });
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    out({ event: 'written', results });
  } else if (cmd.op === 'commit-no-publish') {
    const events = new RecordingEventLog();
    events.mode = 'hang';
    const relay = new DbOutboxRelay(db.outbox, events, pino({ level: 'silent' }), { sweepIntervalMs: 3_600_000 });
    const ids: string[] = [];
    for (let i = 0; i < (cmd.count as number); i++) {
      const r = await db.messages.accept(message(cmd.tenant as string, cmd.session as string, `doomed ${i}`));
      if (r.kind !== 'created') throw new Error(`unexpected ${r.kind}`);
      relay.publishNow(r.message, r.outboxId);
      ids.push(r.message.id);
    }
    out({ event: 'committed', ids });
  } else if (cmd.op === 'exit') {
    await db.close();
    process.exit(0);
  }
}
