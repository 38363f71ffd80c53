import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, interpolate, loadConfig } from './load.js';
import { redactConfig, redactUrl, secretValues } from './redact.js';

const dir = () => mkdtemp(path.join(tmpdir(), 'chatd-config-'));

describe('loadConfig', () => {
  it('runs on defaults with no file and no environment', async () => {
    const { config, file } = await loadConfig({ cwd: await dir(), env: {} });
    expect(file).toBeUndefined();
    expect(config.server.port).toBe(3000);
    expect(config.admin.host).toBe('127.0.0.1');
    expect(config.limits.httpPerIp).toEqual({ rate: 50, burst: 100 });
    expect(config.limits.messagesPerSocket).toEqual({ rate: 20, burst: 40 });
    expect(config.redis.prefix).toBe('');
    expect(Object.isFrozen(config.server)).toBe(true);
  });

  it('finds chat-server.yaml and names the file and key path of an error', async () => {
    const cwd = await dir();
    await writeFile(path.join(cwd, 'chat-server.yaml'), 'server:\n  port: 70000\n');
    await expect(loadConfig({ cwd, env: {} })).rejects.toThrow('chat-server.yaml: server.port must be <= 65535');
  });

  it('refuses unknown keys, naming them', async () => {
    const cwd = await dir();
    await writeFile(path.join(cwd, 'chat-server.yaml'), 'server:\n  prot: 1\n');
    await expect(loadConfig({ cwd, env: {} })).rejects.toThrow('server.prot is not a known key');
  });

  it('names nested array paths', async () => {
    const cwd = await dir();
    await writeFile(path.join(cwd, 'chat-server.yaml'), 'tenants:\n  - id: ok\n    apiKeys:\n      - key: not-a-key\n');
    await expect(loadConfig({ cwd, env: {} })).rejects.toThrow(/tenants\[0\]\.apiKeys\[0\]\.key must match/);
  });

  it('reports invalid YAML with the file name', async () => {
    const cwd = await dir();
    await writeFile(path.join(cwd, 'chat-server.yaml'), 'server: [unclosed\n');
    await expect(loadConfig({ cwd, env: {} })).rejects.toThrow(/^chat-server\.yaml: invalid YAML/);
  });

  it('interpolates ${VAR} and ${VAR:-default}, and fails on an unset variable', async () => {
    const cwd = await dir();
    await writeFile(
      path.join(cwd, 'chat-server.yaml'),
      'server:\n  port: ${PORT}\n  host: ${HOST:-127.0.0.2}\nauth:\n  jwtSecret: ${SECRET}\n',
    );
    const { config } = await loadConfig({ cwd, env: { PORT: '4100', SECRET: 'x'.repeat(32) } });
    expect(config.server.port).toBe(4100);
    expect(config.server.host).toBe('127.0.0.2');
    expect(config.auth.jwtSecret).toBe('x'.repeat(32));
    await expect(loadConfig({ cwd, env: { PORT: '1' } })).rejects.toThrow('auth.jwtSecret uses ${SECRET}, which is not set');
  });

  it("reads the guide's variables with no file", async () => {
    const { config } = await loadConfig({
      cwd: await dir(),
      env: {
        GATEWAY_API_KEY: 'ck_pub_aaaaaaaaaaaaaaaaaaaa',
        JWT_SECRET: 'j'.repeat(32),
        REDIS_URL: 'redis://:pw@127.0.0.1:6379',
        DATABASE_URL: 'postgres://u:pw@127.0.0.1/db',
        BACKEND_API_URL: 'http://10.0.0.1:3001, http://10.0.0.2:3001',
        BACKEND_WS_URL: 'http://10.0.0.3:3002',
      },
    });
    expect(config.auth.gatewayApiKey).toBe('ck_pub_aaaaaaaaaaaaaaaaaaaa');
    expect(config.auth.jwtSecret).toBe('j'.repeat(32));
    expect(config.redis.url).toBe('redis://:pw@127.0.0.1:6379');
    expect(config.database.url).toBe('postgres://u:pw@127.0.0.1/db');
    expect(config.upstreams.api).toEqual(['http://10.0.0.1:3001', 'http://10.0.0.2:3001']);
    expect(config.upstreams.ws).toEqual(['http://10.0.0.3:3002']);
  });

  it('lets the file win over the environment for the same key', async () => {
    const cwd = await dir();
    await writeFile(path.join(cwd, 'chat-server.yaml'), 'redis:\n  url: redis://file:6379\n');
    const { config } = await loadConfig({ cwd, env: { REDIS_URL: 'redis://env:6379' } });
    expect(config.redis.url).toBe('redis://file:6379');
  });

  it('reads Redis Cluster seeds from the file or REDIS_CLUSTER_NODES, and refuses them beside url or sentinel', async () => {
    const cwd = await dir();
    const env = { REDIS_CLUSTER_NODES: 'redis://10.0.0.1:7000, rediss://:pw@10.0.0.2:7001' };
    const { config } = await loadConfig({ cwd, env });
    expect(config.redis.cluster?.nodes).toEqual(['redis://10.0.0.1:7000', 'rediss://:pw@10.0.0.2:7001']);
    expect(JSON.stringify(redactConfig(config))).not.toContain(':pw@');
    await writeFile(
      path.join(cwd, 'chat-server.yaml'),
      'redis:\n  cluster:\n    nodes: [redis://a:7000]\n    natMap: { "10.0.0.1:7000": "a.example:17000" }\n',
    );
    const fromFile = await loadConfig({ cwd, env: {} });
    expect(fromFile.config.redis.cluster).toEqual({ nodes: ['redis://a:7000'], natMap: { '10.0.0.1:7000': 'a.example:17000' } });
    await expect(loadConfig({ cwd, env: { REDIS_URL: 'redis://x:6379' } })).rejects.toThrow(
      'redis.cluster excludes redis.url and redis.sentinel',
    );
    await writeFile(path.join(cwd, 'chat-server.yaml'), 'redis:\n  cluster:\n    nodes: []\n');
    await expect(loadConfig({ cwd, env: {} })).rejects.toThrow(/redis\.cluster\.nodes/);
    await writeFile(path.join(cwd, 'chat-server.yaml'), 'redis:\n  cluster:\n    nodes: [redis://a:7000/2]\n');
    await expect(loadConfig({ cwd, env: {} })).rejects.toThrow(/redis\.cluster\.nodes/);
  });

  it('checks cross-field rules', async () => {
    const cwd = await dir();
    await writeFile(path.join(cwd, 'chat-server.yaml'), 'tenants:\n  - id: a\n  - id: a\n');
    await expect(loadConfig({ cwd, env: {} })).rejects.toThrow('tenants[1].id repeats tenant "a"');
    await writeFile(path.join(cwd, 'chat-server.yaml'), 'tenants:\n  - id: a\n    apiKeys:\n      - hash: sha256:' + 'a'.repeat(64) + '\n');
    await expect(loadConfig({ cwd, env: {} })).rejects.toThrow('tenants[0].apiKeys[0].kind is required with hash');
  });

  it('checks business hours: a known time zone, from before to, exceptions with both times or none', async () => {
    const cwd = await dir();
    const write = (hours: string) =>
      writeFile(path.join(cwd, 'chat-server.yaml'), `tenants:\n  - id: a\n    businessHours:\n${hours.replace(/^/gm, '      ')}\n`);
    await write('timeZone: Mars/Olympus');
    await expect(loadConfig({ cwd, env: {} })).rejects.toThrow(
      'tenants[0].businessHours.timeZone is not a time zone this runtime knows: "Mars/Olympus"',
    );
    await write('timeZone: Europe/Paris\nweekly:\n  - { days: [mon], from: "18:00", to: "09:00" }');
    await expect(loadConfig({ cwd, env: {} })).rejects.toThrow('tenants[0].businessHours.weekly[0] from 18:00 must be before to 09:00');
    await write('timeZone: Europe/Paris\nweekly:\n  - { days: [funday], from: "09:00", to: "18:00" }');
    await expect(loadConfig({ cwd, env: {} })).rejects.toThrow(/tenants\[0\]\.businessHours\.weekly\[0\]\.days\[0\]/);
    await write('timeZone: Europe/Paris\nexceptions:\n  - { date: "2026-12-24", from: "09:00" }');
    await expect(loadConfig({ cwd, env: {} })).rejects.toThrow('tenants[0].businessHours.exceptions[0] needs both from and to');
    await write(
      'timeZone: Europe/Paris\nweekly:\n  - { days: [sat, sun], from: "10:00", to: "24:00" }\nexceptions:\n  - { date: "2026-12-25" }',
    );
    const { config } = await loadConfig({ cwd, env: {} });
    expect(config.tenants[0]!.businessHours).toEqual({
      timeZone: 'Europe/Paris',
      weekly: [{ days: ['sat', 'sun'], from: '10:00', to: '24:00' }],
      exceptions: [{ date: '2026-12-25' }],
    });
  });

  it('checks a tenant notification address and console URL', async () => {
    const cwd = await dir();
    const write = (email: string) => writeFile(path.join(cwd, 'chat-server.yaml'), `tenants:\n  - id: a\n    email: ${email}\n`);
    await write('{ notifyAddress: not-an-address }');
    await expect(loadConfig({ cwd, env: {} })).rejects.toThrow(/tenants\[0\]\.email\.notifyAddress/);
    await write('{ notifyAddress: ops@a.example, consoleUrl: "javascript:alert(1)" }');
    await expect(loadConfig({ cwd, env: {} })).rejects.toThrow(/tenants\[0\]\.email\.consoleUrl/);
    await write('{ notifyAddress: ops@a.example, consoleUrl: "https://inbox.a.example/c/{sessionId}" }');
    const { config } = await loadConfig({ cwd, env: {} });
    expect(config.tenants[0]!.email).toEqual({ notifyAddress: 'ops@a.example', consoleUrl: 'https://inbox.a.example/c/{sessionId}' });
    expect(config.email.notifyDelaySeconds).toBe(60);
  });

  it('takes an explicit --config path and reports a missing file', async () => {
    const cwd = await dir();
    await expect(loadConfig({ cwd, env: {}, file: 'nope.yaml' })).rejects.toBeInstanceOf(ConfigError);
    await writeFile(path.join(cwd, 'other.yaml'), 'log:\n  level: debug\n');
    const { config, file } = await loadConfig({ cwd, env: {}, file: 'other.yaml' });
    expect(config.log.level).toBe('debug');
    expect(file).toBe(path.join(cwd, 'other.yaml'));
  });
});

