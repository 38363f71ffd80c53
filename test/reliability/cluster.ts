// A chatd deployment on loopback for the reliability suite: separate processes per role (spawned
// bin/chatd on ports 0), one config per node, a gateway in front, and a mixed-traffic generator
// whose every outcome is accounted for — acknowledged (recorded in the delivery checker), refused
// with a typed transient error, or unknown (retried later with the same clientMessageId until it is
// acknowledged). Nothing in here fixes sleeps; every wait polls a condition with a deadline.
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { expect } from 'vitest';
import { runChatd, spawnChatd, type ChatdProcess } from '../helpers/chatd-process.js';
import type { ClientRecord, DeliveryChecker, StoredReader } from '../helpers/delivery-checker.js';
import { eventually } from '../helpers/eventually.js';
import { hasPgBinaries } from '../helpers/db/pg-cluster.js';
import { hasRedisServerBinary } from '../helpers/own-redis.js';
import { IN_CI } from '../helpers/services.js';

export const RELIABILITY_FULL = process.env.CHATD_FULL_RELIABILITY === '1';

/**
 * Whether the fault runs that start their own redis-server and PostgreSQL cluster may run (both
 * binaries installed). Outside CI their absence skips them with a message; with CI=true it throws,
 * failing the file instead of skipping it.
 */
export function ownServicesAvailable(): boolean {
  const missing = [!hasRedisServerBinary() && 'redis-server', !hasPgBinaries() && 'PostgreSQL (initdb, pg_ctl)'].filter(Boolean);
  if (missing.length === 0) return true;
  const msg = `fault runs need ${missing.join(' and ')} installed`;
  if (IN_CI) throw new Error(`${msg}: CI=true, so tests that need it fail instead of skipping`);
  console.warn(`[reliability] skipped: ${msg}`);
  return false;
}

export interface TenantSpec {
  readonly id: string;
  readonly pub: string;
  readonly sec: string;
}

export const TENANT_A: TenantSpec = { id: 'tenant-a', pub: 'ck_pub_relA_0123456789abcdef01', sec: 'ck_sec_relA_0123456789abcdef01' };
export const TENANT_B: TenantSpec = { id: 'tenant-b', pub: 'ck_pub_relB_0123456789abcdef01', sec: 'ck_sec_relB_0123456789abcdef01' };
export const JWT_SECRET = 'reliability-suite-secret-0123456789abcdef';
export const ADMIN_TOKEN = 'reliability-admin-token-0123456789abcdef';

export interface ClusterOptions {
  readonly redisUrl?: string;
  /** Redis Cluster seed URLs (`redis.cluster.nodes`), instead of redisUrl. */
  readonly redisClusterNodes?: readonly string[];
  readonly redisPrefix?: string;
  /** Every tenant posts its webhooks there (endpoint id `rel`). */
  readonly webhook?: { readonly url: string; readonly secret: string };
  readonly databaseUrl: string;
  readonly schema?: string;
  readonly tenants?: readonly TenantSpec[];
}

/** Limits high enough that loopback traffic from one IP is never rate limited by accident. */
const OPEN_LIMITS = {
  httpPerIp: { rate: 100_000, burst: 100_000 },
  httpPerKey: { rate: 100_000, burst: 100_000 },
  connectPerIp: { rate: 100_000, burst: 100_000 },
  handshakePerIp: { rate: 100_000, burst: 100_000 },
  pendingPerIp: 100_000,
  maxPendingConnections: 100_000,
  connectPerKey: { rate: 100_000, burst: 100_000 },
  messagesPerSocket: { rate: 100_000, burst: 100_000 },
};

export class Cluster {
  readonly procs = new Map<string, ChatdProcess>();
  readonly cwds = new Map<string, string>();
  constructor(readonly opts: ClusterOptions) {}

