// Every error chatd reports, in one place: its HTTP status, its default message (the guide's
// wording where the guide has one) and what it means on a socket. `final` errors on CONNECT are
// sent as CONNECT_ERROR (socket.io-client does not retry); every other refusal of a connection
// closes the transport so the client backs off, reconnects and recovers. A test checks that each
// code is documented in docs/http-api.md.

export interface ErrorSpec {
  readonly status: number;
  readonly message: string;
  /** On CONNECT: true = CONNECT_ERROR (final), false = close the transport (the client retries). */
  readonly final: boolean;
}

export const ERRORS = {
  // 400
  bad_request: { status: 400, message: 'Bad request', final: true },
  invalid_json: { status: 400, message: 'Malformed JSON body', final: true },
  validation_failed: { status: 400, message: 'Invalid request', final: true },
  invalid_id: { status: 400, message: 'Invalid id', final: true },
  credentials_in_query: { status: 400, message: 'Credentials are not accepted in the query string', final: true },
  // 401
  invalid_api_key: { status: 401, message: 'Invalid API key', final: true },
  missing_credentials: { status: 401, message: 'Missing credentials', final: true },
  token_expired: { status: 401, message: 'Token expired', final: true },
  token_invalid: { status: 401, message: 'Invalid token', final: true },
  token_revoked: { status: 401, message: 'Token revoked', final: true },
  admin_token_required: { status: 401, message: 'Admin token required', final: true },
  // 403
  forbidden: { status: 403, message: 'Forbidden', final: true },
  tenant_mismatch: { status: 403, message: 'Credential does not belong to this tenant', final: true },
  key_not_allowed: { status: 403, message: 'This key may not do that; use a secret key', final: true },
  origin_not_allowed: { status: 403, message: 'Origin not allowed', final: true },
  session_forbidden: { status: 403, message: 'Session not accessible with this credential', final: true },
  identity_required: { status: 403, message: 'A verified userId is required', final: true },
  identity_invalid: { status: 403, message: 'userHash does not match userId', final: true },
  // 404/405
  not_found: { status: 404, message: 'Not found', final: true },
  method_not_allowed: { status: 405, message: 'Method not allowed', final: true },
  // 409
  idempotency_conflict: {
    status: 409,
    message: 'clientMessageId was already used with different content',
    final: true,
  },
  // 413/415
  payload_too_large: { status: 413, message: 'Request body too large', final: true },
  unsupported_media_type: { status: 415, message: 'Content-Type must be application/json', final: true },
  // 429
  rate_limited: { status: 429, message: 'Too many requests', final: false },
  // 5xx
  internal: { status: 500, message: 'Internal error', final: false },
  upstream_unavailable: { status: 502, message: 'No healthy upstream', final: false },
  dependency_unavailable: { status: 503, message: 'A dependency is unavailable; retry later', final: false },
  outcome_unknown: {
    status: 503,
    message: 'The outcome of the write is unknown; retry with the same clientMessageId',
    final: false,
  },
  draining: { status: 503, message: 'Server is shutting down', final: false },
  capacity: { status: 503, message: 'Server at capacity', final: false },
  upstream_timeout: { status: 504, message: 'Upstream timed out', final: false },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export interface ErrorDetail {
  readonly path?: string;
  readonly message: string;
}

/** An error that reaches a client: a code from the catalogue, a message, optional details. */
export class ChatdError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: readonly ErrorDetail[] | undefined;
  /** Extra HTTP headers, e.g. Retry-After. */
  readonly headers: Readonly<Record<string, string>> | undefined;

  constructor(
    code: ErrorCode,
    message?: string,
    opts: { details?: readonly ErrorDetail[]; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message ?? ERRORS[code].message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ChatdError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = opts.details;
    this.headers = opts.headers;
  }

  get final(): boolean {
    return ERRORS[this.code].final;
  }

  toJSON(): { error: string; code: ErrorCode; details?: readonly ErrorDetail[] } {
    return this.details && this.details.length > 0
      ? { error: this.message, code: this.code, details: this.details }
      : { error: this.message, code: this.code };
  }
}

/** Maps anything thrown to a ChatdError: known errors keep their code, the rest are `internal`. */
export function toChatdError(err: unknown): ChatdError {
  if (err instanceof ChatdError) return err;
  if (err instanceof OutcomeUnknownError) return new ChatdError('outcome_unknown', undefined, { cause: err });
  if (err instanceof DependencyError) return new ChatdError('dependency_unavailable', undefined, { cause: err });
  return new ChatdError('internal', undefined, { cause: err });
}

/**
 * A dependency (Redis, PostgreSQL, an upstream) could not be reached or failed. Adapters throw it
 * so callers can answer 503 instead of 500; `dependency` names which one, for logs and metrics.
 */
export class DependencyError extends Error {
  readonly dependency: 'redis' | 'postgres' | 'upstream';
  constructor(dependency: 'redis' | 'postgres' | 'upstream', message: string, opts: { cause?: unknown } = {}) {
    super(`${dependency}: ${message}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'DependencyError';
    this.dependency = dependency;
  }
}

/** A commit whose result is unknown (the connection dropped after COMMIT was sent). */
export class OutcomeUnknownError extends Error {
  constructor(message = 'commit outcome unknown', opts: { cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'OutcomeUnknownError';
  }
}

/** WebSocket close codes chatd sends; 4xxx are application-defined. Pair them through DISCONNECT. */
export const CLOSE_CODES = {
  /** Normal close; the client reconnects (transport close is never final for socket.io-client). */
  normal: 1000,
  /** Server going away (SIGTERM): reconnect elsewhere. */
  goingAway: 1001,
  /** Protocol violation: malformed packet. */
  protocolError: 1002,
  /** Frame larger than maxPayload. */
  tooLarge: 1009,
  /** Transient refusal: rate limited, capacity, dependency down. Client retries with backoff. */
  tryAgainLater: 1013,
  /** Slow consumer cut off (send buffer over its limit); the client reconnects and recovers. */
  slowConsumer: 4008,
} as const;

/**
 * Why chatd ends a connection, as one value (centrifuge's `Disconnect`): the close code, the reason
 * (the close frame's text, and what the ws role's onDisconnect hears) and whether the client comes
 * back. Call sites pass a value from DISCONNECT, never a code and a string of their own, so a code
 * cannot travel with the wrong reason. `reconnect: false` is a Socket.IO DISCONNECT (socket.io-client
 * stays away); every other end closes the transport, and the client backs off, reconnects and
 * recovers. A test checks that each one is documented in the close-code table of docs/realtime.md.
 */
export interface Disconnect {
  readonly code: number;
  readonly reason: string;
  readonly reconnect: boolean;
}

export const DISCONNECT = {
  // --- the client reconnects (a transport close)
  /** The client closed the transport, or sent no CONNECT within socketio.connectTimeoutMs. */
  transportClose: { code: CLOSE_CODES.normal, reason: 'transport close', reconnect: true },
  /** No pong within pingTimeout. */
  pingTimeout: { code: CLOSE_CODES.normal, reason: 'ping timeout', reconnect: true },
  /** The server dropped the transport; the client reconnects and recovers. */
  serverClose: { code: CLOSE_CODES.normal, reason: 'server close', reconnect: true },
  /** SIGTERM: every transport closes so clients fail over to another node. */
  draining: { code: CLOSE_CODES.goingAway, reason: 'server shutting down', reconnect: true },
  /** A malformed or unexpected packet (an event before CONNECT, a second CONNECT, a bad namespace). */
  parseError: { code: CLOSE_CODES.protocolError, reason: 'parse error', reconnect: true },
  /** Engine.IO misuse on polling: two GETs or two POSTs at once. */
  transportError: { code: CLOSE_CODES.protocolError, reason: 'transport error', reconnect: true },
  /** A polling POST over maxPayload (uWS closes an oversize websocket frame itself). */
  payloadTooLarge: { code: CLOSE_CODES.tooLarge, reason: 'transport error', reconnect: true },
  /** The node filled up between the handshake and the CONNECT (limits.maxConnections). */
  capacity: { code: CLOSE_CODES.tryAgainLater, reason: 'server close', reconnect: true },
  /** CONNECT refused for a transient reason (rate limit, a dependency down), or onConnect failed. */
  unavailable: { code: CLOSE_CODES.tryAgainLater, reason: 'server close', reconnect: true },
  /** The socket's stream lost events it cannot fill in order: reconnect and recover from the database. */
  streamBroken: { code: CLOSE_CODES.tryAgainLater, reason: 'server close', reconnect: true },
  /** Still flooding after a whole burst of refused events (limits.messagesPerSocket). */
  rateLimited: { code: CLOSE_CODES.tryAgainLater, reason: 'rate limited', reconnect: true },
  /** The send buffer passed limits.sendBufferBytes; recovery delivers what it missed. */
  slowConsumer: { code: CLOSE_CODES.slowConsumer, reason: 'slow consumer', reconnect: true },
  /** The gateway is shutting down: clients reconnect through another gateway. */
  gatewayDraining: { code: CLOSE_CODES.goingAway, reason: 'gateway shutting down', reconnect: true },
  /** The gateway lost its edge link to the client's ws node (killed, drained, unreachable): the client reconnects through another. */
  upstreamGone: { code: CLOSE_CODES.goingAway, reason: 'upstream gone', reconnect: true },
  /** The ws node behind the gateway does not read fast enough: the client retries. */
  upstreamBusy: { code: CLOSE_CODES.tryAgainLater, reason: 'upstream busy', reconnect: true },
  // --- the client does not reconnect
  /** The client sent a Socket.IO DISCONNECT (socket.disconnect()). */
  clientDisconnect: { code: CLOSE_CODES.normal, reason: 'client namespace disconnect', reconnect: false },
  /** The server sent a Socket.IO DISCONNECT: the agent's tokens were revoked. */
  serverDisconnect: { code: CLOSE_CODES.normal, reason: 'server namespace disconnect', reconnect: false },
} as const satisfies Record<string, Disconnect>;

export type DisconnectName = keyof typeof DISCONNECT;
