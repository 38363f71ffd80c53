// `chatd webhooks dead` and `chatd webhooks replay ID…|--all-dead`: the deliveries that ran out of
// retries (or were refused with a 4xx), and sending them again with the same delivery id. With
// Redis configured they talk to Redis directly (no server needed); with the memory store they ask
// the running server's admin listener (the dead deliveries live in its memory).
import type { Command } from 'commander';
import pino from 'pino';
import { resolveSecrets } from '../config/secrets.js';
import type { Config } from '../config/schema.js';
import { engineOf } from '../store/index.js';
import type { WebhookQueue } from '../store/ports.js';
import { listDeadDeliveries, replayDeadDeliveries, type DeadView } from '../webhooks/admin.js';
import { adminBaseUrl, withStore } from './admin-client.js';
import { action, CliError, globals, loadCliConfig, printJson, printTable } from './common.js';

/** The `webhooks` command, shared with `webhooks tail` (whichever registers first creates it). */
export function webhooksCommand(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === 'webhooks') ??
    program.command('webhooks').description('Webhook deliveries: follow them, list dead ones, replay.')
  );
}

export function registerWebhooksDeadCommands(program: Command): void {
  const webhooks = webhooksCommand(program);
  webhooks
    .command('dead')
    .description('List deliveries that ran out of retries or were refused (meta:webhook_dead), oldest first.')
    .option('--limit <n>', 'at most this many (1–1000)', '100')
    .option('--after <id>', 'only entries after this dead entry id (paging)')
    .addHelpText('after', '\nExamples:\n  $ chatd webhooks dead\n  $ chatd webhooks dead --json --limit 1000')
    .action(
      action(async (opts: { limit: string; after?: string }, cmd: Command) => {
        const limit = Number(opts.limit);
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new CliError('--limit must be an integer from 1 to 1000');
        const result = await withBackend(cmd, {
          direct: (q) => listDeadDeliveries(q, limit, opts.after),
          admin: (call) =>
            call<{ total: number; dead: DeadView[] }>(
              'GET',
              `/admin/webhooks/dead?limit=${limit}${opts.after ? `&after=${encodeURIComponent(opts.after)}` : ''}`,
            ),
        });
        if (globals(cmd).json) {
          printJson(result);
          return;
        }
        printTable(result.dead as unknown as Record<string, unknown>[], [
          'id',
          'failedAt',
          'tenantId',
          'endpointId',
          'attempts',
          'reason',
          'error',
          'deliveryId',
        ]);
        process.stdout.write(`${result.dead.length} shown, ${result.total} dead in all\n`);
      }),
    );
  webhooks
    .command('replay')
    .description('Send dead deliveries again (same X-Chatd-Delivery, a fresh retry window).')
    .argument('[ids...]', 'dead entry ids (from `chatd webhooks dead`)')
    .option('--all-dead', 'replay every dead delivery')
    .addHelpText('after', '\nExamples:\n  $ chatd webhooks replay 1764120000000-0\n  $ chatd webhooks replay --all-dead')
    .action(
      action(async (ids: string[], opts: { allDead?: boolean }, cmd: Command) => {
        const all = opts.allDead === true;
        if (all === ids.length > 0) throw new CliError('give dead entry ids or --all-dead (not both)');
        const bad = ids.find((i) => !/^[0-9]{1,20}-[0-9]{1,20}$/.test(i));
        if (bad) throw new CliError(`${bad}: not a dead entry id (expected ms-seq, as \`chatd webhooks dead\` shows)`);
        const result = await withBackend(cmd, {
          direct: (q) => replayDeadDeliveries(q, all ? 'all' : ids),
          admin: (call) =>
            call<{ replayed: string[]; notFound: string[] }>('POST', '/admin/webhooks/replay', all ? { all: true } : { ids }),
        });
        if (globals(cmd).json) printJson(result);
        else {
          process.stdout.write(`replayed ${result.replayed.length}${result.replayed.length ? `: ${result.replayed.join(' ')}` : ''}\n`);
          if (result.notFound.length) process.stdout.write(`not found: ${result.notFound.join(' ')}\n`);
        }
        if (result.notFound.length > 0) process.exitCode = 1;
      }),
    );
}

type AdminCall = <T>(method: 'GET' | 'POST', path: string, body?: unknown) => Promise<T>;

async function withBackend<T>(
  cmd: Command,
  how: { direct: (q: WebhookQueue) => Promise<T>; admin: (call: AdminCall) => Promise<T> },
): Promise<T> {
  const { config } = await loadCliConfig(cmd);
  if (engineOf(config).shared) {
    const logger = pino({ level: 'warn' }, pino.destination(2));
    return withStore(
      config,
      async (store) => {
        // No `durable`: a one-off command runs no guard beside the queue.
        const { queue } = await store.openWebhookQueue({
          logger,
          streamMaxLen: config.webhooks.streamMaxLen,
          deadMaxLen: config.webhooks.deadMaxLen,
        });
        try {
          return await how.direct(queue);
        } finally {
          await queue.close();
        }
      },
      logger,
    );
  }
  return how.admin(await adminCaller(config));
}

/** Calls the running server's admin listener with the admin token (configured or generated). */
async function adminCaller(config: Config): Promise<AdminCall> {
  if (!config.admin.enabled)
    throw new CliError('the memory store lives in the server: enable its admin listener (admin.enabled) or configure Redis');
  const { config: withSecrets } = await resolveSecrets(config, { create: false });
  const token = withSecrets.admin.token;
  if (!token) throw new CliError(`no admin token: set admin.token or start the server once (it generates one into ${config.dataDir})`);
  const base = adminBaseUrl(config);
  return async <R>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<R> => {
    let res: Response;
    try {
      res = await fetch(`${base}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (err) {
      throw new CliError(`cannot reach the server's admin listener at ${base} (is chatd serve running?): ${(err as Error).message}`);
    }
    const text = await res.text();
    const json = (text ? JSON.parse(text) : {}) as R & { error?: string };
    if (!res.ok) throw new CliError(`${base}${path}: ${res.status} ${json.error ?? text}`);
    return json;
  };
}
