// Metrics of the edge link, on both sides (label `side`: the gateway, or the ws node). Pub frames
// are counted in plain numbers on the hot path and read at scrape time.
import { promClient, registry } from '../observability/metrics.js';

export type LinkSide = 'gateway' | 'ws';

export const linkConnections = new promClient.Gauge({
  name: 'chatd_link_connections',
  help: 'Open edge-link websockets between gateways and ws nodes (side: which end counts them).',
  labelNames: ['side'] as const,
  registers: [registry],
});

export const linkClients = new promClient.Gauge({
  name: 'chatd_link_clients',
  help: 'Client websockets carried over edge links (side: which end counts them).',
  labelNames: ['side'] as const,
  registers: [registry],
});

/** Pub frames: sent by ws nodes (one per link with subscribers), received by gateways. */
export const pubFrames = { sent: 0, received: 0 };

new promClient.Counter({
  name: 'chatd_link_pub_frames_total',
  help: 'Room frames sent over edge links once per gateway with subscribers (direction: sent by a ws node, received by a gateway).',
  labelNames: ['direction'] as const,
  registers: [registry],
  collect() {
    this.reset();
    if (pubFrames.sent) this.inc({ direction: 'sent' }, pubFrames.sent);
    if (pubFrames.received) this.inc({ direction: 'received' }, pubFrames.received);
  },
});
