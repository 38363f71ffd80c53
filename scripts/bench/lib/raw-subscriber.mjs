// A websocket subscriber that does almost no work per frame: it speaks the HTTP upgrade and the
// frame header itself over a plain TCP socket, answers Engine.IO pings, and counts `42` (EVENT)
// frames without decoding them into strings. With the `ws` package, a load generator tops out near
// 0.5M frames/s on one core; this one lets the servers, not the load generator, be the limit.
import net from 'node:net';
import { randomBytes } from 'node:crypto';

/** A client text frame. Masked with a zero key (allowed by RFC 6455: servers must accept any key), so the payload is sent as is. */
export function maskedTextFrame(text) {
  const payload = Buffer.from(text);
  const len = payload.length;
  const header = len < 126 ? Buffer.from([0x81, 0x80 | len]) : Buffer.from([0x81, 0x80 | 126, len >> 8, len & 0xff]);
  return Buffer.concat([header, ZERO_MASK, payload]);
}
const ZERO_MASK = Buffer.alloc(4);
const PONG = maskedTextFrame('3');

/**
 * Connects, authenticates with `auth` in the CONNECT packet (an object, or the frame already built
 * with `connectFrame(auth)`), then calls `onEvent()` for every EVENT frame. Resolves once the
 * CONNECT ack arrived.
 */
export const connectFrame = (auth) => maskedTextFrame(`40${JSON.stringify(auth)}`);

/** The upgrade request per URL, built once (a fixed Sec-WebSocket-Key is fine: the server only hashes it). */
const upgrades = new Map();
function upgradeOf(url) {
  let up = upgrades.get(url);
  if (!up) {
    const u = new URL(url);
    const request = Buffer.from(
      `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    upgrades.set(url, (up = { host: u.hostname, port: Number(u.port), request }));
  }
  return up;
}

export function rawSubscribe(url, auth, { onEvent, localAddress, timeoutMs = 20000 } = {}) {
  const u = upgradeOf(url);
  const connect = Buffer.isBuffer(auth) ? auth : connectFrame(auth);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: u.host, port: u.port, ...(localAddress ? { localAddress } : {}) });
    socket.setNoDelay(true);
    let upgraded = false;
    let buf = Buffer.alloc(0);
    const sub = { events: 0, socket, close: () => socket.destroy() };
    const timer = setTimeout(() => fail(new Error('connect timeout')), timeoutMs);
    const fail = (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.on('connect', () => socket.write(u.request));
    socket.on('error', fail);
    // Closed before the CONNECT ack: fail now rather than at the timeout (after it, a no-op).
    socket.on('close', () => fail(new Error('closed before the CONNECT ack')));
    socket.on('data', (chunk) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        if (!buf.subarray(0, 12).toString().includes('101')) return fail(new Error(`upgrade refused: ${buf.subarray(0, 40)}`));
        upgraded = true;
        buf = buf.subarray(end + 4);
      }
      let off = 0;
      while (buf.length - off >= 2) {
        const b1 = buf[off + 1] & 0x7f;
        let hdr = 2;
        let len = b1;
        if (b1 === 126) {
          if (buf.length - off < 4) break;
          len = buf.readUInt16BE(off + 2);
          hdr = 4;
        } else if (b1 === 127) {
          if (buf.length - off < 10) break;
          len = Number(buf.readBigUInt64BE(off + 2));
          hdr = 10;
        }
        if (buf.length - off < hdr + len) break;
        const opcode = buf[off] & 0x0f;
        const p = off + hdr;
        if (opcode === 1 && len > 0) {
          const t = buf[p];
          if (t === 0x34 /* '4' */ && len > 1 && buf[p + 1] === 0x32 /* '2' EVENT */) {
            sub.events++;
            onEvent?.();
          } else if (t === 0x32 /* '2' ping */) socket.write(PONG);
          else if (t === 0x30 /* '0' open */) socket.write(connect);
          else if (t === 0x34 && buf[p + 1] === 0x30 /* '40' CONNECT ack */) {
            clearTimeout(timer);
            resolve(sub);
          } else if (t === 0x34 && buf[p + 1] === 0x34 /* '44' CONNECT_ERROR */)
            fail(new Error(`connect_error ${buf.subarray(p, p + len)}`));
        } else if (opcode === 8) {
          socket.destroy();
        }
        off += hdr + len;
      }
      buf = off === buf.length ? Buffer.alloc(0) : buf.subarray(off);
    });
  });
}
