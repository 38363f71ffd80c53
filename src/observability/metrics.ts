// Prometheus metrics (prom-client): one registry per process, process metrics plus chatd's own.
// Modules register their metrics here so the names live in one place.
import client from 'prom-client';

export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry, prefix: 'chatd_' });

export const httpRequests = new client.Counter({
  name: 'chatd_http_requests_total',
  help: 'HTTP requests answered, by role, route and status.',
  labelNames: ['role', 'route', 'status'] as const,
  registers: [registry],
});

export const httpDuration = new client.Histogram({
  name: 'chatd_http_request_duration_seconds',
  help: 'HTTP request duration, by role and route.',
  labelNames: ['role', 'route'] as const,
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [registry],
});

export const socketConnections = new client.Gauge({
  name: 'chatd_socket_connections',
  help: 'Open Socket.IO connections on this node, by transport.',
  labelNames: ['transport'] as const,
  registers: [registry],
});

export const messagesAccepted = new client.Counter({
  name: 'chatd_messages_accepted_total',
  help: 'Messages stored and acknowledged, by door (http, ws).',
  labelNames: ['door'] as const,
  registers: [registry],
});

export const dependencyUp = new client.Gauge({
  name: 'chatd_dependency_up',
  help: '1 when a dependency (redis, postgres) answered its last check.',
  labelNames: ['dependency'] as const,
  registers: [registry],
});

export { client as promClient };
