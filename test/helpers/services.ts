// Real services for tests, isolated per test file: a unique Redis key prefix, a fresh PostgreSQL
// schema. Outside CI a missing service skips the tests with a visible message; with CI=true it fails.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';

export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

/** A prefix no other test run uses, for Redis keys and channels. */
export const uniquePrefix = (label = 't') => `test:${label}:${randomBytes(5).toString('hex')}:`;
/** A PostgreSQL schema name no other test run uses. */
export const uniqueSchema = (label = 't') => `test_${label.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${randomBytes(5).toString('hex')}`;

/** Drops a test's schema (and everything in it) on the shared PostgreSQL; nothing if it is not there. */
export async function dropSchema(schema: string, url = DATABASE_URL): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`drop schema if exists "${schema}" cascade`);
  } finally {
    await client.end();
  }
}

function reachable(url: string, timeoutMs = 1000): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: u.hostname, port: Number(u.port) }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.setTimeout(timeoutMs, () => (socket.destroy(), resolve(false)));
    socket.on('error', () => resolve(false));
  });
}

/**
 * Whether the tests needing `service` may run. Use as `describe.skipIf(!(await hasRedis()))`.
 * With CI=true an unreachable service throws, failing the file.
 */
export async function has(service: 'redis' | 'postgres'): Promise<boolean> {
  const url = service === 'redis' ? REDIS_URL : DATABASE_URL;
  const ok = await reachable(url);
  if (!ok) {
    const msg = `${service} is not reachable at ${url.replace(/:[^:@/]+@/, ':***@')}`;
    if (IN_CI) throw new Error(`${msg}: CI=true, so tests that need it fail instead of skipping`);
    process.stderr.write(`\n  ⚠ SKIPPING tests that need ${service}: ${msg}\n`);
  }
  return ok;
}
export const hasRedis = () => has('redis');
export const hasPostgres = () => has('postgres');

/** A free TCP port on 127.0.0.1 (for a redis-server or PostgreSQL the test starts itself). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}
