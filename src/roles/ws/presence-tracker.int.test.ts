// PresenceTracker on Redis (shared server, unique prefix): the same scenarios as on the memory store.
import { deletePrefix } from '../../../test/helpers/redis-keys.js';
import { pino } from 'pino';
import { afterAll, beforeAll, describe } from 'vitest';
import { REDIS_URL, hasRedis, uniquePrefix } from '../../../test/helpers/services.js';
import { RedisStore } from '../../store/redis/redis-store.js';
import { presenceScenarios } from './presence-tracker.scenarios.js';

describe.skipIf(!(await hasRedis()))('PresenceTracker on Redis', () => {
  const prefix = uniquePrefix('presence');
  let store: RedisStore;
  beforeAll(async () => {
    store = new RedisStore({ url: REDIS_URL, prefix }, pino({ level: 'silent' }));
    await store.connect();
  });
  afterAll(async () => {
    await store?.close();
    await deletePrefix(REDIS_URL, prefix);
  });
  presenceScenarios(() => store);
});
