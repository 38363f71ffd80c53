import { describe, expect, it } from 'vitest';
import { webhookConfig } from '../../test/helpers/webhook-receiver.js';
import { derivedEndpointId, endpointDirectory } from './endpoints.js';

describe('webhook endpoints from config', () => {
  it('derives stable ids, keeps duplicates apart and filters by event type', () => {
    const dir = endpointDirectory(
      webhookConfig(
        {
          t1: [
            { url: 'https://a.example/hook', secret: 's'.repeat(16) },
            { url: 'https://a.example/hook', secret: 's'.repeat(16) },
            { id: 'named', url: 'https://b.example/hook', secret: 's'.repeat(16), concurrency: 2 },
          ],
          t2: [],
        },
        8,
      ) as never,
    );
    expect(dir.any).toBe(true);
    const eps = dir.forEvent('t1', 'message.created');
    expect(eps.map((e) => e.id)).toEqual([
      derivedEndpointId('https://a.example/hook'),
      `${derivedEndpointId('https://a.example/hook')}_2`,
      'named',
    ]);
    expect(eps.map((e) => e.concurrency)).toEqual([8, 8, 2]);
    expect(dir.forEvent('t2', 'message.created')).toEqual([]);
    expect(dir.get('t1', 'named')?.url).toBe('https://b.example/hook');
    expect(endpointDirectory(webhookConfig({ t1: [] }) as never).any).toBe(false);
  });
});
