// A real webhook receiver on loopback (port 0) for webhook tests: records every request and
// answers as the test says (status, headers, or never — to simulate a hung endpoint).
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedWebhook {
  readonly deliveryId: string;
  readonly timestamp: string;
  readonly signature: string;
  readonly body: string;
  readonly path: string;
  readonly receivedAt: number;
}

export type Answer = { status: number; headers?: Record<string, string>; body?: string } | 'hang';

export interface WebhookReceiver {
  readonly url: string;
  readonly received: ReceivedWebhook[];
  /** Decides the answer of each request (default 200); a promise holds the request until it settles. */
  respond: (req: ReceivedWebhook, index: number) => Answer | Promise<Answer>;
  /** Requests in flight now, and the most ever in flight at once. */
  readonly inFlight: () => number;
  readonly maxInFlight: () => number;
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const received: ReceivedWebhook[] = [];
  let current = 0;
  let max = 0;
  const hung = new Set<http.ServerResponse>();
  const receiver: WebhookReceiver = {
    url: '',
    received,
    respond: () => ({ status: 200 }),
    inFlight: () => current,
    maxInFlight: () => max,
    async close() {
      for (const res of hung) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    current++;
    max = Math.max(max, current);
    res.on('close', () => current--);
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec: ReceivedWebhook = {
        deliveryId: String(req.headers['x-chatd-delivery'] ?? ''),
        timestamp: String(req.headers['x-chatd-timestamp'] ?? ''),
        signature: String(req.headers['x-chatd-signature'] ?? ''),
        body: Buffer.concat(chunks).toString('utf8'),
        path: req.url ?? '/',
        receivedAt: Date.now(),
      };
      received.push(rec);
      const answerWith = (answer: Answer) => {
        if (answer === 'hang') {
          hung.add(res);
          return;
        }
        if (res.destroyed) return;
        res.writeHead(answer.status, { 'content-type': 'text/plain', ...answer.headers });
        res.end(answer.body ?? '');
      };
      const answer = receiver.respond(rec, received.length - 1);
      if (answer instanceof Promise) {
        hung.add(res);
        void answer.then((a) => (hung.delete(res), answerWith(a)));
      } else answerWith(answer);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  (receiver as { url: string }).url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return receiver;
}

/** A minimal config slice with one tenant per entry of `endpoints` (tenantId → endpoints). */
export function webhookConfig(
  endpoints: Record<string, { id?: string; url: string; secret: string; concurrency?: number }[]>,
  concurrencyPerEndpoint = 8,
) {
  return {
    webhooks: { concurrencyPerEndpoint },
    tenants: Object.entries(endpoints).map(([id, eps]) => ({
      id,
      apiKeys: [],
      allowedOrigins: [],
      identityVerification: 'optional' as const,
      retention: {},
      conversations: { reopenOnVisitorMessage: true, autoAssign: { mode: 'off', maxOpenPerAgent: 10 } },
      webhooks: eps.map((e) => ({ events: ['message.created' as const], ...e })),
    })),
  };
}
