import { describe, expect, it } from 'vitest';
import { parseRetention, retentionPolicies } from './retention.js';

describe('retention config', () => {
  it('parses durations and lists only tenants with a limit', () => {
    expect(parseRetention('90d')).toBe(90 * 86_400_000);
    expect(parseRetention('12h')).toBe(12 * 3_600_000);
    expect(parseRetention('30m')).toBe(1_800_000);
    expect(parseRetention('45s')).toBe(45_000);
    expect(() => parseRetention('3w')).toThrow('invalid retention');
    const tenants = [
      { id: 'a', retention: { messages: '7d' } },
      { id: 'b', retention: {} },
    ] as unknown as Parameters<typeof retentionPolicies>[0]['tenants'];
    expect(retentionPolicies({ tenants })).toEqual([{ tenantId: 'a', maxAgeMs: 7 * 86_400_000 }]);
  });
});
