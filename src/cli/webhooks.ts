// `chatd webhooks tail [--follow] [--json] [-n N]`: the newest entries of `meta:webhook_jobs` (one per
// accepted message), then with --follow every new one until Ctrl-C. Reads Redis when the config
// points at it, else the running server's memory store through its admin listener
// (GET /admin/webhooks/jobs, registered below). Output: a table; --json prints an array, or with
// --follow one JSON object per line (NDJSON), payload parsed.
import type { Command } from 'commander';
import type { AdminContext, AdminRoutes } from '../app/serve.js';
import { ChatdError } from '../errors.js';
import { engineOf } from '../store/index.js';
import type { WebhookJob, WebhookStream } from '../store/ports.js';
import { adminGet, withStore } from './admin-client.js';
import { action, CliError, globals, loadCliConfig, printJson, printTable } from './common.js';

const STREAM_ID = /^[0-9]{1,20}-[0-9]{1,20}$/;
const MAX_COUNT = 1000;
/** How long one admin long-poll waits for a new entry. */
const FOLLOW_WAIT_MS = 20_000;

/**
 * The newest `n` entries, oldest first. The port reads ranges forward only, so this searches the
 * entry ids (`<ms>-<seq>`) by time: O(log(time span)) small reads instead of reading the stream.
 */
export async function newestJobs(stream: Pick<WebhookStream, 'range'>, n: number, nowMs = Date.now()): Promise<WebhookJob[]> {
  if (n <= 0) return []; // (COUNT 0 means "no limit" to some readers)
  const head = await stream.range('-', '+', n + 1);
  if (head.length <= n) return head;
  const msOf = (id: string) => Number(id.slice(0, id.indexOf('-')));
  // lo: more than n entries from lo on; hi: at most n entries from hi on.
  let lo = msOf(head[0]!.id);
  let hi = Math.max(nowMs, lo) + 1;
  while ((await stream.range(`${hi}-0`, '+', n + 1)).length > n) [lo, hi] = [hi, hi + (hi - lo) * 2 + 1000];
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if ((await stream.range(`${mid}-0`, '+', n + 1)).length > n) lo = mid;
    else hi = mid;
  }
  const tail = await stream.range(`${hi}-0`, '+', n);
  if (tail.length >= n) return tail;
  // The rest comes from millisecond `lo`, which may hold many entries.
  const sameMs = await stream.range(String(lo), String(lo), 100_000);
  return [...sameMs.slice(Math.max(0, sameMs.length - (n - tail.length))), ...tail];
}

/** Entries after `afterId` (exclusive), oldest first, at most `count`. */
export async function jobsAfter(stream: Pick<WebhookStream, 'range'>, afterId: string, count: number): Promise<WebhookJob[]> {
  if (count <= 0) return [];
  const page = await stream.range(afterId, '+', count + 1);
  return (page[0]?.id === afterId ? page.slice(1) : page).slice(0, count);
}

interface JobView {
  readonly id: string;
  readonly type: string;
  readonly tenantId: string;
  readonly sessionId: string;
  readonly messageId: string;
  readonly createdAt: string;
  readonly payload: unknown;
}

const view = (j: WebhookJob): JobView => {
  let payload: unknown = j.payload;
  try {
    payload = JSON.parse(j.payload);
  } catch {
    /* shown as stored */
  }
  return { id: j.id, type: j.type, tenantId: j.tenantId, sessionId: j.sessionId, messageId: j.messageId, createdAt: j.createdAt, payload };
};

const COLUMNS = ['id', 'createdAt', 'tenantId', 'sessionId', 'messageId', 'text'] as const;
const row = (j: JobView) => {
  const text = (j.payload as { text?: unknown } | null)?.text;
  const s = typeof text === 'string' ? text.replace(/\s+/g, ' ') : '';
  return { ...j, text: s.length > 40 ? `${s.slice(0, 39)}…` : s };
};

interface TailOptions {
  follow?: boolean;
  count: string;
  adminUrl?: string;
}

/** Where the entries come from: Redis directly, or the running server's admin listener. */
interface Source {
  newest(n: number): Promise<WebhookJob[]>;
  /** Calls onBatch with new entries after `afterId` until the signal aborts. */
  follow(afterId: string, onBatch: (jobs: WebhookJob[]) => void, signal: AbortSignal): Promise<void>;
}

