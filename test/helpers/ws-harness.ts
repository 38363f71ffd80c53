// Test harness for the ws role: chatd in process (api + ws roles, or all three on one listener),
// tokens from its own HTTP endpoints, and real socket.io-client sockets that record what they get.
import { io, type Socket as ClientSocket, type ManagerOptions, type SocketOptions } from 'socket.io-client';
import type { ConversationSummary } from '../../src/chat/conversation.js';
import type { ChatMessage } from '../../src/chat/message.js';
import type { Role } from '../../src/config/schema.js';
import { client as httpClient, JWT_SECRET, KEYS, startInProcess, tenantsConfig, type InProcessServer } from './api-harness.js';

export { KEYS, JWT_SECRET };

export interface Node {
  readonly srv: InProcessServer;
  /** Base URL of the HTTP API. */
  readonly api: string;
  /** Base URL of the Socket.IO listener. */
  readonly ws: string;
  readonly http: ReturnType<typeof httpClient>;
}

export async function startNode(raw: Record<string, unknown>, roles: Role[] = ['gateway', 'api', 'ws']): Promise<Node> {
  const srv = await startInProcess({ tenants: tenantsConfig(), auth: { jwtSecret: JWT_SECRET }, ...raw }, roles, {
    waitReady: roles.includes('api'),
  });
  const ports = srv.server.ports;
  const api = `http://127.0.0.1:${ports.public ?? ports.api}`;
  const ws = `http://127.0.0.1:${ports.public ?? ports.ws}`;
  return { srv, api, ws, http: httpClient(api) };
}

export async function visitorToken(node: Node, tenantId: string, key: string): Promise<string> {
  const r = await node.http('POST', '/api/chat/anonymous-token', { token: key, body: { tenantId } });
  if (r.status !== 200) throw new Error(`anonymous-token: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.token as string;
}

export async function agentToken(node: Node, tenantId: string, key: string, userId = 'agent-1'): Promise<string> {
  const r = await node.http('POST', '/api/chat/agent-token', { token: key, body: { tenantId, userId } });
  if (r.status !== 200) throw new Error(`agent-token: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.token as string;
}

/** A socket.io-client socket with what it received, in order. */
export interface Recorder {
  readonly socket: ClientSocket;
  readonly messages: { message: ChatMessage; offset: string }[];
  readonly presence: { userId: string; sessionId: string; status: string; offset: string }[];
  readonly typing: unknown[];
  readonly reads: unknown[];
  readonly broadcasts: unknown[];
  /** conversation_updated events (agents), with their offsets. */
  readonly updates: { conversation: ConversationSummary; version: number; offset: string }[];
  /** Each `connect`: whether it was a recovery. */
  readonly connects: boolean[];
}

export function connect(
  url: string,
  auth: Record<string, unknown> | ((cb: (data: object) => void) => void),
  opts: Partial<ManagerOptions & SocketOptions> = {},
): Recorder {
  const socket = io(url, { auth, forceNew: true, reconnectionDelay: 100, reconnectionDelayMax: 500, ...opts });
  const rec: Recorder = { socket, messages: [], presence: [], typing: [], reads: [], broadcasts: [], updates: [], connects: [] };
  socket.on('conversation_updated', (p: { conversation: ConversationSummary; version: number }, offset: string) =>
    rec.updates.push({ ...p, offset }),
  );
  socket.on('meta_message_created', (p: { message: ChatMessage }, offset: string) => rec.messages.push({ message: p.message, offset }));
  socket.on('presence_update', (p: { userId: string; sessionId: string; status: string }, offset: string) =>
    rec.presence.push({ ...p, offset }),
  );
  socket.on('typing', (p: unknown) => rec.typing.push(p));
  socket.on('read', (p: unknown) => rec.reads.push(p));
  socket.on('meta_broadcast', (p: unknown) => rec.broadcasts.push(p));
  socket.on('connect', () => rec.connects.push(socket.recovered));
  return rec;
}

export function connected(r: Recorder | ClientSocket, timeoutMs = 20_000): Promise<void> {
  const s = 'socket' in r ? r.socket : r;
  return new Promise((resolve, reject) => {
    if (s.connected) return resolve();
    const t = setTimeout(() => reject(new Error('connect timeout')), timeoutMs);
    s.once('connect', () => (clearTimeout(t), resolve()));
    s.once('connect_error', (err: Error & { data?: unknown }) => (clearTimeout(t), reject(Object.assign(err, { data: err.data }))));
  });
}

export function connectError(r: Recorder): Promise<Error & { data?: { code?: string } }> {
  return new Promise((resolve) => r.socket.once('connect_error', (err: Error & { data?: { code?: string } }) => resolve(err)));
}

export type Ack = { success: true; messageId: string; sessionId: string } | { success: false; error: string; code: string };

export function emitAck(r: Recorder, event: string, payload: unknown, timeoutMs = 20_000): Promise<Ack> {
  return r.socket.timeout(timeoutMs).emitWithAck(event, payload) as Promise<Ack>;
}
