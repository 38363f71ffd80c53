// The api role: the widget's HTTP endpoints (DESIGN.md "The contract"). It verifies every
// credential itself (API keys, JWTs), enforces the tenant's allowed origins once the tenant is known,
// applies per-IP and per-key rate limits (unless the gateway runs in this process and already does),
// and leaves every rule about sessions, identity and messages to the domain (src/chat).
//
//   POST /api/chat/anonymous-token  API key          → { token, expiresIn }            visitor JWT
//   POST /api/chat/agent-token      secret key       → { token, expiresIn }            agent JWT
//   POST /api/chat/broadcast        secret key       → { success: true }               meta_broadcast to the tenant
//   POST /api/chat/erase            secret key       → { removed: {…counts} }          erase a session's or user's data (src/chat/erase.ts)
//   POST /webchat/message           JWT              → { success, messageId, sessionId }
//   POST /webchat/contact           visitor/user JWT → { success, sessionId }          the visitor's email for replies
//   GET  /api/chat/messages         JWT              → { messages, nextCursor }
//   GET  /api/chat/online-users     agent JWT / secret key → { users }
//   GET  /api/chat/availability     API key (publishable too) or JWT → { available, agentsOnline, … }
//   GET  /api/chat/conversations    agent JWT / secret key → { conversations, nextCursor }   the inbox (src/chat/inbox.ts)
//   GET  /api/chat/conversations/{sessionId}          agent JWT / secret key → ConversationSummary
//   POST /api/chat/conversations/{sessionId}/status   agent JWT / secret key → ConversationSummary
//   POST /api/chat/conversations/{sessionId}/assign   agent JWT / secret key → ConversationSummary
import type { Logger } from 'pino';
import type { RoleContext, RoleFactory } from '../role-context.js';
import type { Services } from '../../app/services.js';
import { createAuth, type Auth } from '../../auth/index.js';
import { bearerValue, checkQueryCredentials, looksLikeJwt } from '../../auth/bearer.js';
import { ConfigError } from '../../config/load.js';
import type { ApiKeyMatch } from '../../auth/api-keys.js';
import type { Principal } from '../../auth/jwt.js';
import { tenantAllowsOrigin, type TenantPolicy } from '../../auth/tenants.js';
import { validationError } from '../../chat/chat-service.js';
import type { Config } from '../../config/schema.js';
import { ChatdError, DependencyError } from '../../errors.js';
import type { Reply, Req } from '../../http/router.js';
import { emailSecret } from '../../notify/start.js';
import { UNSUBSCRIBE_PURPOSE } from '../../notify/email-worker.js';
import { verifyToken } from '../../notify/signed-token.js';
import { conversationOf, inboundClientMessageId, parseInbound } from '../../notify/inbound-email.js';
import { createHash, timingSafeEqual } from 'node:crypto';

const sameSecret = (a: string, b: string) =>
  timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
import { compileValidator } from '../../schemas/validate.js';
import type { Static, TSchema } from '@sinclair/typebox';
import {
  AgentTokenRequest,
  AnonymousTokenRequest,
  BroadcastRequest,
  ConversationAssignRequest,
  ConversationStatusRequest,
  EraseRequest,
} from './schemas.js';
import type { InboxCaller } from '../../chat/inbox.js';
import { assertId } from '../../ids.js';
import { eraseSubject } from '../../chat/erase.js';
import { availabilityOf } from '../../chat/availability.js';

function validate<S extends TSchema>(schema: S) {
  const check = compileValidator(schema);
  return (body: unknown): Static<S> => {
    const r = check(body);
    if (!r.ok) throw validationError(r.errors);
    return r.value;
  };
}

const parseAnonymous = validate(AnonymousTokenRequest);
const parseAgent = validate(AgentTokenRequest);
const parseBroadcast = validate(BroadcastRequest);
const parseErase = validate(EraseRequest);
const parseStatus = validate(ConversationStatusRequest);
const parseAssign = validate(ConversationAssignRequest);

/** How long a browser may reuse an availability answer (agents coming and going arrive live as events). */
export const AVAILABILITY_MAX_AGE_SECONDS = 5;

export interface ApiDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly services: () => Promise<Pick<Services, 'auth' | 'chat' | 'inbox' | 'store' | 'db' | 'emailEnabled'>>;
  /** Apply per-IP and per-key limits here (false when an in-process gateway already does). */
  readonly rateLimit: boolean;
}

