// Chooses the store adapter from config: Redis when a URL or Sentinel is configured, else memory.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Store } from './ports.js';

export type StoreKind = Store['kind'];

export function storeKind(config: Config): StoreKind {
  return config.redis.url || config.redis.sentinel ? 'redis' : 'memory';
}

export async function createStore(config: Config, logger: Logger, nodeId: string): Promise<Store> {
  const kind = storeKind(config);
  switch (kind) {
    case 'memory':
    case 'redis':
      throw new Error(`the ${kind} store is not built yet (issue 3); nodeId=${nodeId} logger=${typeof logger}`);
    default: {
      const never: never = kind;
      throw new Error(`unknown store ${String(never)}`);
    }
  }
}
