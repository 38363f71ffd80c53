// The configuration schema: the single source of truth for chatd's config. The JSON Schema file
// `schemas/chat-server.schema.json` is generated from it (`npm run schemas`, checked by a test),
// Ajv validates against it and fills defaults from it, and `Config` is its static type.
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { ID_SOURCE } from '../ids.js';

const Id = Type.String({ pattern: `^${ID_SOURCE}$`, description: `An id: ${ID_SOURCE}.` });
const Port = (def: number, description: string) =>
  Type.Integer({ minimum: 0, maximum: 65535, default: def, description: `${description} 0 picks a free port.` });
/** A duration in milliseconds. */
const Ms = (def: number, description: string) => Type.Integer({ minimum: 0, default: def, description });
const Rate = (rate: number, burst: number, description: string) =>
  Type.Object(
    {
      rate: Type.Number({ exclusiveMinimum: 0, default: rate, description: 'Tokens added per second.' }),
      burst: Type.Integer({ minimum: 1, default: burst, description: 'Bucket size: the largest burst allowed.' }),
    },
    { additionalProperties: false, default: {}, description },
  );
const Listener = (port: number, host: string, description: string) =>
  Type.Object(
    {
      host: Type.String({ default: host, description: 'Address to bind.' }),
      port: Port(port, 'TCP port.'),
    },
    { additionalProperties: false, default: {}, description },
  );
const Obj = <T extends Record<string, TSchema>>(props: T, description: string) =>
  Type.Object(props, { additionalProperties: false, default: {}, description });

export const ApiKeySchema = Type.Object(
  {
    key: Type.Optional(
      Type.String({
        pattern: '^ck_(pub|sec)_[A-Za-z0-9_-]{16,200}$',
        description: 'The key itself (use ${ENV_VAR}); `ck_pub_` publishable or `ck_sec_` secret.',
      }),
    ),
    hash: Type.Optional(
      Type.String({
        pattern: '^sha256:[0-9a-f]{64}$',
        description: 'Instead of `key`: `sha256:` + hex SHA-256 of the key, so the file holds no secret.',
      }),
    ),
    kind: Type.Optional(
      Type.Union([Type.Literal('publishable'), Type.Literal('secret')], {
        description: 'Required with `hash` (the prefix cannot be read from a hash); derived from `key`.',
      }),
    ),
    name: Type.Optional(Type.String({ maxLength: 200, description: 'A label for logs and metrics.' })),
  },
  { additionalProperties: false },
);

export const WebhookEndpointSchema = Type.Object(
  {
    id: Type.Optional(Id),
    url: Type.String({ pattern: '^https?://', description: 'Where deliveries are POSTed.' }),
    secret: Type.String({ minLength: 16, description: 'HMAC-SHA256 signing secret (use ${ENV_VAR}).' }),
    events: Type.Array(Type.Union([Type.Literal('message.created'), Type.Literal('conversation.updated')]), {
      default: ['message.created'],
      description:
        'Event types sent to this endpoint: message.created (every stored message, system messages included), ' +
        'conversation.updated (the inbox summary after every change of a conversation; opt in, it is frequent).',
    }),
    concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 256, description: 'Deliveries in flight at once.' })),
  },
  { additionalProperties: false },
);

const Clock = (description: string) => Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$', description });

export const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;

