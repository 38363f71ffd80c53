import { describe } from 'vitest';
import { MemoryWebhookStream } from '../store/memory/memory-webhook-stream.js';
import { MemoryWebhookQueue } from '../store/memory/memory-webhook-queue.js';
import { queueContract } from './queue.contract.js';

describe('MemoryWebhookQueue on the memory store stream (contract)', () => {
  queueContract(async () => {
    const stream = new MemoryWebhookStream(1000);
    const queue = new MemoryWebhookQueue({ stream, maxBacklog: 1000, deadMaxLen: 1000 });
    return {
      queue,
      async append(tenantId, messageId) {
        return stream.append({
          type: 'message.created',
          tenantId,
          sessionId: 's1',
          messageId,
          createdAt: new Date().toISOString(),
          payload: '{}',
        });
      },
      close: () => queue.close(),
    };
  });
});
