// `chatd webhooks tail [--follow] [--json] [-n N]`: the newest entries of `meta:webhook_jobs` (one per
// accepted message), then with --follow every new one until Ctrl-C. Reads Redis when the config
// points at it, else the running server's memory store through its admin listener
// (GET /admin/webhooks/jobs, src/app/admin/webhook-jobs.ts). Output: a table; --json prints an array, or with
// --follow one JSON object per line (NDJSON), payload parsed.
import type { Command } from 'commander';
import { engineOf } from '../store/index.js';
import type { WebhookJob } from '../store/ports.js';
import { MAX_TAIL_COUNT, newestJobs } from '../webhooks/tail.js';
import { adminGet, withStore } from './admin-client.js';
import { action, CliError, globals, loadCliConfig, printJson, printTable } from './common.js';

/** How long one admin long-poll waits for a new entry. */
const FOLLOW_WAIT_MS = 20_000;

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

const COLUMNS = ['id', 'createdAt', 'type', 'tenantId', 'sessionId', 'messageId', 'text'] as const;
const row = (j: JobView) => {
  // message.created: the message's text; conversation.updated: the summary's status and version.
  const p = j.payload as { text?: unknown; version?: unknown; conversation?: { status?: unknown } } | null;
  const text = j.type === 'conversation.updated' ? `${String(p?.conversation?.status ?? '?')} v${String(p?.version ?? '?')}` : p?.text;
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
        if (!Number.isInteger(n) || n < 0 || n > MAX_TAIL_COUNT)
          throw new CliError(`--count must be an integer from 0 to ${MAX_TAIL_COUNT}`);
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
