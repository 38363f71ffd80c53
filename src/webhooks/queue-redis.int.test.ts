import { Redis } from 'ioredis';
import { describe } from 'vitest';
import { hasRedis, REDIS_URL, uniquePrefix } from '../../test/helpers/services.js';
import { queueContract } from './queue.contract.js';
import { RedisWebhookQueue, webhookKeys } from '../store/redis/redis-webhook-queue.js';
import { appendJob } from '../../test/helpers/webhook-jobs.js';

describe.skipIf(!(await hasRedis()))('RedisWebhookQueue (contract)', () => {
  queueContract(async () => {
    const prefix = uniquePrefix('whq');
    const admin = new Redis(REDIS_URL);
    const queue = new RedisWebhookQueue({ redis: new Redis(REDIS_URL), blocking: new Redis(REDIS_URL), prefix, deadMaxLen: 1000 });
    const keys = webhookKeys(prefix);
    return {
      queue,
      async append(tenantId, messageId) {
        return appendJob(admin, keys.jobs, { tenantId, messageId });
      },
      async close() {
        await queue.close();
        const k = await admin.keys(`${prefix}*`);
        if (k.length > 0) await admin.del(...k);
        await admin.quit();
      },
    };
  });
});
