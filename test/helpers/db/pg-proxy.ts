// A TCP proxy between pg and PostgreSQL that breaks connections at chosen points of the wire
// protocol: after a COMMIT (or an autocommit statement) was executed but before its answer reaches
// the client (the outcome is unknown to the client, yet the data is committed), or before a
// statement reaches the server.
import net from 'node:net';

export type Fault =
  | { readonly kind: 'none' }
  /** Forward the next COMMIT, let the server run it, then cut the connection before the reply. */
  | { readonly kind: 'lose-commit-reply' }
  /**
   * Forward the next query whose text matches (an autocommit statement), let the server run it to
   * its end (ReadyForQuery), then cut the connection before the reply reaches the client.
   */
  | { readonly kind: 'lose-reply'; readonly match: RegExp }
  /** Cut the connection instead of forwarding the next query whose text matches. */
  | { readonly kind: 'drop-before'; readonly match: RegExp };

export class PgFaultProxy {
  fault: Fault = { kind: 'none' };
  /** Faults that fired (each fires once, then resets to none). */
  fired = 0;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();

  constructor(readonly targetPort: number) {
    this.#server = net.createServer((client) => this.#pipe(client));
  }

  listen(): Promise<number> {
    return new Promise((resolve) => this.#server.listen(0, '127.0.0.1', () => resolve((this.#server.address() as net.AddressInfo).port)));
  }

  close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #pipe(client: net.Socket): void {
    const server = net.connect(this.targetPort, '127.0.0.1');
    this.#sockets.add(client).add(server);
    const cut = () => {
      client.destroy();
      server.destroy();
    };
    client.on('close', () => (this.#sockets.delete(client), server.destroy()));
    server.on('close', () => (this.#sockets.delete(server), client.destroy()));
    client.on('error', () => undefined);
    server.on('error', () => undefined);

    let startup = true;
    let pending = Buffer.alloc(0);
    let commitSent = false;
    let awaitingReady = false;
    let held = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      // Forward whole messages only, so one can be inspected (and held back) before it is sent.
      for (;;) {
        if (startup) {
          if (pending.length < 4) return;
          const len = pending.readInt32BE(0);
          if (pending.length < len) return;
          server.write(pending.subarray(0, len));
          pending = pending.subarray(len);
          startup = false;
          continue;
        }
        if (pending.length < 5) return;
        const len = pending.readInt32BE(1) + 1;
        if (pending.length < len) return;
        const message = pending.subarray(0, len);
        pending = pending.subarray(len);
        const type = String.fromCharCode(message[0]!);
        const text = type === 'Q' || type === 'P' ? queryText(type, message) : '';
        const f = this.fault;
        if (f.kind === 'drop-before' && text && f.match.test(text)) {
          this.fault = { kind: 'none' };
          this.fired++;
          cut();
          return;
        }
        if (f.kind === 'lose-reply' && text && f.match.test(text)) {
          this.fault = { kind: 'none' };
          this.fired++;
          awaitingReady = true;
        }
        if (f.kind === 'lose-commit-reply' && /^\s*commit\s*;?\s*$/i.test(text)) {
          this.fault = { kind: 'none' };
          this.fired++;
          commitSent = true;
        }
        server.write(message);
      }
    });
    server.on('data', (chunk: Buffer) => {
      if (awaitingReady) {
        // Hold the reply until its ReadyForQuery ('Z', length 5): the statement is committed.
        held = Buffer.concat([held, chunk]);
        for (let at = 0; at + 5 <= held.length; at += held.readInt32BE(at + 1) + 1) {
          if (held[at] === 0x5a && held.readInt32BE(at + 1) === 5) {
            cut();
            return;
          }
        }
        return;
      }
      if (commitSent) {
        // The server answered the COMMIT: it is done. The client never hears it.
        cut();
        return;
      }
      client.write(chunk);
    });
  }
}

function queryText(type: string, message: Buffer): string {
  const body = message.subarray(5);
  if (type === 'Q') return body.toString('utf8', 0, Math.max(0, body.indexOf(0)));
  // Parse: statement name \0 query \0 …
  const nameEnd = body.indexOf(0);
  const queryEnd = body.indexOf(0, nameEnd + 1);
  return body.toString('utf8', nameEnd + 1, queryEnd);
}
