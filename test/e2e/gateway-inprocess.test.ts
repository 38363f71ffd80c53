// `--role all`: the gateway's HTTP checks run in process, as router guards in front of the api
// routes (the api role leaves per-IP limits to them), with no network hop.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnChatd, type ChatdProcess } from '../helpers/chatd-process.js';
import { eventually } from '../helpers/eventually.js';

const PUB_A = 'ck_pub_tenantA_0123456789abcdef';
const PUB_B = 'ck_pub_tenantB_0123456789abcdef';

describe('gateway checks in process (chatd serve --role all)', () => {
  let chatd: ChatdProcess;
  let base: string;

  beforeAll(async () => {
    const cwd = await mkdtemp(path.join(tmpdir(), 'chatd-gw-all-'));
    await writeFile(
      path.join(cwd, 'chat-server.yaml'),
      [
        "server: { host: 127.0.0.1, port: 0, trustedProxies: ['127.0.0.1'] }",
        'admin: { port: 0 }',
        'limits:',
        '  httpPerIp: { rate: 0.01, burst: 6 }',
        'tenants:',
        `  - { id: a, apiKeys: [{ key: ${PUB_A} }] }`,
        `  - { id: b, apiKeys: [{ key: ${PUB_B} }] }`,
      ].join('\n'),
    );
    chatd = await spawnChatd({ cwd, timeoutMs: 90_000 });
    base = `http://127.0.0.1:${chatd.ports.public}`;
    // The embedded database opens on first use (slow on a loaded machine): warm up from another IP.
    await eventually(
      async () => (await mint(PUB_A, 'a', '192.0.2.99').catch(() => ({ status: 0 }))).status === 200,
      'chatd to serve a token',
      {
        timeoutMs: 150_000,
        intervalMs: 500,
      },
    );
  }, 240_000);
  afterAll(async () => {
    await chatd?.stop('SIGKILL');
  });

  const mint = (key: string | undefined, tenantId: string, ip = '198.51.100.7') =>
    fetch(`${base}/api/chat/anonymous-token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': ip, ...(key ? { authorization: `Bearer ${key}` } : {}) },
      body: JSON.stringify({ tenantId }),
    }).then(async (r) => ({
      status: r.status,
      body: (await r.json()) as Record<string, unknown>,
      retryAfter: r.headers.get('retry-after'),
    }));

  it('refuses wrong and foreign keys, then limits the client IP with 429 and Retry-After', async () => {
    expect((await mint(PUB_A, 'a')).status).toBe(200);
    expect(await mint(undefined, 'a')).toMatchObject({ status: 401, body: { code: 'invalid_api_key' } });
    expect(await mint('ck_pub_wrongwrongwrongwrong', 'a')).toMatchObject({ status: 401, body: { code: 'invalid_api_key' } });
    expect(await mint(PUB_B, 'a')).toMatchObject({ status: 403, body: { code: 'tenant_mismatch' } });
    const q = await fetch(`${base}/api/chat/messages?tenantId=a&access_token=x`, { headers: { 'x-forwarded-for': '198.51.100.7' } });
    expect([q.status, ((await q.json()) as { code: string }).code]).toEqual([400, 'credentials_in_query']);
    // Five requests so far from this IP (burst 6, refused ones count): one more passes, the next is
    // refused by the in-process guard (the api role leaves per-IP limits to it).
    expect((await mint(PUB_A, 'a')).status).toBe(200);
    const limited = await mint(PUB_A, 'a');
    expect(limited).toMatchObject({ status: 429, body: { code: 'rate_limited' } });
    expect(Number(limited.retryAfter)).toBeGreaterThanOrEqual(1);
  });
});
