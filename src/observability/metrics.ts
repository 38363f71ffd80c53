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

// ---------------------------------------------------------------- webhooks (src/webhooks)

export const webhookAttempts = new client.Counter({
  name: 'chatd_webhook_attempts_total',
  help: 'Webhook HTTP attempts, by outcome: delivered (2xx), retryable (timeout, connection error, 408, 429, 5xx), rejected (other 4xx/3xx).',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const webhookAttemptDuration = new client.Histogram({
  name: 'chatd_webhook_attempt_duration_seconds',
  help: 'Webhook HTTP attempt duration, by outcome.',
  labelNames: ['outcome'] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

export const webhookDeliveries = new client.Counter({
  name: 'chatd_webhook_deliveries_total',
  help: 'Webhook deliveries settled, by result: delivered, retry_scheduled, dead, dropped (endpoint removed), deferred (endpoint busy).',
  labelNames: ['result'] as const,
  registers: [registry],
});

export const webhookDead = new client.Counter({
  name: 'chatd_webhook_dead_total',
  help: 'Deliveries moved to meta:webhook_dead, by reason (retry_window_exhausted, rejected, malformed).',
  labelNames: ['reason'] as const,
  registers: [registry],
});

export const webhookJobsLost = new client.Counter({
  name: 'chatd_webhook_jobs_lost_total',
  help: 'Jobs trimmed from meta:webhook_jobs before they were delivered (raise webhooks.streamMaxLen).',
  registers: [registry],
});

export const webhookRedisDataLoss = new client.Counter({
  name: 'chatd_webhook_redis_data_loss_total',
  help: 'Times this node saw Redis come back without its data (meta:webhook_epoch gone) and re-published the unsettled window of webhook jobs from PostgreSQL.',
  registers: [registry],
});

export const webhookJobsRepublished = new client.Counter({
  name: 'chatd_webhook_jobs_republished_total',
  help: 'Webhook jobs re-appended from PostgreSQL after a Redis data loss (at least once: receivers drop repeats by X-Chatd-Delivery).',
  registers: [registry],
});

export const revocationsRestored = new client.Counter({
  name: 'chatd_revocations_restored_total',
  help: 'Token revocations written back into the store from the database: at start, and after Redis came back without its data (meta:webhook_epoch gone).',
  registers: [registry],
});

export const webhookRetrySetSize = new client.Gauge({
  name: 'chatd_webhook_retry_scheduled',
  help: 'Deliveries waiting for a retry in meta:webhook_retry.',
  registers: [registry],
});

export const webhookDeadSetSize = new client.Gauge({
  name: 'chatd_webhook_dead_entries',
  help: 'Entries in meta:webhook_dead.',
  registers: [registry],
});

export const webhookGroupLag = new client.Gauge({
  name: 'chatd_webhook_group_lag',
  help: "Jobs in meta:webhook_jobs not yet read by the dispatchers' consumer group.",
  registers: [registry],
});

export const webhookGroupPending = new client.Gauge({
  name: 'chatd_webhook_group_pending',
  help: 'Jobs read by a dispatcher and not yet settled.',
  registers: [registry],
});

// ---------------------------------------------------------------- database (src/db)

export const dbFlushSize = new client.Histogram({
  name: 'chatd_db_group_commit_batch_size',
  help: 'Messages per group-commit transaction (grows by itself under load: no timer).',
  buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
  registers: [registry],
});

export const dbFlushDuration = new client.Histogram({
  name: 'chatd_db_group_commit_seconds',
  help: 'Duration of one group-commit transaction, BEGIN to COMMIT (retries of a failed batch included).',
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [registry],
});

export const outboxPublishFailures = new client.Counter({
  name: 'chatd_outbox_publish_failures_total',
  help: 'Publishes after commit that failed (the outbox sweep retries them).',
  registers: [registry],
});

export const outboxRepublished = new client.Counter({
  name: 'chatd_outbox_republished_total',
  help: 'Messages published by the outbox sweep (left undone by a crash or a failed publish).',
  registers: [registry],
});

export { client as promClient };
