// CONNECT for the ws role: who the socket is (API key, JWT, Origin, session binding, identity), the
// per-key connect rate, and the socket's one recoverable stream — its replay happens here, before
// the CONNECT ack, so that `pid` (and with it the client's `recovered`) tells the truth.
//
// Credentials: `auth: { apiKey, token, sessionId?, fingerprint?, domain?, origin?, url?, userId?,
// userHash?, since? }`, or `Authorization: Bearer <api key>` on the handshake for non-browser
// clients. Visitor and user tokens need the tenant's API key next to them; an agent token (minted
// with a secret key) may come alone.
import type { Logger } from 'pino';
import type { Services } from '../../app/services.js';
import { bearerValue, looksLikeJwt } from '../../auth/bearer.js';
import type { Principal } from '../../auth/jwt.js';
import { tenantAllowsOrigin } from '../../auth/tenants.js';
import type { Config } from '../../config/schema.js';
import { ChatdError } from '../../errors.js';
import type { RecoveryPids } from '../../protocol/recovery-pid.js';
import type { SocketServer } from '../../protocol/server.js';
import type { Accepted, ConnectInfo, Socket } from '../../protocol/types.js';
import { agentStream, conversationStream, offsetToken, streamId, type StreamHub, type StreamKey } from './streams.js';

/** What the ws role keeps per socket: small, since it lives as long as the connection. */
export interface WsConn {
  readonly principal: Principal;
  readonly stream: StreamKey;
  /** The visitor's/user's conversation; undefined for agents. */
  readonly sessionId: string | undefined;
  readonly fingerprint: string | undefined;
  /** The userId presence lists (verified or claimed; the sessionId for an anonymous visitor). */
  readonly userId: string;
  /** The stream reference is held (release it exactly once). */
  attached: boolean;
  /** Registered with the presence tracker. */
  presence: boolean;
  /** Counted in the ws role's sockets per tenant. */
  counted?: boolean;
  /** `domain`, `origin`, `url` from CONNECT, for presence; dropped once registered. */
  where: { domain: string; origin: string; url: string } | undefined;
}

export interface ConnectDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly services: () => Promise<Pick<Services, 'auth' | 'chat' | 'store'>>;
  readonly hub: () => StreamHub;
  readonly server: () => SocketServer<WsConn>;
  readonly pids: RecoveryPids;
  /** Per-IP connect limit (only when no separate gateway applied it). */
  readonly connectPerIp: ((ip: string) => Promise<void>) | undefined;
}

const ROLES = { visitor: 'visitor', user: 'user', agent: 'agent' } as const;
/** Events per recovery page (each page is read, then sent paced by the socket's backpressure). */
const REPLAY_PAGE = 200;

const str = (v: unknown, max = 2048): string | undefined => (typeof v === 'string' && v.length > 0 && v.length <= max ? v : undefined);

/** The identity a recovery pid is bound to: tenant, stream, role and subject. */
export function pidIdentity(c: Pick<WsConn, 'principal' | 'stream'>): string {
  return `${c.principal.tenantId}\0${streamId(c.stream)}\0${c.principal.role}\0${c.principal.subject ?? ''}`;
}

