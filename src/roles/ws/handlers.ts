// Client events of the ws role, all through the domain (src/chat) and the event schemas:
//   message {text, …}            visitor/user: its conversation (tenantId, sessionId, fingerprint
//                                default to the connection's); agent: {sessionId, text} to any
//                                conversation of its tenant, no join needed
//                                ack { success: true, messageId, sessionId } | { success: false, error, code }
//   join / leave {sessionId}     agents: receive (or stop) that conversation's typing and read
//   typing {sessionId?, isTyping} relayed, not stored
//   read {sessionId?, messageId}  stored pointer, relayed
// Other events are refused with `{ success: false, code: 'bad_request' }` when they ask for an ack.
import { Type } from '@sinclair/typebox';
import type { Logger } from 'pino';
import type { Services } from '../../app/services.js';
import { ChatdError, toChatdError } from '../../errors.js';
import type { AckFn, Socket } from '../../protocol/types.js';
import { compileValidator } from '../../schemas/validate.js';
import { validationError } from '../../chat/chat-service.js';
import { ClientEventSchemas } from '../../chat/contract.js';
import type { WsConn } from './connection.js';
import { watchTopic } from '../../topics.js';

export interface HandlerDeps {
  readonly logger: Logger;
  readonly services: () => Promise<Pick<Services, 'chat'>>;
  /**
   * The services when they are open already, else undefined: `typing` (hundreds a second to a busy
   * node) then goes straight to the domain, with no promise chain of its own per event.
   */
  readonly servicesNow?: () => Pick<Services, 'chat'> | undefined;
}

const validJoin = compileValidator(ClientEventSchemas.join);
const validTyping = compileValidator(ClientEventSchemas.typing);
/** `typing` of a visitor or user whose payload leaves out its own conversation (no copy to fill it in). */
const validTypingOwn = compileValidator(
  Type.Object(
    { sessionId: Type.Optional(ClientEventSchemas.typing.properties.sessionId), isTyping: ClientEventSchemas.typing.properties.isTyping },
    { additionalProperties: true },
  ),
);
const OK = Object.freeze({ success: true });
const noop = () => undefined;
const validRead = compileValidator(ClientEventSchemas.read);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function nack(err: unknown): { success: false; error: string; code: string } {
  const e = toChatdError(err);
  return { success: false, error: e.message, code: e.code };
}

export function createEventHandler(deps: HandlerDeps) {
  const failed = (what: string, ack: AckFn | undefined, err: unknown) => {
    const e = toChatdError(err);
    if (e.code === 'internal') deps.logger.error({ err, event: what }, 'ws event failed');
    else if (e.status >= 500) deps.logger.warn({ err: e.cause ?? e, event: what }, e.message);
    ack?.(nack(e));
  };
  const typingFailed = (err: unknown) => failed('typing', undefined, err);

  /** The domain's typing request from the event (the connection's own conversation by default). */
  const typingRequest = (conn: WsConn, payload: unknown): { sessionId: string; isTyping: boolean } => {
    if (conn.sessionId !== undefined && isObject(payload) && payload.sessionId === undefined) {
      const v = validTypingOwn(payload);
      if (!v.ok) throw validationError(v.errors);
      return { sessionId: conn.sessionId, isTyping: v.value.isTyping };
    }
    const v = validTyping(payload);
    if (!v.ok) throw validationError(v.errors);
    return { sessionId: v.value.sessionId, isTyping: v.value.isTyping };
  };

  const run = (
    socket: Socket<WsConn>,
    ack: AckFn | undefined,
    what: string,
    work: (svc: Pick<Services, 'chat'>, conn: WsConn) => Promise<unknown>,
  ) => {
    const conn = socket.context!;
    deps
      .services()
      .then((svc) => work(svc, conn))
      .then(
        (result) => ack?.(result),
        (err: unknown) => failed(what, ack, err),
      );
  };

  /** The payload with the connection's own conversation filled in for visitors and users. */
  const withSession = (conn: WsConn, payload: Record<string, unknown>) =>
    conn.sessionId === undefined ? payload : { sessionId: conn.sessionId, ...payload };

  return function onEvent(socket: Socket<WsConn>, event: string, args: unknown[], ack: AckFn | undefined): void {
    const payload = args[0];
    switch (event) {
      case 'message':
        return run(socket, ack, event, async (svc, conn) => {
          if (!isObject(payload)) throw validationError([{ path: '', message: 'must be an object' }]);
          const input =
            conn.principal.role === 'agent'
              ? payload
              : {
                  tenantId: conn.principal.tenantId,
                  ...(conn.fingerprint ? { fingerprint: conn.fingerprint } : {}),
                  ...withSession(conn, payload),
                };
          const r = await svc.chat.send(conn.principal, input, 'ws');
          return { success: true, messageId: r.messageId, sessionId: r.sessionId };
        });
      case 'join':
      case 'leave':
        return run(socket, ack, event, async (svc, conn) => {
          const v = validJoin(payload);
          if (!v.ok) throw validationError(v.errors);
          const { sessionId } = v.value;
          if (conn.principal.role !== 'agent') {
            // A visitor or user already follows its own conversation; nothing else is theirs.
            if (sessionId !== conn.sessionId) throw new ChatdError('session_forbidden');
            return { success: true, sessionId };
          }
          const topic = watchTopic(conn.principal.tenantId, sessionId);
          if (event === 'leave') {
            socket.leave(topic);
            return { success: true, sessionId };
          }
          await svc.chat.authorizeSession(conn.principal, sessionId);
          socket.join(topic);
          return { success: true, sessionId };
        });
      case 'typing': {
        const svc = deps.servicesNow?.();
        if (!svc) {
          return run(socket, ack, event, async (svc, conn) => {
            await svc.chat.typing(conn.principal, typingRequest(conn, payload));
            return OK;
          });
        }
        // The hot path: checked and handed to the domain now, one promise (the domain's) per event.
        const conn = socket.context!;
        let req: { sessionId: string; isTyping: boolean };
        try {
          req = typingRequest(conn, payload);
        } catch (err) {
          return failed(event, ack, err);
        }
        svc.chat
          .typing(conn.principal, req)
          .then(ack ? () => ack(OK) : noop, ack ? (err: unknown) => failed(event, ack, err) : typingFailed);
        return;
      }
      case 'read':
        return run(socket, ack, event, async (svc, conn) => {
          const v = validRead(isObject(payload) ? withSession(conn, payload) : payload);
          if (!v.ok) throw validationError(v.errors);
          const given = (v.value as { fingerprint?: unknown }).fingerprint;
          const fingerprint = typeof given === 'string' ? given : conn.fingerprint;
          await svc.chat.markRead(conn.principal, {
            sessionId: v.value.sessionId,
            messageId: v.value.messageId,
            ...(fingerprint ? { fingerprint } : {}),
          });
          return { success: true };
        });
      default:
        ack?.(nack(new ChatdError('bad_request', `Unknown event "${event.slice(0, 64)}"`)));
    }
  };
}
