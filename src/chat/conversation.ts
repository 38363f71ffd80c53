// A conversation as the agents see it (DESIGN.md "Conversations"): the inbox summary returned over
// HTTP, carried by `conversation_updated` and the `conversation.updated` webhook, and the `meta.event`
// of the system messages that record its changes.
import type { Sender } from './message.js';

export type ConversationStatus = 'open' | 'pending' | 'resolved';

export const CONVERSATION_STATUSES: readonly ConversationStatus[] = ['open', 'pending', 'resolved'];

export interface ConversationSummary {
  readonly sessionId: string;
  readonly status: ConversationStatus;
  /** The agent id (JWT `sub`) it is assigned to. */
  readonly assignee: string | null;
  readonly visitor: {
    /** 'user' when a verified userId owns the conversation. */
    readonly type: 'visitor' | 'user';
    /** The userId for a user, the sessionId for an anonymous visitor. */
    readonly id: string;
    readonly userId?: string;
    readonly verified: boolean;
    /** From the contact the visitor gave. */
    readonly name?: string;
    readonly email?: string;
  };
  /** The newest message other than a system message (text cut to 200 characters); null before the first. */
  readonly lastMessage: {
    readonly id: string;
    readonly text: string;
    readonly sender: Sender;
    readonly createdAt: string;
  } | null;
  /** Visitor/user messages after the agents' read pointer. */
  readonly unreadCount: number;
  /** Stored messages other than system messages (retention's deletes leave the count). */
  readonly messageCount: number;
  /** From presence: the visitor has a connection now. */
  readonly online: boolean;
  readonly createdAt: string;
  readonly lastActivityAt: string;
}

/** `conversation_updated`: the summary taken in the transaction that changed the conversation. */
export interface ConversationUpdate {
  /** The event's id (its outbox row): the idempotency key of its publish and of its webhook. */
  readonly id: string;
  readonly tenantId: string;
  readonly sessionId: string;
  /**
   * One more on every change that writes the event (a message, a status or assignee change, the
   * agents' read, the contact, retention), in commit order: clients keep the highest per session.
   */
  readonly version: number;
  readonly conversation: ConversationSummary;
  /** ISO 8601: when the change was committed. */
  readonly at: string;
}

/** Who caused a change: an agent (its `sub`), a secret-key caller, or the visitor whose message reopened it. */
export interface Actor {
  readonly type: 'agent' | 'api' | 'visitor' | 'user' | 'system';
  readonly id: string;
}

/** `meta.event` of a system message: what changed, from what to what, by whom. */
export type ConversationEvent =
  | {
      readonly type: 'conversation.status_changed';
      readonly from: ConversationStatus;
      readonly to: ConversationStatus;
      readonly by: Actor;
    }
  | { readonly type: 'conversation.assigned'; readonly from: string | null; readonly to: string | null; readonly by: Actor };

/** Longest `lastMessage.text` in a summary. */
export const LAST_MESSAGE_MAX_CHARS = 200;

/** The first 200 characters (code points, so an emoji is never cut in half). */
export function cutText(text: string): string {
  const chars = [...text];
  return chars.length <= LAST_MESSAGE_MAX_CHARS ? text : chars.slice(0, LAST_MESSAGE_MAX_CHARS).join('');
}

/** The human text of a system message (what a chat shows; the machine reads `meta.event`). */
export function systemText(e: ConversationEvent): string {
  const who =
    e.by.type === 'agent' ? `agent ${e.by.id}` : e.by.type === 'api' ? 'the API' : e.by.type === 'system' ? 'chatd' : 'the visitor';
  if (e.type === 'conversation.status_changed') {
    if (e.from === 'resolved' && e.to === 'open') return `Conversation reopened by ${who}`;
    return `Conversation marked ${e.to} by ${who}`;
  }
  if (e.to === null) return `Conversation unassigned by ${who}`;
  return `Conversation assigned to ${e.to} by ${who}`;
}
