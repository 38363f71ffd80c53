// The message as stored, returned over HTTP and emitted on sockets (DESIGN.md "The contract").
import type { ConversationEvent } from './conversation.js';

export type SenderType = 'visitor' | 'user' | 'agent' | 'system';

export interface Sender {
  readonly type: SenderType;
  /** visitor: the sessionId; user: the userId (claimed or verified); agent: the token's sub. */
  readonly id: string;
  readonly verified: boolean;
}

export interface MessageMeta {
  readonly domain: string;
  readonly origin: string;
  readonly url: string;
  readonly referrer: string;
  readonly siteId: string;
  readonly userInfo?: Readonly<Record<string, unknown>>;
  /** System messages only: the change they record, machine-readable. */
  readonly event?: ConversationEvent;
}

export interface ChatMessage {
  /** UUID, assigned by chatd. */
  readonly id: string;
  readonly tenantId: string;
  readonly sessionId: string;
  /** Position in the conversation: 1, 2, 3… in commit order; the conversation stream's offset. */
  readonly seq: number;
  readonly sender: Sender;
  readonly text: string;
  readonly clientMessageId?: string;
  /** ISO 8601, UTC. */
  readonly createdAt: string;
  readonly meta: MessageMeta;
}

export const emptyMeta = (): MessageMeta => ({ domain: '', origin: '', url: '', referrer: '', siteId: '' });
