// Engine.IO's error answers to HTTP requests, in one module without side effects: the protocol
// layer and the gateway (cluster/respond.ts, for a sid no node owns) answer with the same bodies.

/** Engine.IO handshake errors (the JSON body of a 400, as the reference server sends them). */
export const EIO_ERR = {
  transportUnknown: { code: 0, message: 'Transport unknown' },
  unknownSid: { code: 1, message: 'Session ID unknown' },
  badMethod: { code: 2, message: 'Bad handshake method' },
  badRequest: { code: 3, message: 'Bad request' },
  forbidden: { code: 4, message: 'Forbidden' },
  unsupported: { code: 5, message: 'Unsupported protocol version' },
  // chatd's own refusals of a handshake (transient: the client backs off and retries).
  rateLimited: { code: 3, message: 'Too many requests' },
  tooManyPending: { code: 3, message: 'Too many unauthenticated sessions from this address' },
  capacity: { code: 3, message: 'Server at capacity' },
  draining: { code: 3, message: 'Server is shutting down' },
} as const;
