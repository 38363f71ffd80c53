// chatd on a Redis Cluster that takes TLS only (clients, replication and the cluster bus) and a
// password, named the way an operator names a managed cluster: REDIS_CLUSTER_NODES with rediss://
// seeds carrying the password, and the private CA in NODE_EXTRA_CA_CERTS. `chatd presence ls`
// reads the guide's online_users hash through the cluster (a real command, a fresh process); the
// same without trusting the CA, or with a wrong password, fails with one clear line that does not
// show the password.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChatd } from '../helpers/chatd-process.js';
import { RedisCluster, hasClusterBinaries } from '../helpers/redis-cluster.js';
import { IN_CI, uniquePrefix } from '../helpers/services.js';

const PASSWORD = 'cluster-pass-0123456789';

/** openssl makes the certificate; with CI=true its absence fails the file instead of skipping it. */
function hasOpenssl(): boolean {
  if (spawnSync('openssl', ['version']).status === 0) return true;
  const msg = 'openssl not installed (it makes the TLS cluster its certificate)';
  if (IN_CI) throw new Error(`${msg}: CI=true, so tests that need it fail instead of skipping`);
  process.stderr.write(`\n  ⚠ SKIPPING the TLS Redis Cluster test: ${msg}\n`);
  return false;
}
const available = hasClusterBinaries() && hasOpenssl();

describe.skipIf(!available)('Redis Cluster with TLS and a password (REDIS_CLUSTER_NODES, rediss://)', () => {
  let cluster: RedisCluster;
  let cwd: string;
  let cert: string;
  const prefix = uniquePrefix('ctls');
  const online = {
    sessionId: 's-alice',
    connectedAt: '2026-01-01T00:00:00.000Z',
    domain: 'shop.example',
    origin: 'https://shop.example',
    url: '/',
  };

  beforeAll(async () => {
    cwd = await mkdtemp(path.join(tmpdir(), 'chatd-cluster-tls-'));
    cert = path.join(cwd, 'cert.pem');
    const key = path.join(cwd, 'key.pem');
    const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1']); // prettier-ignore
    expect(gen.status, String(gen.stderr)).toBe(0);
    cluster = await RedisCluster.start({ tls: { cert, key, ca: cert }, password: PASSWORD });
    await writeFile(path.join(cwd, 'chat-server.yaml'), `redis:\n  prefix: "${prefix}"\nadmin:\n  enabled: false\n`);
    // The guide's hash, written as any tool would (redis-cli -c follows the cluster's redirections).
    await cluster.cli('-c', '-p', String(cluster.nodes[0]!.port), 'HSET', `${prefix}online_users:acme`, 'alice', JSON.stringify(online));
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    if (cwd) await rm(cwd, { recursive: true, force: true });
  });

  it('reads online_users through the TLS cluster with the password from the seed URL', async () => {
    const env = { REDIS_CLUSTER_NODES: cluster.urls.slice(0, 2).join(','), NODE_EXTRA_CA_CERTS: cert };
    expect(env.REDIS_CLUSTER_NODES).toMatch(/^rediss:\/\/:cluster-pass-0123456789@127\.0\.0\.1:\d+,rediss:/);
    const r = await runChatd(['presence', 'ls', 'acme', '--json'], { cwd, env });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ tenantId: 'acme', users: [{ userId: 'alice', ...online }] });
  });

  it('refuses a cluster whose certificate it does not trust, and a wrong password, without printing the password', async () => {
    const untrusted = await runChatd(['presence', 'ls', 'acme', '--json'], { cwd, env: { REDIS_CLUSTER_NODES: cluster.urls[0]! } });
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(/^chatd: /);
    expect(untrusted.stdout + untrusted.stderr).not.toContain(PASSWORD);

    const wrong = cluster.urls[0]!.replace(encodeURIComponent(PASSWORD), 'not-the-password');
    const refused = await runChatd(['presence', 'ls', 'acme', '--json'], {
      cwd,
      env: { REDIS_CLUSTER_NODES: wrong, NODE_EXTRA_CA_CERTS: cert },
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^chatd: /);
    expect(refused.stdout + refused.stderr).not.toContain('not-the-password');
  });
});
