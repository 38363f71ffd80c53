// Small helpers for tests that drive a real socket.io-client.
import type { Socket as ClientSocket } from 'socket.io-client';

/** Resolves on the socket's `connect`; rejects with its `connect_error` (a refused CONNECT). */
export const connected = (c: ClientSocket) =>
  new Promise<void>((resolve, reject) => {
    if (c.connected) return resolve();
    c.once('connect', () => resolve());
    c.once('connect_error', reject);
  });

/** Sends a visitor `message` on its session and returns the acknowledged message id (fails on a refusal). */
export async function sendMessage(socket: ClientSocket, tenantId: string, sessionId: string, text: string): Promise<string> {
  const ack = (await socket.timeout(30_000).emitWithAck('message', { text, tenantId, sessionId, fingerprint: `fp-${sessionId}` })) as {
    success: boolean;
    messageId: string;
  };
  if (!ack.success) throw new Error(`message refused: ${JSON.stringify(ack)}`);
  return ack.messageId;
}
