// The upstream nodes a gateway routes to: one group for api nodes, one for ws nodes. Each upstream
// has a pooled keep-alive connection set (undici) and is probed on `/readyz`: a node that answers
// anything but 200 (a draining node answers 503) leaves the rotation until it answers 200 again,
// and a connection failure takes it out at once. The probe also learns the node's id from the
// X-Chatd-Node header, which is how Engine.IO sids (`<nodeId>.<random>`) find their owner.
import type { Logger } from 'pino';
import { Pool } from 'undici';
import { promClient, registry } from '../observability/metrics.js';

export interface Upstream {
  /** The configured base URL (for logs). */
  readonly url: string;
  /** `http://host:port`: what the pool connects to. */
  readonly origin: string;
  /** A path prefix from the configured URL ('' when none). */
  readonly basePath: string;
  readonly pool: Pool;
  /** False for nodes found only through the node registry: used for their sids, not for new work. */
  readonly inRotation: boolean;
  healthy: boolean;
  nodeId: string | undefined;
  lastError: string | undefined;
  /** Failed probes in a row (see probe). */
  failures: number;
}

export interface UpstreamGroupOptions {
  readonly name: 'api' | 'ws';
  readonly urls: readonly string[];
  readonly healthCheckIntervalMs: number;
  /**
   * Most connections per upstream (undici Pool); unlimited by default, because every held
   * long-poll GET occupies one until it is answered.
   */
  readonly connections?: number;
  readonly logger: Logger;
}

const upstreamHealthy = new promClient.Gauge({
  name: 'chatd_gateway_upstream_healthy',
  help: '1 while the gateway routes to an upstream (its /readyz answered 200), else 0.',
  labelNames: ['group', 'upstream'] as const,
  registers: [registry],
});

/** A group of interchangeable upstreams with round robin over the healthy ones. */
export class UpstreamGroup {
  readonly name: 'api' | 'ws';
  private readonly members: Upstream[] = [];
  private readonly byNodeId = new Map<string, Upstream>();
  private next = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly opts: UpstreamGroupOptions;
  private closed = false;

  constructor(opts: UpstreamGroupOptions) {
    this.opts = opts;
    this.name = opts.name;
    for (const url of opts.urls) this.add(url, true);
  }

  get size(): number {
    return this.members.filter((m) => m.inRotation).length;
  }

  list(): readonly Upstream[] {
    return this.members;
  }

  /** Starts the active health checks (one probe at once, then every interval). */
  start(): void {
    if (this.timer || this.closed) return;
    void this.probeAll();
    if (this.opts.healthCheckIntervalMs > 0) {
      this.timer = setInterval(() => void this.probeAll(), this.opts.healthCheckIntervalMs);
      this.timer.unref();
    }
  }

  /**
   * The next healthy upstream in rotation, skipping `exclude` (those already tried). Unknown
   * health counts as healthy: an upstream is trusted until a probe or a connection says otherwise.
   * With none healthy, the unhealthy ones are tried in turn ("panic mode", as Envoy does): health
   * checks can be wrong, and a request that might succeed beats a certain 502.
   */
  pick(exclude?: ReadonlySet<Upstream>): Upstream | undefined {
    return this.rotate((u) => u.healthy && !exclude?.has(u)) ?? this.rotate((u) => !exclude?.has(u));
  }

  private rotate(eligible: (u: Upstream) => boolean): Upstream | undefined {
    const n = this.members.length;
    for (let i = 0; i < n; i++) {
      const u = this.members[(this.next + i) % n]!;
      if (!u.inRotation || !eligible(u)) continue;
      this.next = (this.next + i + 1) % n;
      return u;
    }
    return undefined;
  }

  /** The upstream serving node `nodeId`, when known (from a probe, a handshake or the registry). */
  forNode(nodeId: string): Upstream | undefined {
    return this.byNodeId.get(nodeId);
  }

