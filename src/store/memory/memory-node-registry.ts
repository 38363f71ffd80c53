// The node registry in process: enough for one process (nodes in other processes cannot be seen).
import type { NodeRegistry } from '../ports.js';

export class MemoryNodeRegistry implements NodeRegistry {
  private readonly nodes = new Map<string, { url: string; expires: number }>();

  async advertise(nodeId: string, url: string, ttlMs: number): Promise<void> {
    this.nodes.set(nodeId, { url, expires: Date.now() + ttlMs });
  }

  async withdraw(nodeId: string): Promise<void> {
    this.nodes.delete(nodeId);
  }

  async lookup(nodeId: string): Promise<string | undefined> {
    const n = this.nodes.get(nodeId);
    if (!n) return undefined;
    if (n.expires <= Date.now()) {
      this.nodes.delete(nodeId);
      return undefined;
    }
    return n.url;
  }
}
