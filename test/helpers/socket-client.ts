// Small helpers for tests that drive a real socket.io-client.
import type { Socket as ClientSocket } from 'socket.io-client';

/** Resolves on the socket's `connect`; rejects with its `connect_error` (a refused CONNECT). */
export const connected = (c: ClientSocket) =>
  new Promise<void>((resolve, reject) => {
    if (c.connected) return resolve();
    c.once('connect', () => resolve());
    c.once('connect_error', reject);
  });