export const BusinessHoursSchema = Type.Object(
  {
    timeZone: Type.String({
      minLength: 1,
      description: 'IANA time zone the hours are written in (e.g. Europe/Paris); daylight saving time follows it.',
    }),
    weekly: Type.Array(
      Type.Object(
        {
          days: Type.Array(Type.Union(WEEKDAYS.map((d) => Type.Literal(d))), {
            minItems: 1,
            uniqueItems: true,
            description: 'Days this range applies to.',
          }),
          from: Clock('Opening time, HH:MM local.'),
          to: Clock('Closing time, HH:MM local (after from; 24:00 = midnight at the end of the day).'),
        },
        { additionalProperties: false },
      ),
      { default: [], description: 'Opening ranges per weekday; several ranges on one day are allowed (a lunch break).' },
    ),
    exceptions: Type.Array(
      Type.Object(
        {
          date: Type.String({ pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}$', description: 'Local date (YYYY-MM-DD).' }),
          from: Type.Optional(Clock('Opening time that day; without from/to the day is closed.')),
          to: Type.Optional(Clock('Closing time that day.')),
        },
        { additionalProperties: false },
      ),
      {
        default: [],
        description:
          'Dated exceptions that replace the weekly ranges of their day: a holiday (date alone: closed) or special hours (several entries for several ranges).',
      },
    ),
  },
  {
    additionalProperties: false,
    description:
      'When agents are expected to answer. Without it the tenant is always open, and availability depends on agents online alone.',
  },
);

export const TenantSchema = Type.Object(
  {
    id: Id,
    name: Type.Optional(Type.String({ maxLength: 200, description: 'A label for logs.' })),
    apiKeys: Type.Array(ApiKeySchema, { default: [], description: 'Keys of this tenant.' }),
    allowedOrigins: Type.Array(Type.String({ pattern: '^(\\*|https?://[^/]+)$' }), {
      default: [],
      description: 'Origins allowed to use the widget (e.g. https://shop.example); `*` allows any.',
    }),
    identityVerification: Type.Union([Type.Literal('off'), Type.Literal('optional'), Type.Literal('required')], {
      default: 'optional',
      description: 'How a claimed userId is treated: off (ignored as identity), optional, required.',
    }),
    identitySecret: Type.Optional(Type.String({ minLength: 16, description: 'HMAC-SHA256 secret for `userHash` (use ${ENV_VAR}).' })),
    jwtVerificationKey: Type.Optional(
      Type.String({
        description: "The tenant's own key for user tokens it mints: a shared secret, or a PEM public key (RS256/EdDSA).",
      }),
    ),
    webhooks: Type.Array(WebhookEndpointSchema, { default: [], description: 'Webhook endpoints.' }),
    retention: Type.Object(
      {
        messages: Type.Optional(Type.String({ pattern: '^[0-9]+(s|m|h|d)$', description: 'Delete messages older than this (e.g. 90d).' })),
      },
      { additionalProperties: false, default: {}, description: 'Data retention.' },
    ),
    tokensNotBefore: Type.Optional(Type.String({ format: 'date-time', description: 'Every token issued before this instant is refused.' })),
    businessHours: Type.Optional(BusinessHoursSchema),
    awayMessage: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 1000,
        description: 'What the widget shows while nobody is available (GET /api/chat/availability returns it then).',
      }),
    ),
    email: Type.Optional(
      Type.Object(
        {
          senderName: Type.Optional(
            Type.String({ minLength: 1, maxLength: 100, description: "The From name of this tenant's emails (default: its name or id)." }),
          ),
          subject: Type.Optional(
            Type.String({
              minLength: 1,
              maxLength: 200,
              description: 'Subject of a reply email; `{senderName}` is replaced. Default: "New reply from {senderName}".',
            }),
          ),
          intro: Type.Optional(
            Type.String({
              minLength: 1,
              maxLength: 1000,
              description: 'First paragraph of a reply email, before the replies. Default: "You have a reply to your conversation:".',
            }),
          ),
          notifyAddress: Type.Optional(
            Type.String({
              format: 'email',
              maxLength: 254,
              description:
                'Where to tell this tenant that a visitor wrote while nobody was available (out of business hours or no agent online), so the message is not left unseen: one email per conversation per email.notifyDelaySeconds with the unanswered messages. Unset: no notification.',
            }),
          ),
          consoleUrl: Type.Optional(
            Type.String({
              pattern: '^https?://',
              description:
                'Link in a notification to open the conversation in your agent console; `{tenantId}` and `{sessionId}` are replaced. Default: email.publicUrl + /demo/agent (the built-in console).',
            }),
          ),
        },
        { additionalProperties: false, description: "This tenant's emails (sent only when email.smtp is set)." },
      ),
    ),
    expectedReplySeconds: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 2592000,
        description: 'How soon visitors may expect a reply, in seconds, for the widget to show (returned by availability).',
      }),
    ),
    conversations: Type.Object(
      {
        reopenOnVisitorMessage: Type.Boolean({
          default: true,
          description:
            "A visitor's message to a resolved conversation reopens it (recorded as a system message). Turn off when " +
            'agents should find follow-ups in the resolved tab instead.',
        }),
        autoAssign: Type.Object(
          {
            mode: Type.Union([Type.Literal('off'), Type.Literal('round_robin')], {
              default: 'off',
              description:
                "off: conversations wait in the inbox for an agent to take them. round_robin: a conversation's first visitor " +
                'message assigns it to the next agent online now, in turn, skipping agents at their cap.',
            }),
            maxOpenPerAgent: Type.Integer({
              minimum: 1,
              maximum: 10_000,
              default: 10,
              description: 'round_robin never gives an agent more open conversations than this, so one agent is not buried.',
            }),
          },
          { additionalProperties: false, default: {}, description: 'Automatic assignment of new conversations.' },
        ),
      },
      { additionalProperties: false, default: {}, description: "The agents' inbox: reopening and automatic assignment." },
    ),
  },
  { additionalProperties: false },
);

