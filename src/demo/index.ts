// The demo widget and agent console (`/demo`, `/demo/agent`): a new user runs
// `chatd serve --role all` and sees chat working in a browser without writing a widget. The pages
// are plain HTML and JavaScript inlined into the build (no CDN: socket.io-client's browser bundle
// is served from /demo/socket.io.js). They talk to chatd exactly as a real widget would: an
// anonymous token from the publishable key, Socket.IO with recovery, the HTTP history.
import type { Config } from '../config/schema.js';
import { ChatdError } from '../errors.js';
import type { HttpRouter, Req } from '../http/router.js';
import pageHtml from './static/page.html?raw';
import widgetHtml from './static/widget.html?raw';
import agentHtml from './static/agent.html?raw';
import demoCss from './static/demo.css?raw';
import commonJs from './static/common.js?raw';
import widgetJs from './static/widget.js?raw';
import agentJs from './static/agent.js?raw';
import socketIoJs from 'socket.io-client/dist/socket.io.js?raw';

/** The agent that the loopback-only demo flow signs in as. */
export const DEMO_AGENT = 'demo-agent';

export interface DemoDeps {
  /** Mints an agent token for the demo tenant (the api role's minting, so the ws role accepts it). */
  mintAgentToken(tenantId: string, userId: string): Promise<{ token: string; expiresIn: number }>;
}

/** `demo.enabled`: `auto` = on with the embedded defaults (no Redis, no PostgreSQL), off otherwise. */
export function demoEnabled(config: Config): boolean {
  if (config.demo.enabled === 'auto') return !config.redis.url && !config.redis.sentinel && !config.database.url;
  return config.demo.enabled;
}

/** Which tenant and publishable key the demo pages use. The key is public by nature (it is in every widget). */
export function demoTenant(config: Config): { tenantId: string; apiKey: string } {
  if (config.tenants.length === 0) return { tenantId: 'demo', apiKey: config.auth.gatewayApiKey ?? '' };
  const tenant = config.tenants.find((t) => t.id === config.auth.defaultTenant) ?? config.tenants[0]!;
  const key =
    config.auth.gatewayApiKey && config.auth.defaultTenant === tenant.id
      ? config.auth.gatewayApiKey
      : (tenant.apiKeys.find((k) => k.key?.startsWith('ck_pub_'))?.key ?? '');
  return { tenantId: tenant.id, apiKey: key };
}

const LOOPBACK = new Set(['127.0.0.1', '::1']);

/** A request from this machine, not relayed by a proxy (a proxy on loopback would make anyone look local). */
export function isLocalRequest(req: Pick<Req, 'ip' | 'headers'>): boolean {
  return LOOPBACK.has(req.ip) && !req.headers['x-forwarded-for'] && !req.headers.forwarded && !req.headers['x-real-ip'];
}

const SECURITY_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-cache',
};
const PAGE_HEADERS = {
  ...SECURITY_HEADERS,
  'X-Frame-Options': 'DENY',
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'",
};

/** JSON inside a <script type="application/json">: `<` escaped so no value can close the tag. */
const inlineJson = (value: unknown) => JSON.stringify(value).replace(/</g, '\\u003c');

/** Registers the demo routes on a listener that serves both the HTTP API and Socket.IO. */
export function mountDemo(router: HttpRouter, config: Config, deps: DemoDeps): void {
  const { tenantId, apiKey } = demoTenant(config);
  // emailReplies: the console tells an agent that a reply to a visitor who left (and gave an
  // address) goes out by email — true when this server sends email at all.
  const pageConfig = inlineJson({ tenantId, apiKey, socketPath: config.socketio.path, emailReplies: config.email.smtp !== undefined });
  // One page shell (head, config, the shared scripts) around each page's body and its own script.
  const page = (title: string, body: string, script: string) =>
    pageHtml
      .replace('__TITLE__', title)
      .replace('__BODY__', () => body)
      .replace('__SCRIPT__', script)
      .replace('__CHATD_CONFIG__', pageConfig);
  const widget = page('chatd demo — visitor', widgetHtml, '/demo/widget.js');
  const agent = page('chatd demo — agent console', agentHtml, '/demo/agent.js');
  const asset = (path: string, body: string, contentType: string, headers = SECURITY_HEADERS) =>
    router.get(path, () => ({ raw: body, contentType, headers }));

  // A new user opens the printed address: point `/` at the demo (no route there otherwise, a 404).
  router.get('/', () => ({
    status: 302,
    body: { demo: '/demo', agent: '/demo/agent' },
    headers: { ...SECURITY_HEADERS, Location: '/demo' },
  }));
  asset('/demo', widget, 'text/html; charset=utf-8', PAGE_HEADERS);
  asset('/demo/', widget, 'text/html; charset=utf-8', PAGE_HEADERS);
  asset('/demo/agent', agent, 'text/html; charset=utf-8', PAGE_HEADERS);
  asset('/demo/demo.css', demoCss, 'text/css; charset=utf-8');
  asset('/demo/common.js', commonJs, 'text/javascript; charset=utf-8');
  asset('/demo/widget.js', widgetJs, 'text/javascript; charset=utf-8');
  asset('/demo/agent.js', agentJs, 'text/javascript; charset=utf-8');
  asset('/demo/socket.io.js', socketIoJs, 'text/javascript; charset=utf-8');

  // The demo-only way to an agent token: answered for this machine only, never through a proxy.
  router.post('/demo/agent-token', async (req) => {
    if (!isLocalRequest(req)) {
      throw new ChatdError(
        'forbidden',
        'The demo agent token is only given to requests from this machine; use `chatd token issue --admin`',
      );
    }
    return { body: await deps.mintAgentToken(tenantId, DEMO_AGENT), headers: { 'Cache-Control': 'no-store' } };
  });
}

/** The URLs printed at start. */
export function demoUrls(baseUrl: string): { visitor: string; agent: string } {
  return { visitor: `${baseUrl}/demo`, agent: `${baseUrl}/demo/agent` };
}
