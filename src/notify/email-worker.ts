// Agent replies emailed to visitors who left (DESIGN.md "Offline continuity"). Emails are jobs:
// an agent reply schedules its conversation's job `email.visitorDelaySeconds` later
// (`schedule`); every node with the database polls for due jobs, leasing each to one node
// (OfflineStore.claimDueEmails: FOR UPDATE SKIP LOCKED and a lease id), and for each:
//   - the visitor has a socket on some node again → nothing to email (the job ends);
//   - the agent messages after what was emailed and what the visitor read are rendered into one
//     email (text and HTML) to the conversation's contact address, unless it has none or it
//     unsubscribed;
//   - sent → recorded with the seq it covers, so a retry never sends it again; a 5xx refusal →
//     recorded as failed (chatd_emails_total{result="failed"}, `chatd emails ls --failed`); any
//     other failure (SMTP down, a 4xx) → retried with backoff until email.retryWindowMs.
// Tenant notifications take the same path as jobs of another kind ('tenant'): a visitor message
// accepted while the tenant is not available (notifyTenant) schedules one, due after
// email.notifyDelaySeconds; it carries the visitor messages no agent answered and no earlier
// notification carried, to tenants[].email.notifyAddress.
// The window left: an SMTP server that accepted the email while this node died before recording
// it. The retry then sends it again, with the same Message-ID, which mail systems use to drop the
// duplicate.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { TenantDirectory } from '../auth/tenants.js';
import { availabilityOf } from '../chat/availability.js';
import type { ChatMessage } from '../chat/message.js';
import type { Config } from '../config/schema.js';
import type { ClaimedEmailJob, MessageStore, OfflineStore } from '../db/ports.js';
import { promClient, registry } from '../observability/metrics.js';
import type { AgentPresenceStore, PresenceStore } from '../store/ports.js';
import { renderNotifyEmail, renderReplyEmail, type RenderedEmail } from './reply-email.js';
import { signToken } from './signed-token.js';
import { replyAddress } from './inbound-email.js';

/** The part of a nodemailer transport the worker uses. */
export interface MailTransport {
  sendMail(mail: {
    from: { name: string; address: string };
    to: string;
    subject: string;
    text: string;
    html: string;
    messageId: string;
    headers: Record<string, string>;
    replyTo?: string;
  }): Promise<unknown>;
  close(): void;
}

/** One email ready to send: its recipient, the messages it covers, and what it says. */
interface Outgoing {
  readonly recipient: string;
  readonly senderName: string;
  readonly messages: readonly ChatMessage[];
  readonly rendered: RenderedEmail;
  readonly headers: Record<string, string>;
  readonly replyTo?: string;
}

export interface EmailWorkerOptions {
  readonly email: Config['email'] & { readonly secret: string; readonly from: string; readonly publicUrl: string };
  readonly offline: OfflineStore;
  readonly messages: Pick<MessageStore, 'history'>;
  readonly presence: Pick<PresenceStore, 'isOnline'>;
  /** The tenant's agents online (availability, for tenant notifications). */
  readonly agents: Pick<AgentPresenceStore, 'count'>;
  readonly tenants: () => TenantDirectory;
  readonly transport: MailTransport;
  readonly logger: Logger;
}

const emails = new promClient.Counter({
  name: 'chatd_emails_total',
  help: 'Visitor reply emails and tenant notifications by result: sent, failed (refused for good), retry (SMTP failure, will retry), skipped (visitor back, no address, unsubscribed, nothing unread; for notifications: tenant available, answered).',
  labelNames: ['result', 'reason'] as const,
  registers: [registry],
});

/** Jobs leased per poll, and how long a lease lasts (longer than one SMTP exchange takes). */
const BATCH = 10;
const LEASE_MS = 120_000;
/** Agent messages in one email at most (older unread ones first). */
const MAX_MESSAGES = 50;

export const UNSUBSCRIBE_PURPOSE = 'unsubscribe';

/** The wait before attempt `attempt + 1` (attempt ≥ 1). */
export function retryDelayMs(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30));
}

/** A 5xx reply of the SMTP server (or a recipient refused for good): retrying would not help. */
const permanent = (err: unknown) => {
  const code = (err as { responseCode?: unknown }).responseCode;
  return typeof code === 'number' && code >= 500 && code < 600;
};

export class EmailWorker {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly host: string;

