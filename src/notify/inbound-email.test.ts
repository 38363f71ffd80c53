// Reading inbound-mail webhooks and stripping the quoted history of a reply.
import { describe, expect, it } from 'vitest';
import { conversationOf, parseInbound, replyAddress, stripQuoted } from './inbound-email.js';

describe('inbound email', () => {
  it('strips the quoted history in its usual forms', () => {
    expect(stripQuoted('Thanks!\n\nOn Mon, 7 Dec 2026 at 10:00, Acme <a@b.example> wrote:\n> old')).toBe('Thanks!');
    expect(stripQuoted('Yes\r\nOn Mon, 7 Dec 2026, Acme\r\nwrote:\r\n> old')).toBe('Yes');
    expect(stripQuoted('Sure\n-----Original Message-----\nFrom: x')).toBe('Sure');
    expect(stripQuoted('Ok\nFrom: Acme <a@b.example>\nSent: Monday\n\nold')).toBe('Ok');
    expect(stripQuoted('> all quoted')).toBe('');
    expect(stripQuoted('two\nlines')).toBe('two\nlines');
  });

  it('reads Postmark, Mailgun and plain shapes, and finds the signed reply address only', () => {
    const secret = 'inbound-test-secret-0123456789';
    const id = '3f2b8c1e-6a7d-4e2f-9b1c-0d9e8f7a6b5c';
    const addr = replyAddress(secret, 'reply.example', id);
    expect(addr.split('@')[0]!.length).toBeLessThanOrEqual(64);
    const postmark = parseInbound({ ToFull: [{ Email: addr }], From: 'a@b.example', TextBody: 'Hi\n> q', MessageID: 'm1' })!;
    expect(postmark).toEqual({ recipients: [addr], from: 'a@b.example', text: 'Hi', messageId: 'm1' });
    expect(conversationOf(secret, postmark)).toBe(id);
    const mailgun = parseInbound({
      recipient: `Support <${addr.toUpperCase()}>`,
      sender: 'a@b.example',
      'stripped-text': 'Yes',
      'body-plain': 'Yes\n> q',
    })!;
    expect(mailgun.text).toBe('Yes');
    expect(conversationOf(secret, mailgun)).toBe(id);
    expect(conversationOf('another-secret-0123456789', mailgun)).toBeUndefined();
    expect(
      conversationOf(secret, parseInbound({ to: `r-${'0'.repeat(20)}-${id.replaceAll('-', '')}@reply.example`, text: 'x' })!),
    ).toBeUndefined();
    expect(parseInbound({ to: addr })).toBeUndefined();
    expect(parseInbound('nope')).toBeUndefined();
  });
});
