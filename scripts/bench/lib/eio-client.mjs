// A minimal Engine.IO 4 / Socket.IO 5 websocket client for load generation: it does as little work
// per frame as possible (a Node load generator saturates a core before the servers do), answers
// pings, and only parses the frames a scenario asks for. The same client drives chatd, the
// socket.io baseline and the raw uWebSockets.js baseline (which speaks the same framing).
import WebSocket from 'ws';

export class EioClient {
  constructor(url, auth, opts = {}) {
    this.url = url;
    this.auth = auth;
    this.opts = opts;
    this.ws = undefined;
    this.connected = false;
    this.onEventFrame = undefined; // (frame: string) => void, raw '42…' frames
    this.acks = new Map();
    this.nextAck = 0;
    this.closed = false;
  }

  connect(timeoutMs = 20000) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, {
        perMessageDeflate: false,
        ...(this.opts.localAddress ? { localAddress: this.opts.localAddress } : {}),
      });
      this.ws = ws;
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error('connect timeout'));
      }, timeoutMs);
      ws.on('message', (data, isBinary) => {
        if (isBinary) return;
        const frame = data.toString();
        const t = frame.charCodeAt(0);
        if (t === 50 /* '2' ping */) {
          ws.send('3');
          return;
        }
        if (t === 48 /* '0' open */) {
          ws.send(`40${JSON.stringify(this.auth)}`);
          return;
        }
        if (t === 52 /* '4' message */) {
          const s = frame.charCodeAt(1);
          if (s === 48 /* '0' CONNECT */) {
            this.connected = true;
            clearTimeout(timer);
            resolve(this);
          } else if (s === 52 /* '4' CONNECT_ERROR */) {
            clearTimeout(timer);
            reject(new Error(`connect_error ${frame.slice(2)}`));
            ws.close();
          } else if (s === 50 /* '2' EVENT */) {
            this.onEventFrame?.(frame);
          } else if (s === 51 /* '3' ACK */) {
            const m = /^43(\d+)/.exec(frame);
            if (m) {
              const cb = this.acks.get(Number(m[1]));
              if (cb) {
                this.acks.delete(Number(m[1]));
                cb(frame.slice(2 + m[1].length));
              }
            }
          }
        }
      });
      ws.on('error', (err) => {
        clearTimeout(timer);
        if (!this.connected) reject(err);
      });
      ws.on('close', (code) => {
        // Closed before the CONNECT ack: a failed connect, not one that waits forever.
        if (!this.connected) reject(new Error(`closed (${code}) before the CONNECT ack`));
        this.closed = true;
        this.connected = false;
        clearTimeout(timer);
        this.onClose?.();
      });
    });
  }

  emit(event, data) {
    this.ws.send(`42${JSON.stringify([event, data])}`);
  }

  /** Emits with an ack; resolves with the raw ack JSON (the part after `43<id>`). */
  emitWithAck(event, data) {
    const id = this.nextAck++;
    return new Promise((resolve) => {
      this.acks.set(id, resolve);
      this.ws.send(`42${id}${JSON.stringify([event, data])}`);
    });
  }

  bufferedAmount() {
    return this.ws.bufferedAmount;
  }

  close() {
    this.ws?.terminate();
  }
}