  async config(name: string, extra: Record<string, unknown> = {}): Promise<string> {
    const cwd = this.cwds.get(name) ?? (await mkdtemp(path.join(tmpdir(), `chatd-rel-${name}-`)));
    this.cwds.set(name, cwd);
    const tenants = (this.opts.tenants ?? [TENANT_A, TENANT_B]).map((t) => ({
      id: t.id,
      apiKeys: [{ key: t.pub }, { key: t.sec }],
      allowedOrigins: ['*'],
      ...(this.opts.webhook ? { webhooks: [{ id: 'rel', url: this.opts.webhook.url, secret: this.opts.webhook.secret }] } : {}),
    }));
    const config = {
      nodeId: name,
      server: { host: '127.0.0.1', port: 0, trustedProxies: ['127.0.0.1'] },
      roles: { api: { host: '127.0.0.1', port: 0 }, ws: { host: '127.0.0.1', port: 0 } },
      admin: { port: 0, token: ADMIN_TOKEN },
      log: { level: 'info', format: 'json' },
      ...(this.opts.redisUrl ? { redis: { url: this.opts.redisUrl, prefix: this.opts.redisPrefix ?? '' } } : {}),
      ...(this.opts.redisClusterNodes
        ? { redis: { cluster: { nodes: this.opts.redisClusterNodes }, prefix: this.opts.redisPrefix ?? '' } }
        : {}),
      database: {
        url: this.opts.databaseUrl,
        ...(this.opts.schema ? { schema: this.opts.schema } : {}),
        connectTimeoutMs: 2000,
        statementTimeoutMs: 5000,
      },
      tenants,
      limits: OPEN_LIMITS,
      socketio: { pingIntervalMs: 2000, pingTimeoutMs: 4000 },
      presence: { heartbeatMs: 500, nodeTimeoutMs: 3000, offlineGraceMs: 500 },
      ...extra,
    };
    await writeFile(path.join(cwd, 'chat-server.yaml'), JSON.stringify(config, null, 2));
    return cwd;
  }

  async migrate(): Promise<void> {
    const cwd = await this.config('migrate');
    const r = await runChatd(['migrate', 'up'], { cwd, env: { JWT_SECRET } });
    if (r.code !== 0) throw new Error(`chatd migrate up failed: ${r.stderr}${r.stdout}`);
  }

  /** Starts (or restarts, keeping its folder) node `name` with `role`; waits for its listener. */
  async start(name: string, role: 'api' | 'ws' | 'gateway' | 'all', extra: Record<string, unknown> = {}): Promise<ChatdProcess> {
    const cwd = await this.config(name, extra);
    const listener = role === 'all' ? 'public' : role;
    const p = await spawnChatd({
      cwd,
      env: { JWT_SECRET },
      args: ['serve', '--role', role],
      waitFor: [listener, 'admin'],
      timeoutMs: 120_000,
    });
    this.procs.set(name, p);
    return p;
  }

  url(name: string, listener: string): string {
    const p = this.procs.get(name);
    if (!p) throw new Error(`no node ${name}`);
    return `http://127.0.0.1:${p.ports[listener]}`;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.procs.values()].map((p) => p.stop('SIGKILL')));
  }

  /** Writes every node's log to `dir` (for a failed run's post-mortem). */
  async dumpLogs(dir = path.join(tmpdir(), 'chatd-reliability-logs')): Promise<string> {
    await mkdir(dir, { recursive: true });
    for (const [name, p] of this.procs) await writeFile(path.join(dir, `${name}.log`), p.logs() + p.stderr());
    return dir;
  }
}

