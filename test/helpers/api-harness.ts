// Test harness for the api role: a real chatd (in process) on port 0, a fetch that parses JSON and
// checks every answer against the published JSON Schemas in schemas/ (the contract test), and the
// keys and tenants the tests use. Shared by the api's integration tests (Redis + PostgreSQL) and its
// end-to-end test (embedded defaults).
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { DATABASE_URL, REDIS_URL, uniquePrefix, uniqueSchema } from './services.js';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { ROLE_FACTORIES } from '../../src/app/start.js';
import { serve, type RunningServer } from '../../src/app/serve.js';
import type { Role } from '../../src/config/schema.js';
import { corsPolicyFor } from '../../src/auth/origins.js';
import { openDatabase } from '../../src/db/index.js';
import { createStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/ports.js';
import type { Database } from '../../src/db/ports.js';

const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (a: Ajv) => Ajv;
const SCHEMAS_DIR = path.resolve(__dirname, '../../schemas');

const ajv = new Ajv({ allErrors: true, strict: false });
addFormats(ajv);
const schemaCache = new Map<string, ReturnType<Ajv['compile']>>();
function validatorFor(file: string) {
  let v = schemaCache.get(file);
  if (!v) {
    v = ajv.compile(JSON.parse(readFileSync(path.join(SCHEMAS_DIR, file), 'utf8')));
    schemaCache.set(file, v);
  }
  return v;
}

/** Which published schema a 200 answer must match, by route. */
const RESPONSE_SCHEMA: Record<string, string> = {
  'POST /api/chat/anonymous-token': 'api.token.response.schema.json',
  'POST /api/chat/agent-token': 'api.token.response.schema.json',
  'POST /api/chat/broadcast': 'api.broadcast.response.schema.json',
  'POST /webchat/message': 'api.webchat-message.response.schema.json',
  'GET /api/chat/messages': 'api.messages.response.schema.json',
  'GET /api/chat/online-users': 'api.online-users.response.schema.json',
  'GET /api/chat/availability': 'api.availability.response.schema.json',
  'GET /api/chat/conversations': 'api.conversations.response.schema.json',
  'GET /api/chat/conversations/{sessionId}': 'api.conversation.response.schema.json',
  'POST /api/chat/conversations/{sessionId}/status': 'api.conversation.response.schema.json',
  'POST /api/chat/conversations/{sessionId}/assign': 'api.conversation.response.schema.json',
  'POST /webchat/contact': 'api.contact.response.schema.json',
  'POST /api/chat/inbound-email': 'api.inbound-email.response.schema.json',
};
const REQUEST_SCHEMA: Record<string, string> = {
  'POST /api/chat/anonymous-token': 'api.anonymous-token.request.schema.json',
  'POST /api/chat/agent-token': 'api.agent-token.request.schema.json',
  'POST /api/chat/broadcast': 'api.broadcast.request.schema.json',
  'POST /webchat/message': 'api.webchat-message.request.schema.json',
  'POST /api/chat/conversations/{sessionId}/status': 'api.conversation-status.request.schema.json',
  'POST /api/chat/conversations/{sessionId}/assign': 'api.conversation-assign.request.schema.json',
  'POST /webchat/contact': 'api.contact.request.schema.json',
  'POST /api/chat/inbound-email': 'api.inbound-email.request.schema.json',
};

/** The route a path answers for (the conversation's session id as a placeholder). */
const routeOf = (method: string, path: string) => `${method} ${path.replace(/^(\/api\/chat\/conversations\/)[^/]+/, '$1{sessionId}')}`;

/** Every answer checked, for the contract test's own assertion that it saw each route. */
export const contractSeen = new Set<string>();

/** Asserts a body against a published schema file; throws with Ajv's errors. */
export function assertSchema(file: string, body: unknown): void {
  const v = validatorFor(file);
  if (!v(body)) throw new Error(`${file}: ${JSON.stringify(v.errors)} for ${JSON.stringify(body).slice(0, 500)}`);
}

export interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Headers;
}

export interface CallOptions {
  token?: string | undefined;
  body?: unknown;
  headers?: Record<string, string>;
  /** Raw body (skips JSON encoding and the request schema check). */
  raw?: string;
}

/** A client for one base URL: JSON in and out, every answer checked against schemas/. */
export function client(base: string) {
  return async function call(method: 'GET' | 'POST' | 'PUT' | 'DELETE', pathAndQuery: string, opts: CallOptions = {}): Promise<Answer> {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
    let body: string | undefined;
    if (opts.raw !== undefined) body = opts.raw;
    else if (opts.body !== undefined) {
      headers['content-type'] ??= 'application/json';
      body = JSON.stringify(opts.body);
    }
    const res = await fetch(base + pathAndQuery, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      throw new Error(`${method} ${pathAndQuery}: not JSON (${res.status}): ${text.slice(0, 200)}`);
    }
    const route = routeOf(method, pathAndQuery.split('?')[0]!);
    if (res.status >= 400) {
      assertSchema('api.error.schema.json', parsed);
      contractSeen.add(`${route} error`);
    } else if (RESPONSE_SCHEMA[route]) {
      assertSchema(RESPONSE_SCHEMA[route]!, parsed);
      contractSeen.add(route);
      // A request the server accepted must also match the published request schema.
      if (REQUEST_SCHEMA[route] && opts.body !== undefined) assertSchema(REQUEST_SCHEMA[route]!, opts.body);
      if (route === 'GET /api/chat/messages') {
        for (const m of (parsed as { messages: unknown[] }).messages) assertSchema('message.schema.json', m);
      }
    }
    return { status: res.status, body: parsed, headers: res.headers };
  };
}

