// Reading the newest entries of `meta:webhook_jobs` and those after an entry, through the
// WebhookStream port: shared by `chatd webhooks tail` (on Redis directly) and the admin endpoint
// the CLI asks on the embedded defaults.
import type { WebhookJob, WebhookStream } from '../store/ports.js';

/** A stream entry id: `<ms>-<seq>`. */
export const STREAM_ID = /^[0-9]{1,20}-[0-9]{1,20}$/;
/** The most entries one tail read returns. */
export const MAX_TAIL_COUNT = 1000;

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
