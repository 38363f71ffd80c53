// PresenceTracker on the memory store (the zero-config engine); presence-tracker.int.test.ts runs the
// same scenarios on Redis.
import { afterAll, describe } from 'vitest';
import { MemoryStore } from '../../store/memory/memory-store.js';
import { presenceScenarios } from './presence-tracker.scenarios.js';

describe('PresenceTracker on the memory store', () => {
  const store = new MemoryStore();
  afterAll(() => store.close());
  presenceScenarios(() => store);
});
