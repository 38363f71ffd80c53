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
// inside the cork of another response: one request the gateway sends to itself and never
// answers, over a unix socket of its own in the temp folder that is closed and removed as soon
// as the request arrived (no TCP port: a port 0 listener could take the port a supervisor or a
// test had just picked for the public listener). The 101 is then written without
// a cork (a few small writes instead of one), which is the price of the workaround. Without the
// held request (before it arrives, or after it is lost, until it is replaced) `res.cork()` is used.
// Drop this module when uWebSockets.js carries the upstream fix.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import type { HttpResponse, Uws, us_listen_socket } from '../uws.js';

export interface UpgradeCork {
  /**
   * Runs `upgrade` (which calls `res.upgrade(...)`) corked, without uWS's post-upgrade close check;
   * with `res.cork` while the held request is not in place (at start, or lost until replaced).
   */
  run(res: HttpResponse, upgrade: () => void): void;
  close(): void;
}

export function createUpgradeCork(uws: Uws, logger: Logger): UpgradeCork {
  let holder: HttpResponse | undefined;
  let client: net.Socket | undefined;
  // The listener only lives until the held request arrives: its socket file goes with it.
  let listener: { token: us_listen_socket | undefined; path: string } | undefined;
  let closed = false;

  const stopListening = () => {
    if (!listener) return;
    if (listener.token) uws.us_listen_socket_close(listener.token);
    rmSync(listener.path, { force: true });
    listener = undefined;
  };

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
    stopListening();
  });

  const hold = () => {
    if (closed) return;
    stopListening();
    const current = {
      token: undefined as us_listen_socket | undefined,
      path: path.join(tmpdir(), `chatd-upgrade-cork-${process.pid}-${randomBytes(6).toString('hex')}.sock`),
    };
    listener = current;
    app.listen_unix((token: us_listen_socket | false) => {
      if (!token) {
        logger.warn({ path: current.path }, 'upgrade cork: cannot listen on its unix socket; websocket upgrades use res.cork');
        if (listener === current) listener = undefined;
        return;
      }
      if (listener !== current) {
        uws.us_listen_socket_close(token);
        rmSync(current.path, { force: true });
        return;
      }
      current.token = token;
      const socket = net.connect({ path: current.path });
      client = socket;
      socket.on('connect', () => socket.write('GET /hold HTTP/1.1\r\nHost: localhost\r\n\r\n'));
      socket.on('error', (err) => logger.debug({ err: err.message }, 'upgrade cork: held request failed'));
      socket.on('close', () => {
        if (client !== socket || closed) return;
        client = undefined;
        // Lost (answered or reset): hold another one, not in a tight loop.
        setTimeout(hold, 100).unref();
      });
      // The held request must not keep the process alive on its own.
      socket.unref();
    }, current.path);
  };
  hold();

  return {
    run(res, upgrade) {
      const h = holder;
      if (h) h.cork(upgrade);
      else res.cork(upgrade);
    },
    close() {
      closed = true;
      holder = undefined;
      client?.destroy();
      client = undefined;
      stopListening();
    },
  };
}