export interface HttpAnswer {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

/** One HTTP call; a transport failure resolves with status 0 and the error text. */
export async function call(
  base: string,
  method: string,
  p: string,
  credential: string | undefined,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<HttpAnswer> {
  try {
    const r = await fetch(`${base}${p}`, {
      method,
      headers: {
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...(credential ? { authorization: `Bearer ${credential}` } : {}),
        ...headers,
      },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await r.text();
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      parsed = { raw: text };
    }
    return { status: r.status, body: parsed };
  } catch (err) {
    return { status: 0, body: { error: (err as Error).message } };
  }
}

/** Transient, typed refusals a client may get while a dependency or node is down. */
export const TRANSIENT = new Set([
  'dependency_unavailable',
  'outcome_unknown',
  'upstream_unavailable',
  'upstream_timeout',
  'draining',
  'capacity',
  'rate_limited',
]);

export const offsetOf = (o: unknown) => Number(String(o).split('~')[0]);

/** Wires a socket's stream events into a checker record; a reconnect opens a segment unless recovered. */
export function follow(socket: Socket, record: ClientRecord, withPresence = false): void {
  socket.on('meta_message_created', (p: { message: { id: string } }, offset: unknown) => record.received(p.message.id, offsetOf(offset)));
  if (withPresence) socket.on('presence_update', (_p: unknown, offset: unknown) => record.receivedOther(offsetOf(offset)));
  // Registered after the first connect (the usual case): the next connect is already a reconnect.
  let first = !socket.connected;
  socket.on('connect', () => {
    if (!first) record.reconnected(socket.recovered);
    first = false;
  });
}

export function connected(s: Socket, timeoutMs = 60_000): Promise<void> {
  if (s.connected) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('socket did not connect')), timeoutMs);
    s.once('connect', () => (clearTimeout(t), resolve()));
    s.once('connect_error', (e: Error & { data?: unknown }) => {
      if (!s.active) {
        clearTimeout(t);
        reject(Object.assign(new Error(`connect_error: ${e.message}`), { data: e.data }));
      }
    });
  });
}

interface Pending {
  readonly tenantId: string;
  readonly sessionId: string;
  readonly token: string;
  readonly fingerprint: string;
  readonly clientMessageId: string;
  readonly text: string;
  /** The checker's number for the first attempt (a retry keeps it: it may have been stored then). */
  readonly started: number;
}

export interface TrafficStats {
  attempts: number;
  acked: number;
  refused: Record<string, number>;
  unknown: number;
  unexpected: string[];
}

export interface Visitor {
  readonly tenant: TenantSpec;
  readonly sessionId: string;
  readonly fingerprint: string;
  readonly token: string;
  readonly socket: Socket;
}

/**
 * Mixed traffic through one entry point (the gateway): visitors over websocket and over polling,
 * each sending in turn over its socket (ack) and over HTTP, and an agent following the tenant's
 * agent stream. Every send has a unique clientMessageId, so an unknown outcome is settled later by
 * retrying it: the retry either returns the stored message's id or stores it now.
 */
/** What Traffic.checkpoint reads: the stored messages, the outbox, and optionally the webhooks. */
export interface CheckpointDeps {
  readonly reader: StoredReader;
  readonly outboxRows: () => Promise<number>;
  /** Every stored message id, and the webhook bodies received so far: each id must have arrived. */
  readonly webhooks?: { stored(): Promise<Iterable<string>>; received(): readonly { body: string }[] };
  /** More to print when the checker finds problems. */
  readonly context?: () => string;
}

export class Traffic {
  readonly visitors: Visitor[] = [];
  readonly sockets: Socket[] = [];
  readonly stats: TrafficStats = { attempts: 0, acked: 0, refused: {}, unknown: 0, unexpected: [] };
  readonly pending: Pending[] = [];
  #running = false;
  #loops: Promise<void>[] = [];
  #seq = 0;

  constructor(
    readonly entry: () => string,
    readonly checker: DeliveryChecker,
    readonly tenant: TenantSpec = TENANT_A,
  ) {}