/** Registers the api role's routes on a router; exported for tests that mount it on their own app. */
export function mountApiRoutes(router: RoleContext['router'], deps: ApiDeps): void {
  const { config } = deps;
  const limits = config.limits;
  let limiterWarned = false;

  const take = async (store: Pick<Services, 'store'>['store'], bucket: string, rate: { rate: number; burst: number }) => {
    let r: { allowed: boolean; retryAfterMs: number };
    try {
      r = await store.rateLimiter.take(bucket, rate.rate, rate.burst);
    } catch (err) {
      // The limiter is a guard, not a dependency of the answer: let traffic through and say so.
      if (!limiterWarned) deps.logger.warn({ err: (err as Error).message }, 'rate limiter unavailable: requests pass unlimited');
      limiterWarned = true;
      return;
    }
    limiterWarned = false;
    if (!r.allowed) {
      throw new ChatdError('rate_limited', undefined, {
        headers: { 'Retry-After': String(Math.max(1, Math.ceil(r.retryAfterMs / 1000))) },
      });
    }
  };

  /** Common start of every request: credentials not in the query, the per-IP limit, the services. */
  const begin = async (req: Req) => {
    checkQueryCredentials(req.query);
    const svc = await deps.services();
    if (deps.rateLimit) await take(svc.store, `api:ip:${req.ip}:http`, limits.httpPerIp);
    return svc;
  };

  const keyLimit = async (svc: Pick<Services, 'store'>, key: ApiKeyMatch) => {
    if (deps.rateLimit) await take(svc.store, `api:key:${key.keyId}:http`, limits.httpPerKey);
  };

  const tenantFor = (auth: Auth, tenantId: string): TenantPolicy => {
    const t = auth.tenants.get(tenantId);
    // A key matched, so the tenant is configured (or zero-config); this guards reload races.
    if (!t) throw new ChatdError('tenant_mismatch');
    return t;
  };

  const checkOrigin = (tenant: TenantPolicy, req: Req) => {
    if (!tenantAllowsOrigin(tenant, req.origin)) {
      throw new ChatdError('origin_not_allowed', `Origin ${req.origin?.slice(0, 200)} is not allowed for tenant ${tenant.id}`);
    }
  };

  /**
   * The common steps of an API-key endpoint, in this order: the key presented (401
   * `invalid_api_key` when missing or unknown, before anything else about the request), rate-limited
   * per key; the body; the key's right to the body's tenant (`need`: which kind of key); the Origin.
   */
  const keyedRequest = async <B extends { tenantId: string }>(req: Req, parse: (body: unknown) => B, need: 'publishable' | 'secret') => {
    const svc = await begin(req);
    const presented = bearerValue(req.headers.authorization);
    const found = svc.auth.apiKeys.lookup(presented);
    if (!found) throw new ChatdError('invalid_api_key');
    await keyLimit(svc, found);
    const body = parse(req.body);
    svc.auth.apiKeys.authorize(presented, body.tenantId, need);
    checkOrigin(tenantFor(svc.auth, body.tenantId), req);
    return { svc, body };
  };

  /** The JWT's principal, checked against the tenant's origins. */
  const principalOf = async (svc: Pick<Services, 'auth'>, req: Req): Promise<Principal> => {
    const presented = bearerValue(req.headers.authorization);
    if (!presented) throw new ChatdError('missing_credentials', 'Missing token: send Authorization: Bearer <token>');
    if (!looksLikeJwt(presented) && svc.auth.apiKeys.lookup(presented)) {
      throw new ChatdError('token_invalid', 'This endpoint needs a token, not an API key: get one from /api/chat/anonymous-token');
    }
    const principal = await svc.auth.tokens.verify(presented);
    checkOrigin(tenantFor(svc.auth, principal.tenantId), req);
    return principal;
  };

  router.post('/api/chat/anonymous-token', async (req) => {
    const { svc, body } = await keyedRequest(req, parseAnonymous, 'publishable');
    const ttl = config.auth.visitorTokenTtlSeconds;
    const minted = await svc.auth.tokens.mint({
      tenantId: body.tenantId,
      role: 'visitor',
      ...(body.sessionId ? { sessionId: body.sessionId } : {}),
      ttlSeconds: ttl,
    });
    // With a sessionId the token binds now, under the same rule as its first use.
    if (body.sessionId) await svc.chat.bindForMint(body.tenantId, minted.jti, ttl, body.sessionId, body.fingerprint);
    return { body: { token: minted.token, expiresIn: minted.expiresIn } };
  });

  router.post('/api/chat/agent-token', async (req) => {
    const { svc, body } = await keyedRequest(req, parseAgent, 'secret');
    const minted = await svc.auth.tokens.mint({
      tenantId: body.tenantId,
      role: 'agent',
      subject: body.userId,
      ...(body.name ? { name: body.name } : {}),
      ttlSeconds: config.auth.agentTokenTtlSeconds,
    });
    return { body: { token: minted.token, expiresIn: minted.expiresIn } };
  });

  router.post('/api/chat/broadcast', async (req) => {
    const { svc, body } = await keyedRequest(req, parseBroadcast, 'secret');
    await svc.store.bus.publish(body.tenantId, { type: 'broadcast', event: body.event, data: body.data ?? null });
    return { body: { success: true } };
  });

  router.post('/api/chat/erase', async (req) => {
    const { svc, body } = await keyedRequest(req, parseErase, 'secret');
    const report = await eraseSubject({ messages: svc.db.messages, erasure: svc.store.erasure }, body);
    deps.logger.info(
      { tenantId: report.tenantId, subject: report.subject, dryRun: report.dryRun, removed: report.removed },
      'erase (tenant API)',
    );
    return { body: report };
  });

  router.post('/webchat/message', async (req) => {
    const svc = await begin(req);
    const principal = await principalOf(svc, req);
    const r = await svc.chat.send(principal, req.body, 'http');
    return { body: { success: true, messageId: r.messageId, sessionId: r.sessionId } };
  });

  router.post('/webchat/contact', async (req) => {
    const svc = await begin(req);
    const principal = await principalOf(svc, req);
    const r = await svc.chat.setContact(principal, req.body);
    return { body: { success: true, sessionId: r.sessionId } };
  });

  // The link in every reply email (and its List-Unsubscribe one-click POST): the signed token names
  // the tenant and the address; an unknown or forged token changes nothing.
  const unsubscribe = async (req: Req): Promise<Reply> => {
    const svc = await begin(req);
    const secret = emailSecret(config);
    const fields = secret ? verifyToken(secret, UNSUBSCRIBE_PURPOSE, req.path.split('/')[3] ?? '') : null;
    if (!fields || fields.length !== 2) throw new ChatdError('not_found', 'Unknown or expired unsubscribe link');
    await svc.db.offline.unsubscribe(fields[0]!, fields[1]!);
    return {
      raw: '<!doctype html><meta charset="utf-8"><title>Unsubscribed</title><p>You will not receive reply emails from this chat anymore.</p>',
      contentType: 'text/html; charset=utf-8',
    };
  };
  // Replies by email (offline continuity): the inbound-mail provider POSTs what it received, with
  // email.inboundSecret as its bearer; the reply address names the conversation (signed), and the
  // text enters the one path for a message as the visitor's — delivered live like any message.
  router.post('/api/chat/inbound-email', async (req) => {
    const svc = await begin(req);
    const inboundSecret = config.email.inboundSecret;
    const secret = emailSecret(config);
    if (!inboundSecret || !secret) throw new ChatdError('not_found', 'Replies by email are not configured (email.inboundSecret)');
    const presented = bearerValue(req.headers.authorization);
    if (!presented) throw new ChatdError('missing_credentials', 'Send Authorization: Bearer <email.inboundSecret>');
    if (!sameSecret(presented, inboundSecret)) throw new ChatdError('token_invalid', 'Invalid inbound-email secret');
    const email = parseInbound(req.body);
    if (!email)
      throw validationError([{ path: 'body', message: 'needs a recipient (To, to, recipient) and a text (TextBody, text, body-plain)' }]);
    const conversationId = conversationOf(secret, email);
    const conv = conversationId ? await svc.db.offline.conversationById(conversationId) : null;
    if (!conv) throw new ChatdError('not_found', 'No conversation for this reply address');
    if (email.text.length === 0) throw validationError([{ path: 'text', message: 'is empty once the quoted history is removed' }]);
    const now = Math.floor(Date.now() / 1000);
    const principal: Principal = {
      tenantId: conv.tenantId,
      role: conv.userId ? 'user' : 'visitor',
      ...(conv.userId ? { subject: conv.userId } : {}),
      sessionId: conv.sessionId,
      jti: `email-${conversationId}`,
      expiresAt: now + 60,
      issuedAt: now,
      issuer: 'chatd',
    };
    const r = await svc.chat.send(
      principal,
      {
        tenantId: conv.tenantId,
        sessionId: conv.sessionId,
        fingerprint: conv.fingerprint ?? 'email',
        text: [...email.text].slice(0, config.limits.messageMaxChars).join(''),
        ...(email.messageId ? { clientMessageId: inboundClientMessageId(email.messageId) } : {}),
        userInfo: { channel: 'email' },
      },
      'http',
    );
    return { body: { success: true, messageId: r.messageId, sessionId: r.sessionId } };
  });

  router.get('/webchat/unsubscribe/:token', unsubscribe);
  router.post('/webchat/unsubscribe/:token', unsubscribe, { body: true });

  router.get('/api/chat/messages', async (req) => {
    const svc = await begin(req);
    const principal = await principalOf(svc, req);
    const q = req.query;
    const tenantId = q.get('tenantId') ?? principal.tenantId;
    const limitText = q.get('limit');
    let limit: number | undefined;
    if (limitText !== null && limitText !== '') {
      limit = /^[0-9]{1,4}$/.test(limitText) ? Number(limitText) : NaN;
    }
    const opt = (name: string) => {
      const v = q.get(name);
      return v === null || v === '' ? undefined : v;
    };
    const page = await svc.chat.history(principal, {
      tenantId,
      sessionId: opt('sessionId'),
      userId: opt('userId'),
      before: opt('before'),
      limit,
      fingerprint: opt('fingerprint'),
    });
    return {
      body: {
        messages: page.messages,
        nextCursor: page.nextCursor,
        ...(page.unreadCount !== undefined ? { unreadCount: page.unreadCount } : {}),
      },
    };
  });

  // Public information a widget asks on every page view, before it has a token: any key of the
  // tenant (publishable too) or any token of it. One O(1) read from the store (the agents online
  // count) and the business-hours check in process; browsers may reuse the answer for a few seconds.
  router.get('/api/chat/availability', async (req) => {
    const svc = await begin(req);
    const tenantId = req.query.get('tenantId');
    const presented = bearerValue(req.headers.authorization);
    if (!presented) throw new ChatdError('missing_credentials', 'Send Authorization: Bearer <API key or token>');
    let tenant: TenantPolicy;
    if (!looksLikeJwt(presented)) {
      const key = svc.auth.apiKeys.lookup(presented);
      if (!key) throw new ChatdError('invalid_api_key');
      await keyLimit(svc, key);
      if (!tenantId) throw validationError([{ path: 'tenantId', message: 'is required' }]);
      svc.auth.apiKeys.authorize(presented, tenantId, 'publishable');
      tenant = tenantFor(svc.auth, tenantId);
      checkOrigin(tenant, req);
    } else {
      const principal = await principalOf(svc, req);
      if (tenantId && tenantId !== principal.tenantId) throw new ChatdError('tenant_mismatch');
      tenant = tenantFor(svc.auth, principal.tenantId);
    }
    const agents = await svc.store.agentPresence.count(tenant.id);
    return {
      body: { ...availabilityOf(tenant.availability, agents, Date.now()), repliesByEmail: svc.emailEnabled },
      headers: { 'Cache-Control': `private, max-age=${AVAILABILITY_MAX_AGE_SECONDS}` },
    };
  });

  /**
   * The inbox's and online-users' credential: a secret API key (tenantId required, from the query or
   * the body) or an agent JWT (its tenant; a tenantId naming another is 403 tenant_mismatch). A
   * publishable key is 403 key_not_allowed, a visitor or user token 403 forbidden.
   */
  const agentOrSecret = async (req: Req, tenantId: string | undefined, what: string) => {
    const svc = await begin(req);
    const presented = bearerValue(req.headers.authorization);
    if (!presented) throw new ChatdError('missing_credentials', 'Send Authorization: Bearer <secret key or agent token>');
    const key = looksLikeJwt(presented) ? undefined : svc.auth.apiKeys.lookup(presented);
    if (key || /^ck_/.test(presented) || !looksLikeJwt(presented)) {
      if (!key) throw new ChatdError('invalid_api_key');
      await keyLimit(svc, key);
      if (!tenantId) throw validationError([{ path: 'tenantId', message: 'is required' }]);
      assertId('tenantId', tenantId);
      svc.auth.apiKeys.authorize(presented, tenantId, 'secret');
      const tenant = tenantFor(svc.auth, tenantId);
      checkOrigin(tenant, req);
      return { svc, tenant, caller: { kind: 'secret', tenantId: tenant.id } as InboxCaller };
    }
    const principal = await principalOf(svc, req);
    if (tenantId && tenantId !== principal.tenantId) throw new ChatdError('tenant_mismatch');
    if (principal.role !== 'agent') throw new ChatdError('forbidden', `${what} needs an agent token or a secret key`);
    const tenant = tenantFor(svc.auth, principal.tenantId);
    return { svc, tenant, caller: { kind: 'agent', tenantId: tenant.id, agentId: principal.subject! } as InboxCaller };
  };

  /** The `{sessionId}` of /api/chat/conversations/{sessionId}[/…]. */
  const sessionParam = (req: Req): string => {
    const raw = req.path.split('/')[4] ?? '';
    let sessionId: string;
    try {
      sessionId = decodeURIComponent(raw);
    } catch {
      sessionId = raw;
    }
    assertId('sessionId', sessionId);
    return sessionId;
  };

  /** The body's tenantId when it is a string (validated with the rest of the body afterwards). */
  const bodyTenant = (req: Req): string | undefined => {
    const t = (req.body as { tenantId?: unknown } | null | undefined)?.tenantId;
    return typeof t === 'string' && t !== '' ? t : undefined;
  };

  const queryOpt = (q: URLSearchParams, name: string) => {
    const v = q.get(name);
    return v === null || v === '' ? undefined : v;
  };

  router.get('/api/chat/conversations', async (req) => {
    const q = req.query;
    const { svc, caller } = await agentOrSecret(req, queryOpt(q, 'tenantId'), 'The inbox');
    const limitText = queryOpt(q, 'limit');
    const page = await svc.inbox.list(caller, {
      tenantId: queryOpt(q, 'tenantId'),
      status: queryOpt(q, 'status'),
      assignee: queryOpt(q, 'assignee'),
      before: queryOpt(q, 'before'),
      limit: limitText === undefined ? undefined : /^[0-9]{1,4}$/.test(limitText) ? Number(limitText) : NaN,
    });
    return { body: page };
  });

  router.get('/api/chat/conversations/:sessionId', async (req) => {
    const tenantId = queryOpt(req.query, 'tenantId');
    const { svc, caller } = await agentOrSecret(req, tenantId, 'The inbox');
    return { body: await svc.inbox.get(caller, tenantId, sessionParam(req)) };
  });

  router.post('/api/chat/conversations/:sessionId/status', async (req) => {
    const { svc, caller } = await agentOrSecret(req, bodyTenant(req), 'Changing a conversation');
    const body = parseStatus(req.body);
    return { body: await svc.inbox.setStatus(caller, body.tenantId, sessionParam(req), body.status) };
  });

  router.post('/api/chat/conversations/:sessionId/assign', async (req) => {
    const { svc, caller } = await agentOrSecret(req, bodyTenant(req), 'Assigning a conversation');
    const body = parseAssign(req.body);
    return { body: await svc.inbox.assign(caller, body.tenantId, sessionParam(req), body.assignee) };
  });

  router.get('/api/chat/online-users', async (req) => {
    const { svc, tenant } = await agentOrSecret(req, req.query.get('tenantId') ?? undefined, 'Listing online users');
    const users = await svc.store.presence.list(tenant.id);
    return {
      body: {
        users: users.map((u) => ({
          userId: u.userId,
          sessionId: u.sessionId,
          connectedAt: u.connectedAt,
          domain: u.domain,
          origin: u.origin,
          url: u.url,
        })),
      },
    };
  });
}

