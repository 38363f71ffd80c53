// The HTTP API end to end on the embedded defaults (in-process store, PGlite): the real bin/chatd
// with no config but ports, the README's walkthrough, and `chatd token issue` reading the same
// generated secrets as the server.
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChatd, spawnChatd, whenReady, type ChatdProcess } from '../helpers/chatd-process.js';
import { client } from '../helpers/api-harness.js';

describe('HTTP API on the embedded defaults (chatd serve --role all)', () => {
  let cwd: string;
  let chatd: ChatdProcess;
  let call: ReturnType<typeof client>;
  let key: string;

  beforeAll(async () => {
    cwd = await mkdtemp(path.join(tmpdir(), 'chatd-api-e2e-'));
    await writeFile(path.join(cwd, 'chat-server.yaml'), 'server:\n  port: 0\nadmin:\n  port: 0\n');
    chatd = await spawnChatd({ cwd, timeoutMs: 60_000 });
    call = client(`http://127.0.0.1:${chatd.ports.public}`);
    key = JSON.parse(await readFile(path.join(cwd, '.chatd', 'secrets.json'), 'utf8')).gatewayApiKey;
    await whenReady(chatd.ports.public!);
  }, 300_000);
  afterAll(async () => {
    await chatd?.stop('SIGKILL');
  });

  it('prints the generated key at start and never logs it', () => {
    expect(key).toMatch(/^ck_pub_/);
    expect(chatd.stderr()).toContain(key);
    expect(chatd.logs()).not.toContain(key);
  });

  it('runs the README walkthrough: visitor token, message, history; the token stays in its session', async () => {
    const minted = await call('POST', '/api/chat/anonymous-token', { token: key, body: { tenantId: 'demo' } });
    expect(minted.status, JSON.stringify(minted.body)).toBe(200);
    expect(minted.body.expiresIn).toBe(3600);
    const token = minted.body.token as string;
    const msg = { text: 'Hello!', tenantId: 'demo', sessionId: 's-1', fingerprint: 'fp-1', clientMessageId: 'c-1' };
    const sent = await call('POST', '/webchat/message', { token, body: msg });
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    expect(sent.body).toEqual({ success: true, messageId: expect.any(String), sessionId: 's-1' });
    expect((await call('POST', '/webchat/message', { token, body: msg })).body.messageId).toBe(sent.body.messageId);
    const page = await call('GET', '/api/chat/messages?tenantId=demo&sessionId=s-1', { token });
    expect(page.body.messages).toHaveLength(1);
    expect(page.body.messages[0]).toMatchObject({ text: 'Hello!', seq: 1, sender: { type: 'visitor', id: 's-1', verified: false } });
    const other = await call('POST', '/webchat/message', { token, body: { ...msg, sessionId: 's-2', clientMessageId: 'c-2' } });
    expect([other.status, other.body.code]).toEqual([403, 'session_forbidden']);
    const wrongKey = await call('POST', '/api/chat/anonymous-token', { token: 'ck_pub_notthekeynotthekey', body: { tenantId: 'demo' } });
    expect([wrongKey.status, wrongKey.body]).toEqual([401, { error: 'Invalid API key', code: 'invalid_api_key' }]);
  });

  it('chatd token issue mints tokens the running server accepts (agent, visitor bound to --session)', async () => {
    const issued = await runChatd(['token', 'issue', '--tenant', 'demo', '--admin', '--json'], { cwd });
    expect(issued.code, issued.stderr).toBe(0);
    const { token, expiresIn } = JSON.parse(issued.stdout);
    expect(expiresIn).toBe(28800);
    const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
    expect(claims).toMatchObject({ role: 'agent', sub: 'cli-agent', tid: 'demo' });
    const page = await call('GET', '/api/chat/messages?tenantId=demo&sessionId=s-1', { token });
    expect(page.status, JSON.stringify(page.body)).toBe(200);
    const reply = await call('POST', '/webchat/message', {
      token,
      body: { text: 'Hi, how can I help?', tenantId: 'demo', sessionId: 's-1' },
    });
    expect(reply.status, JSON.stringify(reply.body)).toBe(200);
    const online = await call('GET', '/api/chat/online-users?tenantId=demo', { token });
    expect(online.status, JSON.stringify(online.body)).toBe(200);
    expect(online.body.users).toEqual([]);
    // The widget's key is public: it lists nobody and mints no agent.
    const byKey = await call('GET', '/api/chat/online-users?tenantId=demo', { token: key });
    expect([byKey.status, byKey.body.code]).toEqual([403, 'key_not_allowed']);
    const agentByKey = await call('POST', '/api/chat/agent-token', { token: key, body: { tenantId: 'demo', userId: 'a1' } });
    expect([agentByKey.status, agentByKey.body.code]).toEqual([403, 'key_not_allowed']);

    const plain = await runChatd(['token', 'issue', '--tenant', 'demo', '--session', 's-9', '--ttl', '15m'], { cwd });
    expect(plain.code, plain.stderr).toBe(0);
    const visitor = plain.stdout.trim();
    const vc = JSON.parse(Buffer.from(visitor.split('.')[1]!, 'base64url').toString());
    expect(vc).toMatchObject({ role: 'visitor', sid: 's-9' });
    expect(vc.exp - vc.iat).toBe(900);
    expect(
      (
        await call('POST', '/webchat/message', {
          token: visitor,
          body: { text: 'x', tenantId: 'demo', sessionId: 's-9', fingerprint: 'f9' },
        })
      ).status,
    ).toBe(200);
    const forbidden = await call('GET', '/api/chat/messages?tenantId=demo&sessionId=s-1', { token: visitor });
    expect([forbidden.status, forbidden.body.code]).toEqual([403, 'session_forbidden']);

    const user = await runChatd(['token', 'issue', '--tenant', 'demo', '--user', 'u@demo.example', '--json'], { cwd });
    expect(user.code, user.stderr).toBe(0);
    const userToken = JSON.parse(user.stdout).token as string;
    expect(JSON.parse(Buffer.from(userToken.split('.')[1]!, 'base64url').toString())).toMatchObject({
      role: 'user',
      sub: 'u@demo.example',
    });
    const own = await call('GET', '/api/chat/messages?tenantId=demo&userId=u%40demo.example', { token: userToken });
    expect(own.status, JSON.stringify(own.body)).toBe(200);
    const notOwn = await call('GET', '/api/chat/messages?tenantId=demo&userId=someone', { token: userToken });
    expect([notOwn.status, notOwn.body.code]).toEqual([403, 'forbidden']);

    const bad = await runChatd(['token', 'issue', '--tenant', 'bad tenant'], { cwd });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.trim()).toBe('chatd: --tenant "bad tenant" must match [A-Za-z0-9_-]{1,128}');
  }, 240_000); // five CLI processes: slow on a loaded machine
});

describe('credentials configuration errors', () => {
  it('one API key configured for two tenants stops start-up with one clear line', async () => {
    const cwd = await mkdtemp(path.join(tmpdir(), 'chatd-api-dup-'));
    await writeFile(
      path.join(cwd, 'chat-server.yaml'),
      'server:\n  port: 0\nadmin:\n  enabled: false\ntenants:\n  - id: a\n    apiKeys: [{ key: ck_pub_samesamesamesamesame }]\n  - id: b\n    apiKeys: [{ key: ck_pub_samesamesamesamesame }]\n',
    );
    const r = await runChatd(['serve', '--role', 'api'], { cwd });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('chatd: invalid credentials configuration: the same API key is configured for tenants "a" and "b"');
    expect(r.stderr + r.stdout).not.toContain('ck_pub_samesame');
  }, 120_000);
});