  async addVisitor(sessionId: string, transports: 'websocket' | 'polling'): Promise<Visitor> {
    const fingerprint = `fp-${sessionId}`;
    const minted = await call(this.entry(), 'POST', '/api/chat/anonymous-token', this.tenant.pub, {
      tenantId: this.tenant.id,
      sessionId,
      fingerprint,
    });
    if (minted.status !== 200) throw new Error(`anonymous-token ${minted.status} ${JSON.stringify(minted.body)}`);
    const token = minted.body.token as string;
    const socket = io(this.entry(), {
      auth: { apiKey: this.tenant.pub, token, sessionId, fingerprint },
      ...(transports === 'websocket' ? { transports: ['websocket'] } : {}),
      reconnectionDelay: 200,
      reconnectionDelayMax: 2000,
    });
    this.sockets.push(socket);
    await connected(socket);
    follow(socket, this.checker.client(`visitor-${sessionId}`, { kind: 'conversation', tenantId: this.tenant.id, sessionId }));
    const v = { tenant: this.tenant, sessionId, fingerprint, token, socket };
    this.visitors.push(v);
    return v;
  }

  async addAgent(name: string): Promise<Socket> {
    const minted = await call(this.entry(), 'POST', '/api/chat/agent-token', this.tenant.sec, { tenantId: this.tenant.id, userId: name });
    if (minted.status !== 200) throw new Error(`agent-token ${minted.status} ${JSON.stringify(minted.body)}`);
    const socket = io(this.entry(), {
      auth: { token: minted.body.token },
      transports: ['websocket'],
      reconnectionDelay: 200,
      reconnectionDelayMax: 2000,
    });
    this.sockets.push(socket);
    await connected(socket);
    follow(socket, this.checker.client(`agent-${name}`, { kind: 'agents', tenantId: this.tenant.id }), true);
    return socket;
  }

