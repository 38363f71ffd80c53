// A real Redis Cluster of a test's own: three masters and three replicas (`redis-server
// --cluster-enabled yes`, joined by `redis-cli --cluster create … --cluster-replicas 1`) on free
// loopback ports, each node in its own folder under one temp folder. Faults act on single nodes by
// PID (kill -9 a master, restart it, restart the whole cluster) and `reshard` moves one slot with
// `redis-cli --cluster reshard`. stop() kills every node by PID and removes the folder; nothing
// here touches the shared Redis. Optionally with a password and TLS only (clients, replication, the
// cluster bus). Needs the redis-server and redis-cli binaries (≥ 7: sharded pub/sub).
import { spawn, spawnSync, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { eventually } from './eventually.js';
import { IN_CI } from './services.js';

const run = promisify(execFile);

/** `n` distinct free loopback ports: every socket is held open until all are chosen. */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const srv = net.createServer();
          srv.on('error', reject);
          srv.listen(0, '127.0.0.1', () => resolve(srv));
        }),
    ),
  );
  const ports = servers.map((srv) => (srv.address() as net.AddressInfo).port);
  await Promise.all(servers.map((srv) => new Promise((r) => srv.close(r))));
  return ports;
}

/** Whether redis-server and redis-cli ≥ 7 are installed; with CI=true their absence throws (the tests must not skip). */
export function hasClusterBinaries(): boolean {
  const server = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  const cli = spawnSync('redis-cli', ['--version'], { encoding: 'utf8' });
  const major = Number(/v=(\d+)\./.exec(server.stdout ?? '')?.[1] ?? 0);
  const ok = server.status === 0 && cli.status === 0 && major >= 7;
  if (!ok) {
    const msg = 'redis-server/redis-cli ≥ 7 not installed (Redis Cluster with sharded pub/sub)';
    if (IN_CI) throw new Error(`${msg}: CI=true, so tests that need it fail instead of skipping`);
    process.stderr.write(`\n  ⚠ SKIPPING Redis Cluster tests: ${msg}\n`);
  }
  return ok;
}

/** How the helper itself reaches a node: TLS (any certificate) and a password, when the cluster has them. */
interface Access {
  readonly tls: boolean;
  readonly password: string | undefined;
}

/**
 * Sends one command over raw RESP (after AUTH when there is a password) and returns the reply
 * text: no client library, so no reconnect machinery to tear down.
 */
function rawCommand(access: Access, port: number, ...args: string[]): Promise<string | null> {
  const frame = (a: string[]) => `*${a.length}\r\n${a.map((x) => `$${Buffer.byteLength(x)}\r\n${x}\r\n`).join('')}`;
  return new Promise((resolve) => {
    const s = access.tls ? tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }) : net.connect(port, '127.0.0.1');
    let buf = '';
    let skip = access.password !== undefined; // the AUTH reply comes first
    s.setTimeout(2000, () => (s.destroy(), resolve(null)));
    s.on('error', () => resolve(null));
    s.on(access.tls ? 'secureConnect' : 'connect', () =>
      s.write((access.password !== undefined ? frame(['AUTH', access.password]) : '') + frame(args)),
    );
    s.on('data', (d) => {
      buf += d.toString();
      if (skip) {
        const end = buf.indexOf('\r\n');
        if (end < 0) return;
        if (!buf.startsWith('+OK')) return (s.destroy(), resolve(null));
        buf = buf.slice(end + 2);
        skip = false;
      }
      // Simple replies end at the first CRLF; bulk replies ($len) after len bytes more.
      const bulk = /^\$(-?\d+)\r\n/.exec(buf);
      if (bulk) {
        const len = Number(bulk[1]);
        if (len < 0 || Buffer.byteLength(buf) >= bulk[0].length + len + 2) {
          s.destroy();
          resolve(len < 0 ? null : buf.slice(bulk[0].length, bulk[0].length + len));
        }
      } else if (buf.includes('\r\n')) {
        s.destroy();
        resolve(buf.slice(0, buf.indexOf('\r\n')));
      }
    });
  });
}

export interface ClusterNode {
  port: number;
  busPort: number;
  readonly dir: string;
  child: ChildProcess | undefined;
}

export interface RedisClusterOptions {
  /** AOF on every node, so a whole-cluster restart keeps the data (default: no persistence). */
  readonly appendonly?: boolean;
  /** cluster-node-timeout (ms): how soon a silent master is failed over (default 1500). */
  readonly nodeTimeoutMs?: number;
  /** requirepass and masterauth on every node. */
  readonly password?: string;
  /** TLS only (clients, replication and the cluster bus), with this certificate, key and CA file. */
  readonly tls?: { readonly cert: string; readonly key: string; readonly ca: string };
}

export class RedisCluster {
  readonly nodes: ClusterNode[] = [];
  private constructor(
    readonly root: string,
    private readonly opts: RedisClusterOptions,
  ) {}

