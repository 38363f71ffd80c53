// createStore picks the adapter from config: memory with no Redis configured, Redis (with the
// configured prefix) when REDIS_URL / redis.url is set — and still starts when Redis is down.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { REDIS_URL, freePort, hasRedis, uniquePrefix } from '../../test/helpers/services.js';
import { loadConfig } from '../config/load.js';
import { DependencyError } from '../errors.js';
import { createStore, engineOf } from './index.js';

const logger = pino({ level: 'silent' });
const redisUp = await hasRedis();
const dir = mkdtempSync(path.join(os.tmpdir(), 'chatd-store-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const configWith = async (env: NodeJS.ProcessEnv, prefix?: string) =>
  (
    await loadConfig({
      cwd: dir,
      env,
      overrides: (raw) => {
        if (prefix !== undefined) raw.redis = { ...(raw.redis as object), prefix };
      },
    })
  ).config;

describe('createStore', () => {
  it('uses the in-process store with no Redis configured', async () => {
    const config = await configWith({});
    expect(engineOf(config).kind).toBe('memory');
    const store = await createStore(config, logger, 'n1');
    expect(store.kind).toBe('memory');
    await store.close();
  });

  it.skipIf(!redisUp)('uses Redis from REDIS_URL with redis.prefix on every key', async () => {
    const prefix = uniquePrefix('create');
    const config = await configWith({ REDIS_URL }, prefix);
    expect(engineOf(config).kind).toBe('redis');
    const store = await createStore(config, logger, 'n1');
    const raw = new Redis(REDIS_URL);
    try {
      expect(store.kind).toBe('redis');
      await store.ping();
      await store.sessions.upsert('sess-x', { tenantId: 't', userId: 'u', fingerprint: 'f' }, 60);
      expect(await raw.exists(`${prefix}session:sess-x`)).toBe(1);
      await raw.del(`${prefix}session:sess-x`);
    } finally {
      raw.disconnect();
      await store.close();
    }
  });

  it('starts with Redis down, and reports it through ping', async () => {
    const config = await configWith({ REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
    const store = await createStore(config, logger, 'n1');
    expect(store.kind).toBe('redis');
    await expect(store.ping()).rejects.toBeInstanceOf(DependencyError);
    await store.close();
  });
});
