// The store contract against the in-process adapter.
import { MemoryStore } from './memory-store.js';
import { storeContract } from '../store.contract.js';

storeContract('memory', () => {
  let shared: MemoryStore | undefined;
  const opened: MemoryStore[] = [];
  return {
    async open(opts) {
      // One process = one node's view: every handle shares one instance, except when options differ.
      if (opts) {
        const s = new MemoryStore(opts);
        opened.push(s);
        return s;
      }
      if (!shared) opened.push((shared = new MemoryStore()));
      return shared;
    },
    async close() {
      await Promise.all(opened.map((s) => s.close()));
    },
  };
});