/** Bounds of a token's life, for the config and for `chatd token issue --ttl`: one minute to 30 days. */
export const TOKEN_TTL_SECONDS = { min: 60, max: 2592000 } as const;

export const RoleSchema = Type.Union([Type.Literal('gateway'), Type.Literal('api'), Type.Literal('ws')]);

export const ConfigSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String({ description: 'Path of this schema, for editors.' })),
    nodeId: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,32}$', description: "This node's id (default: random per start)." })),
    dataDir: Type.String({
      default: './.chatd',
      description: 'Folder for generated secrets and the embedded database.',
    }),
    server: Obj(
      {
        host: Type.String({ default: '0.0.0.0', description: 'Address of the public listener.' }),
        port: Port(3000, 'Port of the public listener (`--role all`, or the gateway).'),
        trustedProxies: Type.Array(Type.String(), {
          default: [],
          description: 'Peers (IPs or CIDRs) whose X-Forwarded-For is believed.',
        }),
        shutdownTimeoutMs: Ms(10000, 'How long SIGTERM waits for in-flight work.'),
        bodyLimitBytes: Type.Integer({ minimum: 1024, default: 65536, description: 'Largest HTTP request body.' }),
        corsMaxAgeSeconds: Type.Integer({ minimum: 0, default: 600, description: 'How long browsers may cache a CORS preflight.' }),
      },
      'The public listener.',
    ),
    roles: Obj(
      {
        api: Listener(3001, '0.0.0.0', 'Listener of the api role when it runs without `all`.'),
        ws: Type.Object(
          {
            host: Type.String({ default: '0.0.0.0', description: 'Address to bind.' }),
            port: Port(3002, 'TCP port.'),
            advertiseUrl: Type.Optional(
              Type.String({
                pattern: '^https?://',
                description:
                  'How other nodes reach this ws node (node registry, for sid routing); default http://<listener address>:<port>.',
              }),
            ),
          },
          { additionalProperties: false, default: {}, description: 'Listener of the ws role when it runs without `all`.' },
        ),
      },
      'Per-role listeners when roles run in separate processes.',
    ),
    admin: Obj(
      {
        enabled: Type.Boolean({ default: true, description: 'Run the admin listener.' }),
        host: Type.String({ default: '127.0.0.1', description: 'Keep it on loopback unless behind a firewall.' }),
        port: Port(9090, 'Admin port.'),
        token: Type.Optional(Type.String({ minLength: 16, description: 'Bearer token for admin endpoints (generated when absent).' })),
      },
      'The admin listener: metrics, health, admin endpoints.',
    ),
    log: Obj(
      {
        level: Type.Union(
          ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
          { default: 'info', description: 'Least severe level written.' },
        ),
        format: Type.Union([Type.Literal('auto'), Type.Literal('json'), Type.Literal('pretty')], {
          default: 'auto',
          description: 'auto: pretty on a terminal, JSON otherwise.',
        }),
      },
      'Logging.',
    ),
    redis: Obj(
      {
        url: Type.Optional(
          Type.String({
            pattern: '^(redis|rediss)://',
            description: 'redis:// or rediss:// URL; without it an in-process store is used (one node only).',
          }),
        ),
        sentinel: Type.Optional(
          Type.Object(
            {
              name: Type.String({ description: 'Master group name.' }),
              nodes: Type.Array(Type.String({ pattern: '^[^:]+:[0-9]+$' }), { minItems: 1, description: 'Sentinels as host:port.' }),
              password: Type.Optional(Type.String({ description: 'Password of the Redis master (use ${ENV_VAR}).' })),
            },
            { additionalProperties: false, description: "Use Sentinel instead of `url`'s host." },
          ),
        ),
        cluster: Type.Optional(
          Type.Object(
            {
              nodes: Type.Array(Type.String({ pattern: '^(redis|rediss)://[^/?#]+(:[0-9]+)?/?$' }), {
                minItems: 1,
                description:
                  'Seed nodes as redis:// or rediss:// URLs (REDIS_CLUSTER_NODES, comma-separated); the rest of the cluster is discovered from them. ' +
                  'Credentials and TLS come from the first URL, as with `url`; a cluster has no database number.',
              }),
              password: Type.Optional(Type.String({ description: 'Password of every node, when the URLs carry none (use ${ENV_VAR}).' })),
              natMap: Type.Optional(
                Type.Record(Type.String({ pattern: '^[^:]+:[0-9]+$' }), Type.String({ pattern: '^[^:]+:[0-9]+$' }), {
                  description:
                    'host:port the cluster announces → host:port chatd dials, for a cluster behind NAT or port forwarding ' +
                    '(the addresses in CLUSTER SLOTS are not reachable from chatd as they are).',
                }),
              ),
            },
            {
              additionalProperties: false,
              description:
                'Redis Cluster (Redis ≥ 7, sharded pub/sub) instead of one Redis: keys and scripts are laid out by hash tag, so a ' +
                'deployment outgrows one Redis core. Excludes `url` and `sentinel`.',
            },
          ),
        ),
        prefix: Type.String({
          default: '',
          pattern: '^[A-Za-z0-9_:.-]{0,64}$',
          description: 'Prefix for every key and channel, so deployments can share a Redis.',
        }),
      },
      'Redis: the distributed engine.',
    ),
    database: Obj(
      {
        url: Type.Optional(Type.String({ pattern: '^postgres(ql)?://', description: 'PostgreSQL URL; without it PGlite is embedded.' })),
        poolSize: Type.Integer({ minimum: 1, maximum: 200, default: 10, description: 'PostgreSQL connections per process.' }),
        connectTimeoutMs: Ms(5000, 'Connection timeout.'),
        statementTimeoutMs: Ms(10000, 'Statement timeout.'),
        autoMigrate: Type.Boolean({
          default: false,
          description: 'Apply pending migrations at start (the embedded database always does).',
        }),
        embeddedDir: Type.Optional(Type.String({ description: 'PGlite folder (default: <dataDir>/data).' })),
        schema: Type.Optional(Type.String({ pattern: '^[a-z_][a-z0-9_]{0,62}$', description: 'PostgreSQL schema (default: public).' })),
      },
      'The durable store.',
    ),
    auth: Obj(
      {
        jwtSecret: Type.Optional(Type.String({ minLength: 16, description: 'HS256 secret (generated when absent).' })),
        jwtKeys: Type.Array(
          Type.Object(
            {
              kid: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$', description: 'Key id, sent in the JWT header.' }),
              secret: Type.Optional(Type.String({ minLength: 16, description: 'HS256 secret (use ${ENV_VAR}).' })),
              privateKeyFile: Type.Optional(Type.String({ description: 'PEM private key (RS256/EdDSA) to sign with.' })),
              publicKeyFile: Type.Optional(Type.String({ description: 'PEM public key (RS256/EdDSA) to verify with.' })),
              algorithm: Type.Union([Type.Literal('HS256'), Type.Literal('RS256'), Type.Literal('EdDSA')], {
                default: 'HS256',
                description: 'Pinned algorithm of this key.',
              }),
            },
            { additionalProperties: false },
          ),
          { default: [], description: 'Keys for rotation; the first signs, all verify.' },
        ),
        issuer: Type.String({ default: 'chatd', description: 'JWT `iss`, set and checked.' }),
        audience: Type.String({ default: 'chatd', description: 'JWT `aud`, set and checked.' }),
        visitorTokenTtlSeconds: Type.Integer({
          minimum: TOKEN_TTL_SECONDS.min,
          maximum: TOKEN_TTL_SECONDS.max,
          default: 3600,
          description: 'Life of a visitor token (`expiresIn`).',
        }),
        agentTokenTtlSeconds: Type.Integer({
          minimum: TOKEN_TTL_SECONDS.min,
          maximum: TOKEN_TTL_SECONDS.max,
          default: 28800,
          description: 'Life of an agent token.',
        }),
        gatewayApiKey: Type.Optional(Type.String({ minLength: 8, description: "The guide's GATEWAY_API_KEY: a publishable key." })),
        secretApiKey: Type.Optional(
          Type.String({
            pattern: '^ck_sec_',
            minLength: 16,
            description:
              'A secret key (`ck_sec_…`) accepted for any tenant while no tenants are configured, for agent tokens, broadcast and online users in zero-config mode; generated into the data folder when absent. Ignored once tenants are configured.',
          }),
        ),
        defaultTenant: Type.Optional(Id),
        clockToleranceSeconds: Type.Integer({ minimum: 0, maximum: 300, default: 5, description: 'Clock skew allowed on exp/nbf.' }),
      },
      'Credentials.',
    ),
    tenants: Type.Array(TenantSchema, { default: [], description: 'Tenants; none = zero-config mode.' }),
    limits: Obj(
      {
        httpPerIp: Rate(50, 100, 'HTTP requests per client IP.'),
        httpPerKey: Rate(200, 400, 'HTTP requests per API key.'),
        connectPerIp: Rate(10, 20, 'New Socket.IO connections per client IP.'),
        handshakePerIp: Rate(
          10,
          20,
          'New Engine.IO sessions (polling and websocket handshakes) per client IP, checked by every node that terminates Socket.IO before any capacity check: over it the handshake gets 429, so one address cannot fill a node. In process, per node.',
        ),
        pendingPerIp: Type.Integer({
          minimum: 1,
          default: 20,
          description:
            'Sessions per client IP that have not completed the Socket.IO CONNECT yet (429 beyond): a real client needs one or two.',
        }),
        maxPendingConnections: Type.Integer({
          minimum: 0,
          default: 0,
          description:
            'Sessions in total that have not completed CONNECT (503 beyond); 0: a tenth of maxConnections. Only authenticated sockets count toward maxConnections, so unauthenticated ones cannot crowd them out.',
        }),
        connectPerKey: Rate(200, 400, 'New Socket.IO connections per API key.'),
        messagesPerSocket: Rate(20, 40, 'Events per visitor or user socket.'),
        messagesPerAgentSocket: Rate(
          100,
          200,
          "Events per agent socket: an agent answering a queue of visitors sends in bursts a visitor's socket never needs.",
        ),
        messageMaxChars: Type.Integer({ minimum: 1, maximum: 100000, default: 4000, description: 'Longest message text, in characters.' }),
        maxPayloadBytes: Type.Integer({ minimum: 1024, default: 65536, description: 'Engine.IO maxPayload.' }),
        sendBufferBytes: Type.Integer({
          minimum: 65536,
          default: 1048576,
          description: 'Per-socket send buffer before a slow consumer is cut off.',
        }),
        maxConnections: Type.Integer({
          minimum: 0,
          default: 0,
          description:
            'Authenticated sockets at most; 0: as many as the open-file limit allows, less a reserve and the room kept for maxPendingConnections.',
        }),
      },
      'Rate and size limits.',
    ),
    socketio: Obj(
      {
        path: Type.String({ default: '/socket.io/', pattern: '^/.*/$', description: "Socket.IO path (the client's `path` option)." }),
        pingIntervalMs: Ms(
          25000,
          'Engine.IO pingInterval (a gateway pings the websockets it carries over edge links with it: keep it equal on gateways and ws nodes).',
        ),
        pingTimeoutMs: Ms(20000, 'Engine.IO pingTimeout (as pingIntervalMs: the same on gateways and ws nodes).'),
        connectTimeoutMs: Type.Integer({
          minimum: 100,
          default: 5000,
          description:
            "A session that has not sent the Socket.IO CONNECT this long after its handshake is closed (Socket.IO's own default is 45 s; a few seconds keep unauthenticated sessions from piling up).",
        }),
        agentHistorySize: Type.Integer({
          minimum: 100,
          default: 10000,
          description: 'Events kept per tenant agent stream for recovery.',
        }),
        recoveryMaxMessages: Type.Integer({ minimum: 1, default: 1000, description: 'Largest replay per recovery.' }),
      },
      'Real time.',
    ),
    presence: Obj(
      {
        heartbeatMs: Ms(10000, 'How often a node re-asserts its connections.'),
        nodeTimeoutMs: Ms(30000, 'Connections of a node silent this long are swept.'),
        offlineGraceMs: Ms(10000, '`offline` is published only after this grace period.'),
      },
      'Presence.',
    ),
    email: Obj(
      {
        smtp: Type.Optional(
          Type.String({
            pattern: '^smtps?://',
            description:
              'SMTP server for agent replies emailed to visitors who left (smtp:// with STARTTLS when offered, smtps:// for TLS; user:password in the URL). Unset: no email is ever sent.',
          }),
        ),
        from: Type.Optional(
          Type.String({ minLength: 3, description: 'The From address (required with smtp); a tenant’s senderName is shown as its name.' }),
        ),
        publicUrl: Type.Optional(
          Type.String({
            pattern: '^https?://',
            description: "chatd's public base URL as visitors reach it: the unsubscribe link points there (required with smtp).",
          }),
        ),
        secret: Type.Optional(
          Type.String({
            minLength: 16,
            description:
              'HMAC key signing unsubscribe links and reply addresses (use ${ENV_VAR}); default: auth.jwtSecret. Changing it invalidates links already sent.',
          }),
        ),
        visitorDelaySeconds: Type.Integer({
          minimum: 0,
          default: 120,
          description:
            'An agent reply is emailed this long after the first reply not yet emailed, if the visitor still has no socket: a visitor who is there reads it in the widget instead.',
        }),
        notifyDelaySeconds: Type.Integer({
          minimum: 0,
          default: 60,
          description:
            'A tenant notification (tenants[].email.notifyAddress) is sent this long after the first visitor message not yet notified; later ones join it, so a visitor writing several lines makes one email.',
        }),
        pollMs: Ms(2000, 'How often each api node looks for due emails (the emails’ lag at most).'),
        retryBaseMs: Type.Integer({
          minimum: 1,
          default: 5000,
          description: 'First retry after an SMTP failure; each next one waits twice as long.',
        }),
        retryMaxDelayMs: Type.Integer({ minimum: 1, default: 600000, description: 'Longest wait between two attempts.' }),
        retryWindowMs: Ms(86400000, 'How long a failing email is retried before it is recorded as failed.'),
        inboundSecret: Type.Optional(
          Type.String({
            minLength: 16,
            description:
              'Bearer secret your inbound-mail provider sends to POST /api/chat/inbound-email with the replies it receives (use ${ENV_VAR}). Unset: replies by email are off and the endpoint answers 404.',
          }),
        ),
        replyDomain: Type.Optional(
          Type.String({
            pattern: '^[A-Za-z0-9.-]+$',
            description:
              'The domain of reply addresses (`reply+<signed token>@replyDomain`) put in Reply-To; its mail must reach your provider’s inbound webhook. Required with inboundSecret.',
          }),
        ),
      },
      'Offline continuity: agent replies emailed to visitors who left, and tenant notifications. Off unless smtp is set.',
    ),
    webhooks: Obj(
      {
        streamMaxLen: Type.Integer({
          minimum: 1000,
          default: 100000,
          description: 'MAXLEN ~ of meta:webhook_jobs: size as peak messages/s × retry window.',
        }),
        timeoutMs: Ms(5000, 'Per-delivery timeout.'),
        retryWindowMs: Ms(3600000, 'How long a failing delivery is retried.'),
        concurrencyPerEndpoint: Type.Integer({ minimum: 1, maximum: 256, default: 8, description: 'Deliveries in flight per endpoint.' }),
        retryBaseMs: Type.Integer({
          minimum: 1,
          default: 1000,
          description: 'First retry after about this long (0.5–1×); each next one waits about twice as long.',
        }),
        retryMaxDelayMs: Type.Integer({
          minimum: 1,
          default: 600000,
          description: 'Longest wait between two attempts (unless Retry-After asks for more).',
        }),
        claimIdleMs: Type.Optional(
          Type.Integer({
            minimum: 1,
            description:
              'Jobs left pending by a dispatcher that stopped are taken over after this long (default: 2 × timeoutMs + 5000; must exceed timeoutMs).',
          }),
        ),
        deadMaxLen: Type.Integer({
          minimum: 100,
          default: 100000,
          description: 'MAXLEN ~ of meta:webhook_dead (dead deliveries kept for replay).',
        }),
      },
      'Webhook delivery.',
    ),
    upstreams: Obj(
      {
        api: Type.Array(Type.String({ pattern: '^https?://' }), { default: [], description: 'api nodes (BACKEND_API_URL).' }),
        ws: Type.Array(Type.String({ pattern: '^https?://' }), { default: [], description: 'ws nodes (BACKEND_WS_URL).' }),
        healthCheckIntervalMs: Ms(2000, 'How often the gateway probes /readyz.'),
        requestTimeoutMs: Ms(15000, 'Upstream request timeout.'),
      },
      'Where the gateway routes.',
    ),
    demo: Obj(
      {
        enabled: Type.Union([Type.Literal('auto'), Type.Boolean()], {
          default: 'auto',
          description: 'Serve /demo: auto = on with the embedded defaults, off otherwise.',
        }),
      },
      'The demo widget and agent console.',
    ),
  },
  { additionalProperties: false, description: 'chatd configuration (chat-server.yaml).' },
);

export type Config = Static<typeof ConfigSchema>;
export type TenantConfig = Static<typeof TenantSchema>;
export type BusinessHoursConfig = Static<typeof BusinessHoursSchema>;
export type ApiKeyConfig = Static<typeof ApiKeySchema>;
export type WebhookEndpointConfig = Static<typeof WebhookEndpointSchema>;
export type Role = Static<typeof RoleSchema>;
export const ROLES: readonly Role[] = ['gateway', 'api', 'ws'];