  #note(outcome: 'acked' | 'unknown' | string, p: Pending, messageId?: string): void {
    if (outcome === 'acked') {
      this.stats.acked++;
      this.checker.acked(messageId!, p.tenantId, p.sessionId, p.started);
    } else if (outcome === 'unknown') {
      this.stats.unknown++;
      this.pending.push(p);
    } else if (TRANSIENT.has(outcome)) {
      this.stats.refused[outcome] = (this.stats.refused[outcome] ?? 0) + 1;
      // Refused means not stored, but outcome_unknown may be stored: settle it like an unknown.
      if (outcome === 'outcome_unknown' || outcome === 'upstream_timeout') this.pending.push(p);
    } else {
      this.stats.unexpected.push(outcome);
    }
  }

  /** One message over HTTP, with its own clientMessageId (a resend is a retry, not a new message). */
  #post(p: Pending) {
    return call(this.entry(), 'POST', '/webchat/message', p.token, {
      text: p.text,
      tenantId: p.tenantId,
      sessionId: p.sessionId,
      fingerprint: p.fingerprint,
      clientMessageId: p.clientMessageId,
    });
  }

  async #sendHttp(p: Pending): Promise<void> {
    const r = await this.#post(p);
    if (r.status === 200 && r.body.success === true) this.#note('acked', p, r.body.messageId as string);
    else if (r.status === 0 || (r.status >= 500 && !r.body.code)) this.#note('unknown', p);
    else this.#note(String(r.body.code ?? `http ${r.status} ${JSON.stringify(r.body)}`), p);
  }

  async #sendWs(v: Visitor, p: Pending): Promise<void> {
    try {
      const ack = (await v.socket.timeout(10_000).emitWithAck('message', {
        text: p.text,
        tenantId: p.tenantId,
        sessionId: p.sessionId,
        fingerprint: p.fingerprint,
        clientMessageId: p.clientMessageId,
      })) as { success: boolean; messageId?: string; code?: string; error?: string };
      if (ack.success) this.#note('acked', p, ack.messageId);
      else this.#note(ack.code ?? `ws ${JSON.stringify(ack)}`, p);
    } catch {
      this.#note('unknown', p); // no ack in time: maybe stored
    }
  }

  /** Starts one send loop per visitor (each waits for its answer before the next send). */
  start(pauseMs = 100): void {
    this.#running = true;
    this.#loops = this.visitors.map(async (v, i) => {
      let n = 0;
      while (this.#running) {
        const p: Pending = {
          tenantId: v.tenant.id,
          sessionId: v.sessionId,
          token: v.token,
          fingerprint: v.fingerprint,
          clientMessageId: `c-${v.sessionId}-${this.#seq++}`,
          text: `m ${n} from ${v.sessionId}`,
          started: this.checker.sendStarted(),
        };
        this.stats.attempts++;
        if ((n + i) % 2 === 0 && v.socket.connected) await this.#sendWs(v, p);
        else await this.#sendHttp(p);
        n++;
        await new Promise((r) => setTimeout(r, pauseMs)); // pacing the traffic, not waiting for anything
      }
    });
  }

  /** Waits for `n` more acknowledged sends after `what`. */
  async sendsResume(n: number, what: string): Promise<void> {
    const before = this.stats.acked;
    await eventually(() => this.stats.acked >= before + n, `${n} acknowledged sends after ${what}`, {
      timeoutMs: 180_000,
      intervalMs: 100,
      retryOnError: true,
    });
  }

  /**
   * Stops the traffic, settles unknown outcomes, runs the delivery checker against what was stored,
   * waits for the outbox to drain and, given `webhooks`, for every stored message's webhook.
   */
  async checkpoint(what: string, d: CheckpointDeps): Promise<void> {
    await this.stop();
    await this.settlePending();
    const report = await this.checker.settle(d.reader, { timeoutMs: 90_000, intervalMs: 250 });
    expect(report.problems, `${what}\n${report.summary}${d.context ? `\n${d.context()}` : ''}`).toEqual([]);
    expect(this.stats.unexpected, what).toEqual([]);
    await eventually(async () => (await d.outboxRows()) === 0, `the outbox drains (${what})`, {
      timeoutMs: 60_000,
      intervalMs: 250,
      retryOnError: true,
    });
    const webhooks = d.webhooks;
    if (!webhooks) return;
    const ids = await webhooks.stored();
    await eventually(
      () => {
        const delivered = new Set(webhooks.received().map((r) => (JSON.parse(r.body) as { data: { id: string } }).data.id));
        return [...ids].every((id) => delivered.has(id));
      },
      `every acknowledged message's webhook delivered (${what})`,
      { timeoutMs: 120_000, intervalMs: 250 },
    );
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
  }

  /** Runs until `n` more sends were attempted (or the deadline passes). */
  async runFor(n: number, what: string, timeoutMs = 120_000): Promise<void> {
    const target = this.stats.attempts + n;
    await eventually(() => this.stats.attempts >= target, `${n} sends (${what})`, { timeoutMs, intervalMs: 100, retryOnError: true });
  }

  /**
   * Settles every unknown outcome: retries it over HTTP with the same clientMessageId until it is
   * acknowledged (the stored id comes back, or it is stored now).
   */
  async settlePending(timeoutMs = 120_000): Promise<number> {
    let settled = 0;
    while (this.pending.length > 0) {
      const p = this.pending.shift()!;
      await eventually(
        async () => {
          const r = await this.#post(p);
          if (r.status === 200 && r.body.success === true) {
            this.checker.acked(r.body.messageId as string, p.tenantId, p.sessionId, p.started);
            return true;
          }
          if (r.status > 0 && r.status < 500 && r.body.code !== 'rate_limited')
            throw new Error(`retry of ${p.clientMessageId} refused: ${r.status} ${JSON.stringify(r.body)}`);
          return false;
        },
        `retry of ${p.clientMessageId}`,
        { timeoutMs, intervalMs: 250, retryOnError: true },
      );
      settled++;
    }
    return settled;
  }

  close(): void {
    for (const s of this.sockets) s.close();
  }
}

