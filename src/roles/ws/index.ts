// The ws role: Socket.IO for the widget and the agent console. The protocol layer (src/protocol)
// speaks Engine.IO/Socket.IO on uWS; this role decides who connects (connection.ts), what events do
// (handlers.ts), and wires the streams (streams.ts: ordered, exactly-once delivery with recovery)
// and presence (presence-tracker.ts) to the sockets.
//
// Rooms (uWS topics, tenant-scoped): a socket's one stream (`t:{tenant}:conv:{session}` for a
// visitor or user, `t:{tenant}:agents` for an agent), the tenant-wide room `t:{tenant}:all`
// (meta_broadcast) and, for agents, `t:{tenant}:watch:{session}` per joined conversation (typing and
// read). typing/read go to the conversation's topic and its watch topic: an agent never follows a
// conversation's stream, so nobody gets them twice.
import type { Logger } from 'pino';
import type { RoleFactory } from '../role-context.js';
import type { Services } from '../../app/services.js';
import { checkQueryCredentials } from '../../auth/bearer.js';
import { corsPolicyOfTenants } from '../../auth/origins.js';
import { DISCONNECT } from '../../errors.js';
import { createClientIpResolver } from '../../http/client-ip.js';
import { maxConnections, maxPendingConnections } from '../../protocol/capacity.js';
import { RecoveryPids } from '../../protocol/recovery-pid.js';
import { SocketServer } from '../../protocol/server.js';
import type { Socket } from '../../protocol/types.js';
import { createGatewayLimits } from '../gateway/rate-limits.js';
import { createSidForwarder, type SidForwarder } from '../../cluster/sid-forwarder.js';
import { mountLinkServer } from '../../cluster/link-server.js';
import { peerTrust } from '../../cluster/http-proxy.js';
import type { WsData } from '../../protocol/session.js';
import { engineOf, MemoryRateLimiter } from '../../store/index.js';
import { createAuthenticate, type WsConn } from './connection.js';
import { conversationTopic, tenantTopic, watchTopic } from '../../topics.js';
import { createEventHandler } from './handlers.js';
import { AgentPresenceTracker } from './agent-presence-tracker.js';
import { AvailabilityNotifier } from './availability-notifier.js';
import { PresenceTracker } from './presence-tracker.js';
import { offsetToken, streamId, StreamHub, type PassThroughEvent } from './streams.js';
import { randomBytes } from 'node:crypto';

/** The shared services the ws role uses (the api role's pattern: only what it calls). */
export type WsServices = Pick<Services, 'auth' | 'chat' | 'store' | 'db'>;

interface Runtime {
  readonly svc: WsServices;
  readonly hub: StreamHub;
  readonly tracker: PresenceTracker;
  readonly agents: AgentPresenceTracker;
  readonly availability: AvailabilityNotifier;
}