  /** Records that `upstream` is node `nodeId` (its handshake answered with a sid of that node). */
  learn(nodeId: string, upstream: Upstream): void {
    if (upstream.nodeId !== nodeId) {
      if (upstream.nodeId && this.byNodeId.get(upstream.nodeId) === upstream) this.byNodeId.delete(upstream.nodeId);
      upstream.nodeId = nodeId;
    }
    this.byNodeId.set(nodeId, upstream);
  }

  /**
   * The upstream at `url`, added outside the rotation when new: a node the registry names for a sid
   * (e.g. one a second gateway routed to). Its health is probed like the others.
   */
  ensure(url: string): Upstream {
    const origin = new URL(url).origin;
    return this.members.find((m) => m.origin === origin) ?? this.add(url, false);
  }

  /** Takes an upstream out of the rotation after a failed connection, until a probe succeeds. */
  markDown(u: Upstream, reason: string): void {
    if (u.healthy) this.opts.logger.warn({ group: this.name, upstream: u.url, reason }, 'upstream down: out of rotation');
    u.healthy = false;
    u.lastError = reason;
    upstreamHealthy.set({ group: this.name, upstream: u.origin }, 0);
  }

  async probeAll(): Promise<void> {
    await Promise.all(this.members.map((u) => this.probe(u)));
  }

  private async probe(u: Upstream): Promise<void> {
    if (this.closed) return;
    // Generous: a busy node that answers slowly is still a node that answers.
    const timeout = Math.min(Math.max(2000, this.opts.healthCheckIntervalMs), 10_000);
    let healthy = false;
    let answered = false;
    let reason: string | undefined;
    try {
      const r = await u.pool.request({
        method: 'GET',
        path: `${u.basePath}/readyz`,
        headersTimeout: timeout,
        bodyTimeout: timeout,
        headers: { 'user-agent': 'chatd-gateway-health' },
      });
      const node = r.headers['x-chatd-node'];
      await r.body.dump();
      if (typeof node === 'string' && node) this.learn(node, u);
      answered = true;
      healthy = r.statusCode === 200;
      if (!healthy) reason = `readyz answered ${r.statusCode}`;
    } catch (err) {
      reason = (err as Error).message;
    }
    if (this.closed) return;
    // A node that says it is not ready (draining: 503) leaves at once; one whose probe failed
    // (timeout, reset) only after two failures in a row — one slow answer on a loaded machine is
    // no reason to stop routing to it. A refused connection during a request removes it at once.
    if (!healthy && !answered && u.healthy && ++u.failures < 2) return;
    if (healthy || answered) u.failures = 0;
    if (healthy !== u.healthy) {
      if (healthy) this.opts.logger.info({ group: this.name, upstream: u.url, node: u.nodeId }, 'upstream healthy: in rotation');
      else this.opts.logger.warn({ group: this.name, upstream: u.url, reason }, 'upstream unhealthy: out of rotation');
    }
    u.healthy = healthy;
    u.lastError = reason;
    upstreamHealthy.set({ group: this.name, upstream: u.origin }, healthy ? 1 : 0);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stop();
    await Promise.allSettled(this.members.map((m) => m.pool.destroy()));
  }

  private add(url: string, inRotation: boolean): Upstream {
    const parsed = new URL(url);
    const u: Upstream = {
      url,
      origin: parsed.origin,
      basePath: parsed.pathname.replace(/\/+$/, ''),
      pool: new Pool(parsed.origin, {
        connections: this.opts.connections ?? null,
        keepAliveTimeout: 30_000,
        keepAliveMaxTimeout: 60_000,
        connect: { timeout: 5_000 },
      }),
      inRotation,
      healthy: true,
      nodeId: undefined,
      lastError: undefined,
      failures: 0,
    };
    this.members.push(u);
    upstreamHealthy.set({ group: this.name, upstream: u.origin }, 1);
    return u;
  }
}
