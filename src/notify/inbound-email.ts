// Replies by email, threaded back into their conversation (DESIGN.md "Offline continuity"). Each
// reply email carries `Reply-To: r-<mac>-<conversation id>@email.replyDomain`; the mac (an HMAC
// of the conversation id keyed by email.secret) means it cannot be guessed or forged. The inbound-mail provider POSTs what it
// received as JSON; this module reads the common shapes (Postmark, Mailgun, SendGrid/Cloudflare-like
// `{ to, from, text }`), finds the reply address, strips the quoted history, and hands the text to
// the one path for a message as the visitor's.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

// The token must survive mail systems that lowercase local parts and fit in 64 characters: the
// conversation's uuid (32 hex) and 20 hex of an HMAC over it, `r-<mac>-<uuid>`.
const replyMac = (secret: string, conversationId: string) =>
  createHmac('sha256', secret).update(`reply\n${conversationId}`).digest('hex').slice(0, 20);

export const replyAddress = (secret: string, domain: string, conversationId: string) =>
  `r-${replyMac(secret, conversationId)}-${conversationId.replaceAll('-', '')}@${domain}`;

export interface InboundEmail {
  /** Every recipient address the webhook names. */
  readonly recipients: string[];
  readonly from: string | undefined;
  /** The reply's own text (the provider's stripped reply when it gives one, else the whole body). */
  readonly text: string;
  /** The email's Message-ID, when given: a webhook retry appends nothing twice. */
  readonly messageId: string | undefined;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);
const addresses = (v: unknown): string[] => {
  if (typeof v === 'string') return v.match(/[^\s<>,;"']+@[^\s<>,;"']+/g) ?? [];
  if (Array.isArray(v))
    return v.flatMap((x) =>
      addresses(
        typeof x === 'object' && x !== null
          ? ((x as Record<string, unknown>).Email ?? (x as Record<string, unknown>).email ?? (x as Record<string, unknown>).address)
          : x,
      ),
    );
  return [];
};

/** Reads a provider's JSON; undefined when it has no recipient or no text. */
export function parseInbound(body: unknown): InboundEmail | undefined {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return undefined;
  const b = body as Record<string, unknown>;
  const recipients = [
    ...addresses(b.ToFull),
    ...addresses(b.To),
    ...addresses(b.to),
    ...addresses(b.recipient),
    ...addresses(b.OriginalRecipient),
    ...addresses(b.envelope && typeof b.envelope === 'object' ? (b.envelope as Record<string, unknown>).to : undefined),
  ];
  const stripped = str(b.StrippedTextReply) ?? str(b['stripped-text']);
  const text = stripped ?? str(b.TextBody) ?? str(b['body-plain']) ?? str(b.text) ?? str(b.plain);
  if (recipients.length === 0 || text === undefined) return undefined;
  const messageId = str(b.MessageID) ?? str(b['Message-Id']) ?? str(b.messageId) ?? str(b.message_id);
  return { recipients, from: str(b.From) ?? str(b.from) ?? str(b.sender), text: stripQuoted(text), messageId };
}

/**
 * The new part of a reply: everything before the quoted history (`On … wrote:`, `-----Original
 * Message-----`, a `From:` header block, or the first run of `>` lines), trimmed.
 */
export function stripQuoted(text: string): string {
  const lines = text.replace(/\r\n/g, '\n').split('\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const next = lines[i + 1] ?? '';
    if (/^\s*>/.test(line)) break;
    if (/^-{2,}\s*Original Message\s*-{2,}/i.test(line)) break;
    if (/^On .+wrote:\s*$/i.test(line) || (/^On .+/i.test(line) && /wrote:\s*$/i.test(next))) break;
    if (/^From: .+/i.test(line) && /^(Sent|Date|To): /i.test(next)) break;
    if (/^__+\s*$/.test(line)) break;
    out.push(line);
  }
  return out.join('\n').trim();
}

/** The conversation id a reply is for: the first recipient carrying a valid reply token. */
export function conversationOf(secret: string, email: InboundEmail): string | undefined {
  for (const addr of email.recipients) {
    const m = /^r-([0-9a-f]{20})-([0-9a-f]{32})@/i.exec(addr);
    if (!m) continue;
    const hex = m[2]!.toLowerCase();
    const id = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    const given = Buffer.from(m[1]!.toLowerCase());
    const want = Buffer.from(replyMac(secret, id));
    if (timingSafeEqual(given, want)) return id;
  }
  return undefined;
}

/** A clientMessageId from the email's Message-ID (idempotency across webhook retries). */
export const inboundClientMessageId = (messageId: string) => `email.${createHash('sha256').update(messageId).digest('hex').slice(0, 40)}`;