export function registerWebhookCommands(program: Command): void {
  // Other modules may add subcommands to `webhooks` (dead, replay): share one parent command.
  const webhooks =
    program.commands.find((c) => c.name() === 'webhooks') ??
    program.command('webhooks').description('The webhook job stream and deliveries.');
  webhooks
    .command('tail')
    .description('Show the newest entries of meta:webhook_jobs (one per accepted message); --follow waits for new ones.')
    .option('-f, --follow', 'keep printing new entries until interrupted')
    .option('-n, --count <n>', 'how many of the newest entries to show first', '20')
    .option('--admin-url <url>', 'admin listener of the running server (default: admin.host:admin.port)')
    .addHelpText('after', '\nExamples:\n  $ chatd webhooks tail -n 50\n  $ chatd webhooks tail --follow --json | jq .messageId')
    .action(
      action(async (opts: TailOptions, cmd: Command) => {
        const n = Number(opts.count);
        if (!Number.isInteger(n) || n < 0 || n > MAX_COUNT) throw new CliError(`--count must be an integer from 0 to ${MAX_COUNT}`);
        const json = globals(cmd).json === true;
        const { config } = await loadCliConfig(cmd);
        const run = async (source: Source) => {
          const first = (await source.newest(n)).map(view);
          if (!opts.follow) {
            if (json) printJson(first);
            else if (first.length === 0) process.stdout.write('meta:webhook_jobs is empty\n');
            else printTable(first.map(row), COLUMNS);
            return;
          }
          const print = streamPrinter(json);
          first.forEach(print);
          const ac = new AbortController();
          const stop = () => ac.abort();
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
          try {
            await source.follow(first.at(-1)?.id ?? (await lastId(source)), (jobs) => jobs.map(view).forEach(print), ac.signal);
          } finally {
            process.off('SIGINT', stop);
            process.off('SIGTERM', stop);
          }
        };
        if (engineOf(config).shared) {
          await withStore(config, (store) =>
            run({
              newest: (k) => newestJobs(store.webhooks, k),
              follow: (after, onBatch, signal) => store.webhooks.follow(after, (j) => onBatch([j]), signal),
            }),
          );
          return;
        }
        await run({
          newest: async (k) => (await adminGet<{ jobs: WebhookJob[] }>(config, `/admin/webhooks/jobs?count=${k}`, opts)).jobs,
          async follow(after, onBatch, signal) {
            let cursor = after;
            while (!signal.aborted) {
              let jobs: WebhookJob[];
              try {
                const q = `/admin/webhooks/jobs?after=${encodeURIComponent(cursor)}&count=100&waitMs=${FOLLOW_WAIT_MS}`;
                jobs = (await adminGet<{ jobs: WebhookJob[] }>(config, q, { ...opts, signal })).jobs;
              } catch (err) {
                if (signal.aborted) return;
                throw err;
              }
              if (jobs.length > 0) {
                cursor = jobs[jobs.length - 1]!.id;
                onBatch(jobs);
              }
            }
          },
        });
      }),
    );
}

/** With nothing shown yet, follow from the current end of the stream. */
async function lastId(source: Source): Promise<string> {
  return (await source.newest(1))[0]?.id ?? '0-0';
}

function streamPrinter(json: boolean): (j: JobView) => void {
  if (json) return (j) => process.stdout.write(`${JSON.stringify(j)}\n`);
  const widths = [21, 24, 16, 24, 36];
  let header = false;
  return (j) => {
    const r = row(j);
    const cells = COLUMNS.map((c) => String(r[c]));
    const line = (vals: string[]) =>
      vals
        .map((v, i) => (i < widths.length ? v.padEnd(widths[i]!) : v))
        .join('  ')
        .trimEnd();
    if (!header) {
      process.stdout.write(`${line(COLUMNS.map((c) => c.toUpperCase()))}\n`);
      header = true;
    }
    process.stdout.write(`${line(cells)}\n`);
  };
}

/**
 * GET /admin/webhooks/jobs?count=N → { jobs } the newest N (oldest first);
 * GET /admin/webhooks/jobs?after=ID&count=N&waitMs=W → { jobs } after ID, waiting up to W ms for one.
 */
export function webhookTailAdminEndpoints(admin: AdminRoutes, ctx: AdminContext): void {
  admin.route('GET', '/admin/webhooks/jobs', async (req) => {
    const count = intParam(req.query.get('count'), 'count', 20, 0, MAX_COUNT);
    const waitMs = intParam(req.query.get('waitMs'), 'waitMs', 0, 0, 60_000);
    const after = req.query.get('after');
    if (after !== null && !STREAM_ID.test(after)) {
      throw new ChatdError('validation_failed', 'after must be a stream entry id (ms-seq)', {
        details: [{ path: 'after', message: 'not an entry id' }],
      });
    }
    const { store } = await ctx.services();
    if (after === null) return { body: { jobs: await newestJobs(store.webhooks, count) } };
    let jobs = await jobsAfter(store.webhooks, after, count);
    if (jobs.length === 0 && waitMs > 0) {
      // Long-poll: follow from `after` until the first entry arrives (plus a moment to batch) or time runs out.
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), waitMs);
      let batching: NodeJS.Timeout | undefined;
      await store.webhooks.follow(
        after,
        () => {
          batching ??= setTimeout(() => ac.abort(), 20);
        },
        ac.signal,
      );
      clearTimeout(timer);
      clearTimeout(batching);
      jobs = await jobsAfter(store.webhooks, after, count);
    }
    return { body: { jobs } };
  });
}

function intParam(raw: string | null, name: string, def: number, min: number, max: number): number {
  if (raw === null) return def;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new ChatdError('validation_failed', `${name} must be an integer from ${min} to ${max}`, {
      details: [{ path: name, message: 'out of range' }],
    });
  }
  return v;
}