export const KEYS = {
  pubA: 'ck_pub_tenantA_publishable_0001',
  secA: 'ck_sec_tenantA_secret_000000001',
  pubB: 'ck_pub_tenantB_publishable_0001',
  secB: 'ck_sec_tenantB_secret_000000001',
  pubStrict: 'ck_pub_strict_publishable_00001',
} as const;
export const JWT_SECRET = 'api-test-jwt-secret-0123456789abcdef';
export const IDENTITY_SECRET = 'strict-identity-secret-0123456789';

/** Tenants A and B (A allows https://a.example), and a tenant requiring verified identities. */
export function tenantsConfig(): unknown[] {
  return [
    { id: 'tenantA', apiKeys: [{ key: KEYS.pubA }, { key: KEYS.secA, name: 'backend' }], allowedOrigins: ['https://a.example'] },
    { id: 'tenantB', apiKeys: [{ key: KEYS.pubB }, { key: KEYS.secB }], allowedOrigins: ['https://b.example'] },
    {
      id: 'strict',
      apiKeys: [{ key: KEYS.pubStrict }],
      allowedOrigins: ['https://strict.example'],
      identityVerification: 'required',
      identitySecret: IDENTITY_SECRET,
    },
  ];
}

export interface InProcessServer {
  readonly url: string;
  readonly config: Config;
  readonly server: RunningServer;
  /** The server's own store (the memory store is only reachable this way). */
  store(): Promise<Store>;
  /** The server's own database (PGlite's folder is locked by the server). */
  db(): Promise<Database>;
  stop(): Promise<void>;
}

/** Starts chatd in this process with `raw` as its config file (validated like one), roles `roles`. */
export async function startInProcess(
  raw: Record<string, unknown>,
  roles: Role[] = ['api'],
  opts: { waitReady?: boolean } = {},
): Promise<InProcessServer> {
  const cwd = await mkdtemp(path.join(tmpdir(), 'chatd-api-'));
  const { config } = await loadConfig({
    cwd,
    env: {},
    overrides: (r) => {
      Object.assign(r, { dataDir: path.join(cwd, '.chatd'), admin: { enabled: false }, log: { level: 'silent' } }, raw);
      // Every request of a suite comes from 127.0.0.1 with a handful of keys: under the default HTTP
      // buckets (50/s per IP, burst 100) a suite's pace, i.e. the machine's speed, would decide
      // whether a request is refused. Suites that test these limits set their own.
      const unlimited = { rate: 1_000_000, burst: 1_000_000 };
      r.limits = { httpPerIp: unlimited, httpPerKey: unlimited, ...(raw.limits as object | undefined) };
      r.server = { host: '127.0.0.1', port: 0, ...(raw.server as object | undefined) };
      r.roles = { api: { host: '127.0.0.1', port: 0 }, ws: { host: '127.0.0.1', port: 0 } };
    },
  });
  let store: Promise<Store> | undefined;
  let db: Promise<Database> | undefined;
  // As startChatd does, with the store captured for the tests.
  const server = await serve({
    config,
    roles,
    logger: pino({ level: 'silent' }),
    roleFactories: ROLE_FACTORIES,
    serviceFactories: {
      createStore: (c, l, n) => (store ??= createStore(c, l, n)),
      // A failed open (the database down) is retried by the server: keep the one that succeeds.
      openDatabase: (c, l) =>
        openDatabase(c, l).then((opened) => {
          db = Promise.resolve(opened);
          return opened;
        }),
    },
    cors: corsPolicyFor(config),
  });
  const port = server.ports.api ?? server.ports.public;
  // The role opens the store and the database in the background; the embedded database takes
  // seconds to create (minutes on a loaded machine). Tests start once the node is ready.
  const deadline = Date.now() + 240_000;
  while (Date.now() < deadline) {
    const r = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
    if (r?.status === 200 || opts.waitReady === false) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    config,
    server,
    store: async () => {
      const deadline = Date.now() + 60_000;
      while (!store && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      if (!store) throw new Error('the server never created its store');
      return store;
    },
    db: async () => {
      const deadline = Date.now() + 240_000;
      while (!db && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      if (!db) throw new Error('the server never opened its database');
      return db;
    },
    stop: () => server.stop(),
  };
}

/**
 * The backends every api contract suite runs on: Redis + PostgreSQL (when `ready`, each run with its
 * own key prefix and schema named after `tag`), and the embedded defaults (no redis or database URL:
 * the in-process store and an embedded PGlite in a temp data folder).
 */
export function apiBackends(tag: string, ready: boolean) {
  return [
    {
      name: 'Redis + PostgreSQL',
      enabled: ready,
      raw: () => ({
        redis: { url: REDIS_URL, prefix: uniquePrefix(tag) },
        database: { url: DATABASE_URL, schema: uniqueSchema(tag), autoMigrate: true },
      }),
    },
    { name: 'the embedded defaults (memory store + PGlite)', enabled: true, raw: () => ({}) },
  ];
}

/** An error answer: this status and code, and a message for people. */
export function expectError(r: Answer, status: number, code: string): void {
  expect({ status: r.status, code: r.body?.code }, JSON.stringify(r.body)).toEqual({ status, code });
  expect(typeof r.body.error).toBe('string');
}