/**
 * A TCP proxy in front of Redis for one node, able to act on the first client command whose bytes
 * contain a marker (e.g. `:pub:`, the key of publishMessage): the hook runs before the command is
 * forwarded, and the command is dropped — used to SIGKILL a node between commit and publish.
 */
export class RedisTap {
  #armed: { marker: string; hook: () => void } | undefined;
  fired = 0;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();

  constructor(readonly targetPort: number) {
    this.#server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, '127.0.0.1');
      this.#sockets.add(client).add(upstream);
      const cut = () => (client.destroy(), upstream.destroy());
      client.on('error', cut).on('close', () => (this.#sockets.delete(client), upstream.destroy()));
      upstream.on('error', cut).on('close', () => (this.#sockets.delete(upstream), client.destroy()));
      upstream.on('data', (d: Buffer) => client.write(d));
      client.on('data', (d: Buffer) => {
        const armed = this.#armed;
        if (armed && d.includes(armed.marker)) {
          this.#armed = undefined;
          this.fired++;
          armed.hook();
          cut();
          return;
        }
        upstream.write(d);
      });
    });
  }

  arm(marker: string, hook: () => void): void {
    this.#armed = { marker, hook };
  }

  listen(): Promise<string> {
    return new Promise((resolve) =>
      this.#server.listen(0, '127.0.0.1', () => resolve(`redis://127.0.0.1:${(this.#server.address() as net.AddressInfo).port}`)),
    );
  }

  close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

/**
 * A plain L4 load balancer of one: forwards every TCP connection to the port `target()` names at
 * connect time (the gateway's, which changes when it is restarted), so clients keep one address
 * across a gateway's death, as behind a real load balancer.
 */
export class TcpForwarder {
  readonly #server: net.Server;
  readonly #open = new Set<net.Socket>();
  /** Every connection: the port it went to and its first request line (for assertions on routing). */
  readonly connections: { readonly port: number; requestLine: string }[] = [];

  constructor(target: () => number) {
    this.#server = net.createServer((client) => {
      const port = target();
      const rec = { port, requestLine: '' };
      this.connections.push(rec);
      client.once('data', (d: Buffer) => (rec.requestLine = d.toString('latin1').split('\r\n')[0]!));
      const upstream = net.connect(port, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.#open.add(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          this.#open.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  listen(): Promise<string> {
    return new Promise((resolve) =>
      this.#server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(this.#server.address() as net.AddressInfo).port}`)),
    );
  }

  close(): Promise<void> {
    for (const s of this.#open) s.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

/**
 * Round robin over the nodes a health check finds ready (GET /readyz on `listener`, every 200 ms),
 * as a plain L4 balancer with no stickiness does: use `target` as a TcpForwarder's target. `slots`
 * is the rotation, where a node may appear more than once (a weighted round robin). A node that
 * is killed or draining leaves the rotation at its first failed check; while none is ready, every
 * slot is tried in turn.
 */
export class RoundRobin {
  readonly ready = new Set<string>();
  #n = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly cluster: Cluster,
    readonly slots: readonly string[],
    readonly listener = 'public',
  ) {}

  readonly target = (): number => {
    const live = this.slots.filter((n) => this.ready.has(n));
    const pool = live.length > 0 ? live : this.slots;
    return this.cluster.procs.get(pool[this.#n++ % pool.length]!)!.ports[this.listener]!;
  };

  start(intervalMs = 200): void {
    const check = async () => {
      await Promise.all(
        [...new Set(this.slots)].map(async (name) => {
          const port = this.cluster.procs.get(name)?.ports[this.listener];
          const ok = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) })
            .then((r) => r.status === 200)
            .catch(() => false);
          if (ok) this.ready.add(name);
          else this.ready.delete(name);
        }),
      );
      if (this.#timer !== undefined) this.#timer = setTimeout(() => void check(), intervalMs);
    };
    this.#timer = setTimeout(() => void check(), 0);
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