export function createAuthenticate(deps: ConnectDeps) {
  const { config } = deps;
  let limiterWarned = false;

  const take = async (svc: Pick<Services, 'store'>, bucket: string, rate: { rate: number; burst: number }) => {
    let r: { allowed: boolean; retryAfterMs: number };
    try {
      r = await svc.store.rateLimiter.take(bucket, rate.rate, rate.burst);
    } catch (err) {
      if (!limiterWarned) deps.logger.warn({ err: (err as Error).message }, 'rate limiter unavailable: connections pass unlimited');
      limiterWarned = true;
      return;
    }
    limiterWarned = false;
    if (!r.allowed) throw new ChatdError('rate_limited', 'Too many connections; retry later');
  };

  return async function authenticate(info: ConnectInfo, socket: Socket<WsConn>): Promise<Accepted<WsConn>> {
    if (deps.connectPerIp) await deps.connectPerIp(info.ip);
    const svc = await deps.services();
    const { auth } = info;

    // 1. The token: who this is.
    const token = str(auth.token, 8192);
    // An oversize token is a bad token, as on HTTP, not a missing one.
    if (!token && typeof auth.token === 'string' && auth.token.length > 8192)
      throw new ChatdError('token_invalid', 'Invalid token: too long');
    if (!token) throw new ChatdError('missing_credentials', 'Missing token: send auth: { apiKey, token }');
    if (!looksLikeJwt(token)) throw new ChatdError('token_invalid', 'Invalid token: not a JWT (get one from /api/chat/anonymous-token)');
    const verified = await svc.auth.tokens.verify(token);

    // 2. The API key: must be this tenant's (agents may come without one).
    const presentedKey = str(auth.apiKey, 512) ?? bearerValue(info.headers.authorization);
    if (presentedKey !== undefined || verified.role !== 'agent') {
      const found = svc.auth.apiKeys.authorize(presentedKey, verified.tenantId);
      await take(svc, `key:${found.keyId}:connect`, config.limits.connectPerKey);
    } else {
      await take(svc, `agent:${verified.tenantId}:${verified.subject ?? verified.jti}:connect`, config.limits.connectPerKey);
    }

    // 3. The Origin, once the tenant is known.
    const tenant = svc.auth.tenants.get(verified.tenantId);
    if (!tenant) throw new ChatdError('token_invalid', 'Invalid token: unknown tenant');
    // Kept for the connection's life: share the tenant id and role strings instead of holding the
    // copies parsed out of this token (thousands of sockets per tenant).
    const principal: Principal = { ...verified, tenantId: tenant.id, role: ROLES[verified.role] };
    if (!tenantAllowsOrigin(tenant, info.origin)) {
      throw new ChatdError('origin_not_allowed', `Origin ${info.origin?.slice(0, 200)} is not allowed for tenant ${tenant.id}`);
    }

    // 4. Session binding and identity (the domain's rules, shared with the HTTP door).
    const fingerprint = str(auth.fingerprint, 128);
    let sessionId: string | undefined;
    let userId: string;
    let stream: StreamKey;
    if (principal.role === 'agent') {
      userId = principal.subject ?? 'agent';
      stream = agentStream(principal.tenantId);
    } else {
      sessionId = await svc.chat.resolveSession(principal, { sessionId: str(auth.sessionId, 128), fingerprint });
      if (!sessionId) throw new ChatdError('validation_failed', 'Invalid request: sessionId is required');
      const identity = svc.chat.identify(principal, { userId: str(auth.userId, 128), userHash: str(auth.userHash, 128) });
      userId = identity.userId ?? sessionId;
      stream = conversationStream(principal.tenantId, sessionId);
    }

    const conn: WsConn = {
      principal,
      stream,
      sessionId,
      fingerprint,
      userId,
      attached: false,
      presence: false,
      where: { domain: str(auth.domain, 256) ?? '', origin: str(auth.origin, 256) ?? info.origin ?? '', url: str(auth.url) ?? '' },
    };

    // 5. The stream: replay what the client missed (recovery, or its own `since` cursor), then follow.
    const identity = pidIdentity(conn);
    const recovering = info.recovery !== undefined && deps.pids.verify(info.recovery.pid, identity);
    const since = auth.since;
    const from: string | number | undefined = recovering
      ? info.recovery!.offset
      : typeof since === 'number' || (typeof since === 'string' && /^\d{1,15}(~[0-9a-z]{1,16})?$/.test(since))
        ? since
        : undefined;
    const complete = await replayAndFollow(deps, socket, conn, from);
    const pid = recovering && complete ? info.recovery!.pid : deps.pids.mint(identity);
    return principal.role === 'agent' ? { context: conn, pid, eventRate: config.limits.messagesPerAgentSocket } : { context: conn, pid };
  };
}

/**
 * Sends the events after `from` (page by page, paced by the socket's send buffer), then attaches
 * the socket to its stream: the hub hands over the tail and the socket joins the stream's topic in
 * the same synchronous step. Returns whether the replay was complete (false: the client refetches).
 */
async function replayAndFollow(
  deps: ConnectDeps,
  socket: Socket<WsConn>,
  conn: WsConn,
  from: string | number | undefined,
): Promise<boolean> {
  const hub = deps.hub();
  const key = conn.stream;
  const max = deps.config.socketio.recoveryMaxMessages;
  let cursor = from;
  let complete = from !== undefined;
  if (cursor !== undefined) {
    let sent = 0;
    for (;;) {
      const page = await hub.recover(key, cursor, REPLAY_PAGE);
      if (!page.complete) {
        complete = false;
        break;
      }
      for (const e of page.events) {
        await socket.whenWritable();
        if (socket.closed) throw new ChatdError('draining', 'socket closed during replay');
        socket.emit(e.event, e.payload, offsetToken(key, e));
      }
      sent += page.events.length;
      if (page.events.length > 0) cursor = page.events[page.events.length - 1]!.offset;
      if (page.events.length < REPLAY_PAGE) break;
      if (sent >= max) {
        // More missed than one recovery may replay: the client refetches over HTTP.
        complete = false;
        break;
      }
    }
  }
  const server = deps.server();
  await hub.attach(key, complete ? cursor : undefined, (result) => {
    // Frames of this stream still queued go out first (the socket is not in the room yet), then the
    // tail, then the room: nothing twice, nothing lost.
    server.flushNow();
    if (!result.complete) complete = false;
    for (const e of result.events) socket.emit(e.event, e.payload, offsetToken(key, e));
    socket.join(streamId(key));
  });
  conn.attached = true;
  return complete;
}