describe('interpolate', () => {
  it('leaves strings without variables alone and keeps empty defaults', () => {
    expect(interpolate({ a: 'plain', b: ['${X:-}'] }, {}, 'f', '')).toEqual({ a: 'plain', b: [''] });
  });
});

describe('redaction', () => {
  it('removes every secret and URL password from the printed config', async () => {
    const { config } = await loadConfig({
      cwd: await dir(),
      env: {
        GATEWAY_API_KEY: 'ck_pub_supersecretkey123456',
        JWT_SECRET: 'jwt-secret-value-0123456789',
        REDIS_URL: 'redis://user:redispass@127.0.0.1:6379',
        DATABASE_URL: 'postgres://u:pgpass123@127.0.0.1/db',
      },
    });
    const printed = JSON.stringify(redactConfig(config));
    for (const secret of ['ck_pub_supersecretkey123456', 'jwt-secret-value-0123456789', 'redispass', 'pgpass123']) {
      expect(printed).not.toContain(secret);
    }
    expect(printed).toContain('redis://user:[redacted]@127.0.0.1:6379');
    expect(secretValues(config)).toEqual(
      expect.arrayContaining(['ck_pub_supersecretkey123456', 'jwt-secret-value-0123456789', 'redispass', 'pgpass123']),
    );
  });

  it('redacts only the password of a URL', () => {
    expect(redactUrl('rediss://:p4ss@host:6380/0')).toBe('rediss://:[redacted]@host:6380/0');
    expect(redactUrl('http://host:80/path')).toBe('http://host:80/path');
  });
});