export const createApiRole: RoleFactory = async (ctx) => {
  // Keys and JWT settings the schema cannot check (one key in two tenants, unreadable or wrong key
  // files) stop start-up with one clear line, rather than failing every request later.
  try {
    createAuth(ctx.config);
  } catch (err) {
    throw new ConfigError(`invalid credentials configuration: ${(err as Error).message}`);
  }
  // With the gateway in this process its guard already applies the same limits: do not count twice.
  const rateLimit = !ctx.roles.includes('gateway');
  // Open the store and the database now, in the background: the first request should not pay for
  // it (the embedded database takes seconds to create), and /readyz then reports both.
  ctx.services().then(
    (svc) => {
      for (const w of svc.auth.warnings) ctx.logger.warn(w);
    },
    (err: unknown) => ctx.logger.error({ err }, 'cannot open the store or the database'),
  );
  mountApiRoutes(ctx.router, {
    config: ctx.config,
    logger: ctx.logger,
    rateLimit,
    services: () =>
      ctx.services().catch((err: unknown) => {
        // Opening the store or the database failed: a 503 the client can retry, not a 500.
        if (err instanceof ChatdError || err instanceof DependencyError) throw err;
        throw new DependencyError('postgres', (err as Error).message, { cause: err });
      }),
  });
  return {
    readiness: [],
    async drain() {},
    async close() {},
  };
};