  /** Starts six nodes and joins them as three masters with one replica each; resolves when every slot is served. */
  static async start(opts: RedisClusterOptions = {}): Promise<RedisCluster> {
    const root = mkdtempSync(path.join(tmpdir(), 'chatd-cluster-'));
    const c = new RedisCluster(root, opts);
    try {
      const ports = await freePorts(12);
      for (let i = 0; i < 6; i++) {
        const dir = path.join(root, `node-${i}`);
        mkdirSync(dir);
        c.nodes.push({ port: ports[2 * i]!, busPort: ports[2 * i + 1]!, dir, child: undefined });
      }
      await Promise.all(c.nodes.map((n) => c.startNode(n, { newPortsIfTaken: true })));
      await c.cli('--cluster', 'create', ...c.nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes');
      await c.waitHealthy();
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  /** Seed URLs, as `redis.cluster.nodes` takes them (rediss:// and the password when the cluster has them). */
  get urls(): string[] {
    const auth = this.opts.password !== undefined ? `:${encodeURIComponent(this.opts.password)}@` : '';
    return this.nodes.map((n) => `${this.opts.tls ? 'rediss' : 'redis'}://${auth}127.0.0.1:${n.port}`);
  }

  private get access(): Access {
    return { tls: this.opts.tls !== undefined, password: this.opts.password };
  }

  /** Runs redis-cli with the cluster's password and TLS settings. */
  cli(...args: string[]): Promise<{ stdout: string }> {
    const auth = this.opts.password !== undefined ? ['-a', this.opts.password, '--no-auth-warning'] : [];
    const secure = this.opts.tls ? ['--tls', '--cacert', this.opts.tls.ca] : [];
    return run('redis-cli', [...auth, ...secure, ...args], { timeout: 60_000 });
  }

  /**
   * Starts one node and waits for its PING. Before the cluster is created a node whose port was
   * taken meanwhile (another process bound it between the probe and redis-server: redis-server
   * exits) gets fresh ports; after, a node keeps its address (nodes.conf names it).
   */
  private async startNode(n: ClusterNode, opts: { newPortsIfTaken?: boolean } = {}): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (await this.spawnNode(n)) return;
      if (!opts.newPortsIfTaken || attempt >= 3) throw new Error(`redis-server for cluster node ${n.port} exited at start`);
      const [port, busPort] = await freePorts(2);
      Object.assign(n, { port: port!, busPort: busPort! });
    }
  }

  /** Spawns a node; resolves true when it answers PING, false when it exited first. */
  private async spawnNode(n: ClusterNode): Promise<boolean> {
    const t = this.opts.tls;
    const listen = t
      ? ['--port', '0', '--tls-port', String(n.port), '--tls-cluster', 'yes', '--tls-replication', 'yes', '--tls-cert-file', t.cert,
          '--tls-key-file', t.key, '--tls-ca-cert-file', t.ca, '--tls-auth-clients', 'no'] // prettier-ignore
      : ['--port', String(n.port)];
    const auth = this.opts.password !== undefined ? ['--requirepass', this.opts.password, '--masterauth', this.opts.password] : [];
    const args = [
      ...listen,
      ...auth,
      '--cluster-port', String(n.busPort),
      '--bind', '127.0.0.1',
      '--cluster-enabled', 'yes',
      '--cluster-config-file', 'nodes.conf',
      '--cluster-node-timeout', String(this.opts.nodeTimeoutMs ?? 1500),
      '--dir', n.dir,
      '--save', '',
      '--appendonly', this.opts.appendonly ? 'yes' : 'no',
      '--appendfsync', 'everysec',
    ]; // prettier-ignore
    const child = spawn('redis-server', args, { stdio: 'ignore' });
    n.child = child;
    await eventually(
      async () => child.exitCode !== null || child.signalCode !== null || (await rawCommand(this.access, n.port, 'PING')) === '+PONG',
      `cluster node ${n.port} to answer PING`,
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    if (child.exitCode === null && child.signalCode === null) return true;
    n.child = undefined;
    return false;
  }

  /** Resolves when every running node reports cluster_state:ok and every master has its replica linked. */
  async waitHealthy(timeoutMs = 60_000): Promise<void> {
    await eventually(
      async () => {
        for (const n of this.nodes) {
          if (!n.child) continue;
          const info = await rawCommand(this.access, n.port, 'CLUSTER', 'INFO');
          if (!info?.includes('cluster_state:ok') || !info.includes('cluster_slots_ok:16384')) return false;
        }
        const roles = await Promise.all(this.nodes.filter((m) => m.child).map((m) => this.role(m.port)));
        const masters = roles.filter((r) => r.role === 'master');
        return masters.length === 3 && masters.every((m) => m.linkedReplicas >= 1);
      },
      'the cluster to be healthy (all slots served, every master with a replica)',
      { timeoutMs, intervalMs: 100 },
    );
  }

  /** The role of a node and, for a master, how many replicas are online. */
  async role(port: number): Promise<{ role: string; linkedReplicas: number }> {
    const info = (await rawCommand(this.access, port, 'INFO', 'replication')) ?? '';
    const role = /role:(\w+)/.exec(info)?.[1] ?? 'unknown';
    const linkedReplicas = [...info.matchAll(/^slave\d+:.*state=online/gm)].length;
    return { role, linkedReplicas };
  }

  /** The port of the master serving `slot` now (from CLUSTER NODES of a running node). */
  async masterOf(slot: number): Promise<number> {
    for (const n of this.nodes) {
      if (!n.child) continue;
      const text = await rawCommand(this.access, n.port, 'CLUSTER', 'NODES');
      if (!text) continue;
      for (const line of text.trim().split('\n')) {
        const [, addr, flags, , , , , link, ...slots] = line.split(' ');
        if (!flags?.includes('master') || flags.includes('fail') || link !== 'connected') continue;
        for (const r of slots) {
          const m = /^(\d+)(?:-(\d+))?$/.exec(r);
          if (m && slot >= Number(m[1]) && slot <= Number(m[2] ?? m[1])) return Number(/:(\d+)@/.exec(addr!)![1]);
        }
      }
    }
    throw new Error(`no master found for slot ${slot}`);
  }

  /** The slot of a key, as the cluster computes it. */
  async keyslot(key: string): Promise<number> {
    for (const n of this.nodes) {
      if (!n.child) continue;
      const r = await rawCommand(this.access, n.port, 'CLUSTER', 'KEYSLOT', key);
      if (r?.startsWith(':')) return Number(r.slice(1));
    }
    throw new Error('no node answered CLUSTER KEYSLOT');
  }

  /** The ports of the running masters. */
  async masters(): Promise<number[]> {
    const out: number[] = [];
    for (const n of this.nodes) if (n.child && (await this.role(n.port)).role === 'master') out.push(n.port);
    return out;
  }

  /** The node id of the node on `port`. */
  async nodeId(port: number): Promise<string> {
    const id = await rawCommand(this.access, port, 'CLUSTER', 'MYID');
    if (!id) throw new Error(`node ${port} did not answer CLUSTER MYID`);
    return id;
  }

  /** kill -9 one node (its folder stays, so it can be restarted and rejoin). */
  async kill(port: number): Promise<void> {
    const n = this.node(port);
    const child = n.child;
    n.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }

  /** Starts a killed node again from its folder (nodes.conf: it rejoins as it was, or as a replica). */
  async restart(port: number): Promise<void> {
    await this.startNode(this.node(port));
  }

  /**
   * Kills every node at once, then starts them all again and waits for the cluster to be healthy.
   * `wipe`: their data is deleted in between (AOF and RDB; nodes.conf stays, so the slots are kept):
   * a cluster that comes back empty.
   */
  async restartAll(opts: { wipe?: boolean } = {}): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.kill(n.port)));
    if (opts.wipe) {
      for (const n of this.nodes) {
        rmSync(path.join(n.dir, 'appendonlydir'), { recursive: true, force: true });
        rmSync(path.join(n.dir, 'dump.rdb'), { force: true });
      }
    }
    await Promise.all(this.nodes.map((n) => this.startNode(n)));
    await this.waitHealthy();
  }

  /** Moves one slot (and its keys) to another master with `redis-cli --cluster reshard`. */
  async moveSlot(slot: number, toPort: number): Promise<void> {
    const from = await this.masterOf(slot);
    if (from === toPort) return;
    const [fromId, toId] = await Promise.all([this.nodeId(from), this.nodeId(toPort)]);
    // reshard moves N slots from a source; with one source node and --cluster-slots 1 it picks the
    // source's first slot, so a single chosen slot is moved with the lower-level commands it uses.
    await this.cli('-p', String(toPort), 'CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', fromId);
    await this.cli('-p', String(from), 'CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', toId);
    for (;;) {
      const keys = (await this.cli('-p', String(from), 'CLUSTER', 'GETKEYSINSLOT', String(slot), '100')).stdout.split('\n').filter(Boolean);
      if (keys.length === 0) break;
      const auth = this.opts.password !== undefined ? ['AUTH', this.opts.password] : [];
      await this.cli('-p', String(from), 'MIGRATE', '127.0.0.1', String(toPort), '', '0', '5000', ...auth, 'KEYS', ...keys);
    }
    for (const port of await this.masters()) await this.cli('-p', String(port), 'CLUSTER', 'SETSLOT', String(slot), 'NODE', toId);
  }

  private node(port: number): ClusterNode {
    const n = this.nodes.find((x) => x.port === port);
    if (!n) throw new Error(`no cluster node on ${port}`);
    return n;
  }

  /** Kills every node by PID and removes the folder. */
  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.kill(n.port)));
    rmSync(this.root, { recursive: true, force: true });
  }
}
