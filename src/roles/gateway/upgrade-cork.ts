// Completes a websocket upgrade that finishes after an await, without uWebSockets.js closing it.
//
// The gateway answers an upgrade only once its upstream websocket is open, so it calls
// `res.upgrade()` from a later task, inside a cork as uWS requires. In the uWS build chatd uses
// (uWebSockets.js 20.30), `res.cork()` then reads the HTTP response state of the socket after the
// upgrade moved it to a smaller allocation in place: the state field now lies in freed memory,
// and when whatever was written there has the "connection: close" bit and not the "response
// pending" bit, uWS shuts the brand-new websocket down (shutdown + close, no close frame). The
// client sees its 101 and then a dropped connection (1006) before the Engine.IO open packet —
// about one upgrade in 5,000–10,000 under load, every upgrade when freed memory is scribbled
// (GLIBC_TUNABLES=glibc.malloc.tcache_count=0 MALLOC_PERTURB_=16). Upstream: uWebSockets issue
// #1928 / uWebSockets.js #1108, fixed by uWebSockets PR #1929 ("Fix cork() closing a WebSocket
// that was upgraded asynchronously").
//
// `res.cork()` only runs that check when it took the loop's cork itself. So the upgrade runs
// inside the cork of another response: one request the gateway sends to itself on loopback (a
// listener of its own on 127.0.0.1, port 0) and never answers. The 101 is then written without
// a cork (a few small writes instead of one), which is the price of the workaround. Without the
// held request (before it arrives, or after it is lost, until it is replaced) `res.cork()` is used.
// Drop this module when uWebSockets.js carries the upstream fix.
import net from 'node:net';
import type { Logger } from 'pino';
import type { HttpResponse, Uws, us_listen_socket } from '../../uws.js';

export interface UpgradeCork {
  /** Runs `upgrade` (which calls `res.upgrade(...)`) corked, without uWS's post-upgrade close check. */
  run(res: HttpResponse, upgrade: () => void): void;
  /** Whether the held request is in place (false: `run` falls back to `res.cork`). */
  readonly ready: () => boolean;
  close(): void;
}

export function createUpgradeCork(uws: Uws, logger: Logger): UpgradeCork {
  let holder: HttpResponse | undefined;
  let listenSocket: us_listen_socket | undefined;
  let client: net.Socket | undefined;
  let closed = false;
  let port = 0;

  const app = uws.App().any('/*', (res) => {
    // Lost with its connection; the client side's close event holds another one.
    res.onAborted(() => {
      if (holder === res) holder = undefined;
    });
    if (holder || closed) {
      res.cork(() => res.writeStatus('409 Conflict').end());
      return;
    }
    holder = res;
  });

  const hold = () => {
    if (closed || !port) return;
    client?.destroy();
    const socket = net.connect({ host: '127.0.0.1', port });
    client = socket;
    socket.setNoDelay(true);
    socket.on('connect', () => socket.write('GET /hold HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'));
    socket.on('error', (err) => logger.debug({ err: err.message }, 'upgrade cork: held request failed'));
    socket.on('close', () => {
      if (client !== socket || closed) return;
      client = undefined;
      // Lost (the listener answered or reset it): hold another one, not in a tight loop.
      setTimeout(hold, 100).unref();
    });
    // The held request must not keep the process alive on its own.
    socket.unref();
  };

  app.listen('127.0.0.1', 0, (token) => {
    if (!token) {
      logger.warn('upgrade cork: no loopback listener; websocket upgrades use res.cork');
      return;
    }
    if (closed) {
      uws.us_listen_socket_close(token);
      return;
    }
    listenSocket = token;
    port = uws.us_socket_local_port(token);
    hold();
  });

  return {
    run(res, upgrade) {
      const h = holder;
      if (h) h.cork(upgrade);
      else res.cork(upgrade);
    },
    ready: () => holder !== undefined,
    close() {
      closed = true;
      holder = undefined;
      client?.destroy();
      client = undefined;
      if (listenSocket) uws.us_listen_socket_close(listenSocket);
      listenSocket = undefined;
    },
  };
}