  constructor(private readonly opts: EmailWorkerOptions) {
    this.host = new URL(opts.email.publicUrl).hostname || 'chatd';
  }

  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => void this.tick(), Math.max(10, this.opts.email.pollMs));
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
    this.opts.transport.close();
  }

  /** An agent's message was stored: its conversation's email is due after the visitor delay. */
  schedule(message: ChatMessage): void {
    const due = new Date(Date.now() + this.opts.email.visitorDelaySeconds * 1000);
    this.opts.offline.scheduleEmail(message.tenantId, message.sessionId, due).catch((err: unknown) => {
      this.opts.logger.warn({ err, tenantId: message.tenantId }, 'reply email could not be scheduled');
    });
  }

  /**
   * A visitor's message was stored: when its tenant has a notifyAddress and is not available now
   * (out of business hours, or no agent online), the conversation's notification is due after
   * email.notifyDelaySeconds (later messages join it).
   */
  async notifyTenant(message: ChatMessage): Promise<void> {
    const tenant = this.opts.tenants().get(message.tenantId);
    if (!tenant?.email?.notifyAddress) return;
    try {
      const agents = await this.opts.agents.count(message.tenantId);
      if (availabilityOf(tenant.availability, agents, Date.now()).available) {
        emails.inc({ result: 'skipped', reason: 'available' });
        return;
      }
      const due = new Date(Date.now() + this.opts.email.notifyDelaySeconds * 1000);
      await this.opts.offline.scheduleEmail(message.tenantId, message.sessionId, due, 'tenant');
    } catch (err) {
      this.opts.logger.warn({ err, tenantId: message.tenantId }, 'tenant notification could not be scheduled');
    }
  }

  /** One poll now (the timer calls it; tests too). */
  tick(): Promise<void> {
    this.running ??= this.poll().finally(() => (this.running = undefined));
    return this.running;
  }

  private async poll(): Promise<void> {
    while (!this.stopped) {
      let jobs: ClaimedEmailJob[];
      try {
        jobs = await this.opts.offline.claimDueEmails(BATCH, LEASE_MS);
      } catch (err) {
        this.opts.logger.warn({ err }, 'due emails could not be read');
        return;
      }
      for (const job of jobs) {
        try {
          await this.run(job);
        } catch (err) {
          // The database failed mid-way: the lease expires and another poll takes the job again.
          this.opts.logger.warn({ err, tenantId: job.tenantId }, 'reply email job failed; retried when its lease expires');
        }
      }
      if (jobs.length < BATCH) return;
    }
  }

  private skip(job: ClaimedEmailJob, reason: string, upToSeq: number) {
    emails.inc({ result: 'skipped', reason });
    return this.opts.offline.recordEmail(job, { kind: 'nothing', upToSeq }, this.delayMs(job));
  }

  /** The debounce window of a job's kind. */
  private delayMs(job: Pick<ClaimedEmailJob, 'kind'>): number {
    return (job.kind === 'tenant' ? this.opts.email.notifyDelaySeconds : this.opts.email.visitorDelaySeconds) * 1000;
  }

  private async run(job: ClaimedEmailJob): Promise<void> {
    const mail = job.kind === 'tenant' ? await this.tenantNotification(job) : await this.visitorReplies(job);
    if (mail) await this.deliver(job, mail);
  }

  /** The agent replies the visitor has not read, or undefined when there is nothing to send (recorded). */
  private async visitorReplies(job: ClaimedEmailJob): Promise<Outgoing | undefined> {
    const { offline, email } = this.opts;
    if (await this.opts.presence.isOnline(job.tenantId, job.userId ?? job.sessionId)) {
      emails.inc({ result: 'skipped', reason: 'visitor_back' });
      await offline.cancelEmail(job, this.delayMs(job));
      return undefined;
    }
    const after = Math.max(job.emailedSeq, job.visitorReadSeq);
    const messages = await offline.agentMessagesAfter(job.tenantId, job.sessionId, after, MAX_MESSAGES);
    if (messages.length === 0) return void (await this.skip(job, 'nothing_unread', job.emailedSeq));
    // Without an address (or opted out) nothing is marked emailed: an address given later gets them.
    if (!job.contact) return void (await this.skip(job, 'no_address', job.emailedSeq));
    const recipient = job.contact.email;
    if (await offline.isUnsubscribed(job.tenantId, recipient)) return void (await this.skip(job, 'unsubscribed', job.emailedSeq));

    const tenant = this.opts.tenants().get(job.tenantId);
    const senderName = tenant?.email?.senderName ?? tenant?.name ?? job.tenantId;
    const token = signToken(email.secret, UNSUBSCRIBE_PURPOSE, [job.tenantId, recipient.toLowerCase()]);
    const unsubscribeUrl = `${email.publicUrl.replace(/\/+$/, '')}/webchat/unsubscribe/${token}`;
    const rendered = renderReplyEmail({
      senderName,
      subject: tenant?.email?.subject,
      intro: tenant?.email?.intro,
      visitorName: job.contact.name,
      messages,
      pageUrl: await this.pageOf(job),
      unsubscribeUrl,
      acceptsReplies: email.replyDomain !== undefined && email.inboundSecret !== undefined,
    });
    const replyTo =
      email.replyDomain && email.inboundSecret ? replyAddress(email.secret, email.replyDomain, job.conversationId) : undefined;
    return {
      recipient,
      senderName,
      messages,
      rendered,
      headers: { 'List-Unsubscribe': `<${unsubscribeUrl}>`, 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' },
      ...(replyTo ? { replyTo } : {}),
    };
  }

  /**
   * The visitor messages not answered and not notified yet, for the tenant's notifyAddress, or
   * undefined when there is nothing to send (recorded). An agent who answered meanwhile has seen them.
   */
  private async tenantNotification(job: ClaimedEmailJob): Promise<Outgoing | undefined> {
    const tenant = this.opts.tenants().get(job.tenantId);
    const recipient = tenant?.email?.notifyAddress;
    // The address was removed from the config since the message: nothing to notify.
    if (!recipient) return void (await this.skip(job, 'no_address', job.emailedSeq));
    const messages = await this.opts.offline.unansweredVisitorMessagesAfter(job.tenantId, job.sessionId, job.emailedSeq, MAX_MESSAGES);
    if (messages.length === 0) return void (await this.skip(job, 'answered', job.emailedSeq));
    const senderName = tenant.email?.senderName ?? tenant.name;
    const template = tenant.email?.consoleUrl ?? `${this.opts.email.publicUrl.replace(/\/+$/, '')}/demo/agent`;
    const consoleUrl = template
      .replaceAll('{tenantId}', encodeURIComponent(job.tenantId))
      .replaceAll('{sessionId}', encodeURIComponent(job.sessionId));
    const rendered = renderNotifyEmail({
      tenantName: tenant.name,
      sessionId: job.sessionId,
      visitor: job.contact ?? undefined,
      messages,
      pageUrl: await this.pageOf(job),
      consoleUrl,
    });
    // Answering the notification writes to the visitor when they left an address.
    return { recipient, senderName, messages, rendered, headers: {}, ...(job.contact ? { replyTo: job.contact.email } : {}) };
  }

  private async deliver(job: ClaimedEmailJob, mail: Outgoing): Promise<void> {
    const { offline, email } = this.opts;
    const { recipient, messages, rendered } = mail;
    const firstSeq = messages[0]!.seq;
    const upToSeq = messages[messages.length - 1]!.seq;
    // The same email (same conversation, kind and messages) always has the same Message-ID.
    const kind = job.kind === 'visitor' ? '' : `${job.kind}\n`;
    const id = createHash('sha256').update(`${kind}${job.tenantId}\n${job.sessionId}\n${firstSeq}-${upToSeq}`).digest('hex').slice(0, 32);
    const what = job.kind === 'tenant' ? 'tenant notification' : 'reply email';
    try {
      await this.opts.transport.sendMail({
        from: { name: mail.senderName, address: email.from },
        to: recipient,
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
        messageId: `<${id}@${this.host}>`,
        headers: mail.headers,
        ...(mail.replyTo ? { replyTo: mail.replyTo } : {}),
      });
    } catch (err) {
      const error = (err as Error).message ?? String(err);
      const outcome = { kind: 'failed' as const, recipient, firstSeq, upToSeq, messages: messages.length, error };
      if (permanent(err)) {
        emails.inc({ result: 'failed', reason: 'refused' });
        this.opts.logger.warn({ tenantId: job.tenantId, error }, `${what} refused by the SMTP server; recorded as failed`);
        await offline.recordEmail(job, outcome, this.delayMs(job));
        return;
      }
      let waited = 0;
      for (let a = 1; a < job.attempts; a++) waited += retryDelayMs(a, email.retryBaseMs, email.retryMaxDelayMs);
      if (waited >= email.retryWindowMs) {
        emails.inc({ result: 'failed', reason: 'retry_window_exhausted' });
        await offline.recordEmail(job, outcome, this.delayMs(job));
        return;
      }
      emails.inc({ result: 'retry', reason: 'smtp_error' });
      this.opts.logger.warn({ tenantId: job.tenantId, error, attempt: job.attempts }, `${what} not sent; retried with backoff`);
      await offline.retryEmail(job, new Date(Date.now() + retryDelayMs(job.attempts, email.retryBaseMs, email.retryMaxDelayMs)), error);
      return;
    }
    emails.inc({ result: 'sent', reason: '' });
    if (!(await offline.recordEmail(job, { kind: 'sent', recipient, firstSeq, upToSeq, messages: messages.length }, this.delayMs(job)))) {
      this.opts.logger.warn({ tenantId: job.tenantId }, `${what} sent after its lease expired; another node may send it again`);
    }
  }

  /** The page the visitor was on: the newest visitor message's `meta.url`. */
  private async pageOf(job: ClaimedEmailJob): Promise<string | undefined> {
    const page = await this.opts.messages.history({ tenantId: job.tenantId, sessionId: job.sessionId, limit: 50 });
    for (let i = page.messages.length - 1; i >= 0; i--) {
      const m = page.messages[i]!;
      if (m.sender.type !== 'agent' && m.sender.type !== 'system' && m.meta.url) return m.meta.url;
    }
    return undefined;
  }
}