export const createWsRole: RoleFactory = async (ctx) => {
  const { config, logger } = ctx;
  const log: Logger = logger;
  let draining = false;
  let runtime: Runtime | undefined;
  let starting: Promise<Runtime> | undefined;

  const secret = config.auth.jwtSecret ?? config.auth.jwtKeys.find((k) => k.secret)?.secret;
  if (!secret) log.warn('no shared HS256 secret: recovery ids are valid on this node only');
  const pids = new RecoveryPids(secret ?? randomBytes(32));

  // The open-file limit bounds connections; say what it is.
  const maxConns = maxConnections(config.limits.maxConnections);

  // Several ws nodes behind a plain L4 load balancer (no gateway, no stickiness): a polling request
  // or a websocket upgrade for a session another node owns is forwarded to it. An engine no other process shares (the
  // memory store) means one node alone: no peers.
  const forwarder: SidForwarder | undefined = engineOf(config).shared
    ? createSidForwarder({
        config,
        nodeId: ctx.nodeId,
        logger: log.child({ component: 'sid-forwarder' }),
        roles: ctx.roles,
        port: ctx.port,
        registry: async () => (await ctx.store()).nodes,
      })
    : undefined;

  // A separate gateway tier reaches this node over edge links (one per gateway), from trusted peers only.
  const links = mountLinkServer<WsData<WsConn>>({
    app: ctx.app,
    trusted: peerTrust(config.server.trustedProxies),
    logger: log.child({ component: 'link' }),
  });

  const server: SocketServer<WsConn> = new SocketServer<WsConn>({
    app: ctx.app,
    path: config.socketio.path,
    nodeId: ctx.nodeId,
    pingIntervalMs: config.socketio.pingIntervalMs,
    pingTimeoutMs: config.socketio.pingTimeoutMs,
    maxPayload: config.limits.maxPayloadBytes,
    sendBufferBytes: config.limits.sendBufferBytes,
    maxConnections: maxConns,
    // In process on every node that terminates Socket.IO (bare ws nodes too): no Redis round trip
    // before a session exists, and it holds when Redis is down. Behind a gateway the client IP is
    // X-Forwarded-For's (the gateways must be in server.trustedProxies).
    handshakePerIp: config.limits.handshakePerIp,
    handshakeLimiter: new MemoryRateLimiter(),
    pendingPerIp: config.limits.pendingPerIp,
    maxPending: maxPendingConnections(config.limits.maxPendingConnections, maxConns),
    connectTimeoutMs: config.socketio.connectTimeoutMs,
    eventRate: config.limits.messagesPerSocket,
    clientIp: createClientIpResolver(config.server.trustedProxies),
    // Follows a config reload (the tenants' origins), once the services are open.
    cors: corsPolicyOfTenants(() => runtime?.svc.auth.tenants, config),
    logger: log.child({ component: 'socketio' }),
    hooks: {
      authenticate: (info, socket) => authenticate(info, socket),
      onConnect: (socket) => onConnect(socket),
      onEvent: (socket, event, args, ack) => onEvent(socket, event, args, ack),
      onDisconnect: (socket) => onDisconnect(socket),
      onRateLimited: (_socket, _event, ack) => ack?.({ success: false, error: 'Too many events; slow down', code: 'rate_limited' }),
    },
    // Credentials never in a URL (DESIGN.md "Credentials"), on a bare ws node as at the gateway.
    checkQuery: (query) => checkQueryCredentials(new URLSearchParams(query), { allowSid: true }),
    ...(forwarder ? { forward: forwarder } : {}),
    fanout: links.fanout,
  });
  links.attach(server.link);
  forwarder?.start();
  log.info({ maxConnections: maxConns, path: config.socketio.path }, 'socket.io ready');

  /** The store, database and the node's stream hub and presence tracker, created on first use. */
  const getRuntime = (): Promise<Runtime> => {
    if (runtime) return Promise.resolve(runtime);
    starting ??= (async () => {
      const svc: WsServices = await ctx.services();
      const hub = new StreamHub({
        bus: svc.store.bus,
        events: svc.store.events,
        messages: svc.db.messages,
        logger: log.child({ component: 'streams' }),
        recoveryMaxMessages: config.socketio.recoveryMaxMessages,
        onStreamEvent: (key, id, event) => server.publish(id, event.event, [event.payload], offsetToken(key, event)),
        onTenantEvent: (tenantId, event) => onTenantEvent(tenantId, event),
        onStreamBroken: (_key, id, reason) => {
          log.warn({ stream: id, reason }, 'stream broken: its sockets reconnect and recover');
          for (const s of server.sockets()) {
            if (s.context && streamId(s.context.stream) === id) s.close(DISCONNECT.streamBroken);
          }
        },
      });
      const tracker = new PresenceTracker({
        store: svc.store,
        nodeId: ctx.nodeId,
        heartbeatMs: config.presence.heartbeatMs,
        nodeTimeoutMs: config.presence.nodeTimeoutMs,
        offlineGraceMs: config.presence.offlineGraceMs,
        logger: log.child({ component: 'presence' }),
      });
      tracker.start();
      const availability = new AvailabilityNotifier({
        agents: svc.store.agentPresence,
        bus: svc.store.bus,
        tenants: () => svc.auth.tenants,
        emit: (tenantId, state) => server.publish(tenantTopic(tenantId), 'availability_changed', [state]),
        activeTenants: () => tenantSockets.keys(),
        logger: log.child({ component: 'availability' }),
      });
      availability.start();
      const agents = new AgentPresenceTracker({
        store: svc.store.agentPresence,
        nodeId: ctx.nodeId,
        heartbeatMs: config.presence.heartbeatMs,
        nodeTimeoutMs: config.presence.nodeTimeoutMs,
        offlineGraceMs: config.presence.offlineGraceMs,
        logger: log.child({ component: 'agent-presence' }),
        onChange: (tenantId) => availability.agentsChanged(tenantId),
      });
      agents.start();
      runtime = { svc, hub, tracker, agents, availability };
      return runtime;
    })();
    // A failed start (database down) is retried by the next CONNECT.
    starting.catch(() => (starting = undefined));
    return starting;
  };

  // Open them now, in the background: the first CONNECT should not wait for the database.
  getRuntime().catch((err: unknown) =>
    log.warn({ err: (err as Error).message }, 'ws role: services not available yet; retried on the next CONNECT'),
  );

  const perIp = ctx.roles.includes('gateway')
    ? createGatewayLimits(config.limits, async () => (await ctx.services()).store.rateLimiter, log).connect
    : undefined;
  const auth = createAuthenticate({
    config,
    logger: log,
    services: async () => (await getRuntime()).svc,
    hub: () => runtime!.hub,
    server: () => server,
    pids,
    connectPerIp: perIp,
  });
  const authenticate: typeof auth = async (info, socket) => {
    await getRuntime();
    return auth(info, socket);
  };

  const onEvent = createEventHandler({
    logger: log,
    services: async () => (await getRuntime()).svc,
    servicesNow: () => runtime?.svc,
  });

  /** Sockets per tenant on this node: the tenants whose business hours this node watches. */
  const tenantSockets = new Map<string, number>();

  function onConnect(socket: Socket<WsConn>): void {
    const conn = socket.context!;
    socket.join(tenantTopic(conn.principal.tenantId));
    const tid = conn.principal.tenantId;
    const before = tenantSockets.get(tid) ?? 0;
    tenantSockets.set(tid, before + 1);
    if (before === 0) runtime?.availability.watch(tid);
    conn.counted = true;
    const where = conn.where;
    conn.where = undefined;
    if (!runtime || !where) return;
    if (conn.principal.role === 'agent') {
      conn.presence = true;
      void runtime.agents.connect({
        connId: socket.id,
        tenantId: conn.principal.tenantId,
        agentId: conn.userId,
        connectedAt: new Date().toISOString(),
      });
      return;
    }
    if (!conn.sessionId) return;
    conn.presence = true;
    void runtime.tracker.connect({
      connId: socket.id,
      tenantId: conn.principal.tenantId,
      userId: conn.userId,
      sessionId: conn.sessionId,
      role: conn.principal.role,
      connectedAt: new Date().toISOString(),
      ...where,
    });
  }

  function onDisconnect(socket: Socket<WsConn>): void {
    const conn = socket.context;
    if (conn?.counted) {
      conn.counted = false;
      const tid = conn.principal.tenantId;
      const left = (tenantSockets.get(tid) ?? 1) - 1;
      if (left > 0) tenantSockets.set(tid, left);
      else {
        tenantSockets.delete(tid);
        runtime?.availability.forget(tid);
      }
    }
    if (!conn || !runtime) return;
    if (conn.attached) {
      conn.attached = false;
      runtime.hub.release(conn.stream);
    }
    // Draining: the entries stay and are swept after the node timeout, so users who reconnect
    // elsewhere never flap offline.
    if (conn.presence && !draining) {
      conn.presence = false;
      if (conn.principal.role === 'agent') void runtime.agents.disconnect(conn.principal.tenantId, socket.id);
      else void runtime.tracker.disconnect(conn.principal.tenantId, socket.id);
    }
  }

  function onTenantEvent(tenantId: string, event: PassThroughEvent): void {
    switch (event.type) {
      // Encoded once for both rooms (the conversation's, and its agents' watch topic); the payload
      // is the event without its `type`, field by field (no rest copy).
      case 'typing': {
        const frames = server.encode('typing', [{ sessionId: event.sessionId, sender: event.sender, isTyping: event.isTyping }]);
        server.publishEncoded(conversationTopic(tenantId, event.sessionId), frames);
        server.publishEncoded(watchTopic(tenantId, event.sessionId), frames);
        return;
      }
      case 'read': {
        const frames = server.encode('read', [{ sessionId: event.sessionId, messageId: event.messageId, reader: event.reader }]);
        server.publishEncoded(conversationTopic(tenantId, event.sessionId), frames);
        server.publishEncoded(watchTopic(tenantId, event.sessionId), frames);
        return;
      }
      case 'broadcast':
        server.publish(tenantTopic(tenantId), 'meta_broadcast', [{ event: event.event, data: event.data }]);
        return;
      case 'availability':
        void runtime?.availability.refresh(tenantId);
        return;
      case 'revoke':
        for (const s of server.sockets()) {
          const c = s.context;
          if (c && c.principal.tenantId === tenantId && c.principal.role === 'agent' && c.principal.subject === event.userId)
            s.disconnect();
        }
        return;
      default: {
        const never: never = event;
        log.warn({ event: never }, 'unknown tenant event');
      }
    }
  }

  return {
    // Ready once the store, the database and this node's stream hub are up.
    readiness: [{ name: 'ws', check: async () => void (await getRuntime()) }],
    async drain() {
      draining = true;
      await Promise.all([runtime?.tracker.drain(), runtime?.agents.drain()]);
      server.drain();
      links.drain();
      forwarder?.drain();
    },
    async close() {
      server.close();
      links.drain();
      await forwarder?.close();
      const rt = runtime;
      rt?.availability.stop();
      if (rt) await Promise.allSettled([rt.hub.close(), rt.tracker.stop(), rt.agents.stop()]);
    },
  };
};
