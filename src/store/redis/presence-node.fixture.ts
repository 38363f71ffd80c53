// A presence node in a child process, for the test that kills one with SIGKILL: it adds the given
// connections and heartbeats them until it dies. Bundled by the test with esbuild and run by node.
// argv: redisUrl prefix nodeId tenantId userId[,userId…] heartbeatMs ttlMs
import type { Logger } from 'pino';
import type { PresenceConnection } from '../ports.js';
import { RedisStore } from './redis-store.js';

const [url, prefix, nodeId, tenantId, users, heartbeatMs, ttlMs] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
  string,
  string,
];
const quiet = { warn() {}, info() {}, error() {}, debug() {}, child: () => quiet } as unknown as Logger;

const store = new RedisStore({ url, prefix }, quiet);
await store.connect();
const conns: PresenceConnection[] = users.split(',').map((userId, i) => ({
  connId: `${nodeId}-c${i}`,
  tenantId,
  userId,
  sessionId: `s-${userId}`,
  role: 'visitor',
  connectedAt: new Date().toISOString(),
  domain: 'd',
  origin: 'o',
  url: 'u',
}));
for (const c of conns) await store.presence.add(nodeId, c, Number(ttlMs));
setInterval(() => {
  store.presence.heartbeat(nodeId, conns, Number(ttlMs)).catch(() => undefined);
}, Number(heartbeatMs));
process.stdout.write('READY\n');
