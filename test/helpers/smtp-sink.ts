// A real SMTP server in its own process (test/helpers/smtp-sink-child.mjs) that records what it
// receives, parsed with mailparser. `kill()` takes it down (connections refused) and `start()`
// brings it back on the same port, for the "SMTP down for a while" tests.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { simpleParser, type ParsedMail } from 'mailparser';

const CHILD = path.join(__dirname, 'smtp-sink-child.mjs');

export interface ReceivedMail {
  readonly from: string | null;
  readonly to: string[];
  readonly mail: ParsedMail;
}

export class SmtpSink {
  #child: ChildProcess | undefined;
  #port = 0;
  readonly received: ReceivedMail[] = [];
  #parsing: Promise<void>[] = [];

  /** Starts a sink on any free port. */
  static async start(): Promise<SmtpSink> {
    const s = new SmtpSink();
    await s.start();
    return s;
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    return `smtp://127.0.0.1:${this.#port}`;
  }

  /** Starts (again) — on the port it had, once it had one. */
  async start(): Promise<void> {
    const child = spawn(process.execPath, [CHILD, String(this.#port)], { stdio: ['ignore', 'pipe', 'inherit'] });
    this.#child = child;
    const lines = createInterface({ input: child.stdout! });
    await new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`smtp sink exited (${code}) before listening`)));
      lines.on('line', (line) => {
        const m = JSON.parse(line) as { port?: number; from?: string | null; to?: string[]; raw?: string };
        if (m.port !== undefined) {
          this.#port = m.port;
          resolve();
          return;
        }
        this.#parsing.push(
          simpleParser(Buffer.from(m.raw!, 'base64')).then(
            (mail) => void this.received.push({ from: m.from ?? null, to: m.to ?? [], mail }),
          ),
        );
      });
    });
  }

  /** Every message received so far, parsed. */
  async messages(): Promise<ReceivedMail[]> {
    await Promise.all(this.#parsing);
    return this.received;
  }

  /** SIGKILL: the port refuses connections until start(). */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
}
