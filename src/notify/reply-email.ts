// The email a visitor gets with agent replies they have not read: plain text and HTML, the
// tenant's sender name, subject and intro, a link back to the page of the conversation, and the
// unsubscribe link (also as List-Unsubscribe).
import type { ChatMessage } from '../chat/message.js';

export interface ReplyEmailInput {
  readonly senderName: string;
  readonly subject?: string | undefined;
  readonly intro?: string | undefined;
  readonly visitorName?: string | undefined;
  readonly messages: readonly ChatMessage[];
  /** The page the visitor was on (the conversation's last `meta.url`), if any. */
  readonly pageUrl?: string | undefined;
  readonly unsubscribeUrl: string;
  /** Replies by email come back into the conversation (inbound email is configured). */
  readonly acceptsReplies: boolean;
}

export interface RenderedEmail {
  readonly subject: string;
  readonly text: string;
  readonly html: string;
}

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** Only http(s) links are put in an email (a `javascript:` meta.url must never become a link). */
const safeUrl = (u: string | undefined) => (u && /^https?:\/\/[^\s<>"]+$/i.test(u) ? u : undefined);

export function renderReplyEmail(input: ReplyEmailInput): RenderedEmail {
  const subject = (input.subject ?? 'New reply from {senderName}').replaceAll('{senderName}', input.senderName);
  const greeting = input.visitorName ? `Hello ${input.visitorName},` : 'Hello,';
  const intro = input.intro ?? 'You have a reply to your conversation:';
  const page = safeUrl(input.pageUrl);
  const lines = input.messages.map((m) => `${m.sender.id}: ${m.text}`);
  const text = [
    greeting,
    '',
    intro,
    '',
    ...lines.flatMap((l) => [l, '']),
    ...(page ? [`Continue the conversation: ${page}`, ''] : []),
    ...(input.acceptsReplies ? ['Reply to this email to answer.', ''] : []),
    `Unsubscribe: ${input.unsubscribeUrl}`,
    '',
  ].join('\n');
  const html = [
    '<!doctype html><html><body style="font-family:sans-serif">',
    `<p>${escapeHtml(greeting)}</p>`,
    `<p>${escapeHtml(intro)}</p>`,
    ...input.messages.map(
      (m) =>
        `<blockquote style="margin:0 0 1em;padding-left:1em;border-left:3px solid #ccc"><strong>${escapeHtml(m.sender.id)}</strong>: ${escapeHtml(m.text).replaceAll('\n', '<br>')}</blockquote>`,
    ),
    ...(page ? [`<p><a href="${escapeHtml(page)}">Continue the conversation</a></p>`] : []),
    ...(input.acceptsReplies ? ['<p>Reply to this email to answer.</p>'] : []),
    `<p style="font-size:small;color:#666"><a href="${escapeHtml(input.unsubscribeUrl)}">Unsubscribe</a></p>`,
    '</body></html>',
  ].join('\n');
  return { subject, text, html };
}

export interface NotifyEmailInput {
  readonly tenantName: string;
  readonly sessionId: string;
  /** The visitor's contact, if they left one. */
  readonly visitor?: { readonly email: string; readonly name?: string | undefined } | undefined;
  readonly messages: readonly ChatMessage[];
  readonly pageUrl?: string | undefined;
  /** Where the agent console opens the conversation. */
  readonly consoleUrl: string;
}

/** The email the tenant's notification address gets when a visitor wrote while nobody was available. */
export function renderNotifyEmail(input: NotifyEmailInput): RenderedEmail {
  const who = input.visitor ? (input.visitor.name ? `${input.visitor.name} <${input.visitor.email}>` : input.visitor.email) : 'A visitor';
  const n = input.messages.length;
  const subject = `${n === 1 ? 'New message' : `${n} new messages`} from ${who} (${input.tenantName})`;
  const intro = `${who} wrote while nobody was available (conversation ${input.sessionId}):`;
  const page = safeUrl(input.pageUrl);
  const console = safeUrl(input.consoleUrl);
  const text = [
    intro,
    '',
    ...input.messages.flatMap((m) => [m.text, '']),
    ...(page ? [`From the page: ${page}`, ''] : []),
    ...(console ? [`Open the conversation: ${console}`, ''] : []),
  ].join('\n');
  const html = [
    '<!doctype html><html><body style="font-family:sans-serif">',
    `<p>${escapeHtml(intro)}</p>`,
    ...input.messages.map(
      (m) =>
        `<blockquote style="margin:0 0 1em;padding-left:1em;border-left:3px solid #ccc">${escapeHtml(m.text).replaceAll('\n', '<br>')}</blockquote>`,
    ),
    ...(page ? [`<p>From the page: <a href="${escapeHtml(page)}">${escapeHtml(page)}</a></p>`] : []),
    ...(console ? [`<p><a href="${escapeHtml(console)}">Open the conversation</a></p>`] : []),
    '</body></html>',
  ].join('\n');
  return { subject, text, html };
}
