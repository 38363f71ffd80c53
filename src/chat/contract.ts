// The wire contract of the domain (DESIGN.md "The contract"), as TypeBox schemas: the message body
// both doors accept, the message as returned and emitted, the send acknowledgement, history pages
// and the Socket.IO event payloads. `npm run schemas` writes them to schemas/ as JSON Schema; the
// domain validates its input with them and the contract test checks real answers against them.
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { ID_SOURCE, USER_ID_SOURCE } from '../ids.js';

/** The id patterns of src/ids.ts as JSON Schema `pattern`s. */
export const ID_RE = `^${ID_SOURCE}$`;
export const USER_ID_RE = `^${USER_ID_SOURCE}$`;

export const Id = (description: string) => Type.String({ pattern: ID_RE, description: `${description} ${ID_SOURCE}.` });
export const UserId = (description: string) => Type.String({ pattern: USER_ID_RE, description: `${description} ${USER_ID_SOURCE}.` });
/** Optional ids from the widget may be empty strings (the guide sends them blank): '' = absent. */
const OptionalUserId = Type.String({
  pattern: `^(${USER_ID_SOURCE})?$`,
  description: "The user's id in the site (a claim unless verified); empty = anonymous.",
});
const MetaText = (description: string, max = 2048) => Type.String({ maxLength: max, description });

export const ClientMessageId = Type.String({
  pattern: '^[A-Za-z0-9_.:-]{1,128}$',
  description: 'Idempotency key chosen by the client: a retry with the same key and content returns the first messageId.',
});

/** Largest `text` the schema allows; the configured `limits.messageMaxChars` (4000 by default) applies on top. */
export const TEXT_MAX_SCHEMA = 100_000;

const metaFields = {
  domain: Type.Optional(MetaText('Host name of the page (window.location.hostname).', 253)),
  origin: Type.Optional(MetaText('Origin of the page.', 512)),
  url: Type.Optional(MetaText('URL of the page.')),
  referrer: Type.Optional(MetaText('document.referrer.')),
  siteId: Type.Optional(Type.String({ pattern: `^(${ID_SOURCE})?$`, description: 'The site within the tenant; empty = none.' })),
  userInfo: Type.Optional(
    Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), {
      maxProperties: 50,
      description: 'Free-form facts about the user (name, email, …), stored with the message.',
    }),
  ),
};

/** `POST /webchat/message` and the Socket.IO `message` event of visitors and users (the guide's flat body). */
export const SendMessageBody = Type.Object(
  {
    text: Type.String({ minLength: 1, maxLength: TEXT_MAX_SCHEMA, description: 'The message (1..limits.messageMaxChars characters).' }),
    tenantId: Id('The tenant.'),
    sessionId: Id("The conversation (the widget's session)."),
    fingerprint: Type.Optional(Id("The browser's fingerprint: required for visitors; proves ownership of an existing session.")),
    userId: Type.Optional(OptionalUserId),
    userHash: Type.Optional(Type.String({ maxLength: 128, description: 'hex HMAC-SHA256(identitySecret, userId): verifies userId.' })),
    clientMessageId: Type.Optional(ClientMessageId),
    ...metaFields,
  },
  { additionalProperties: true, description: 'A message from the widget. Unknown fields are ignored.' },
);
export type SendMessageBody = Static<typeof SendMessageBody>;

/** `POST /webchat/contact`: the visitor leaves an address for replies (offline continuity). */
export const ContactBody = Type.Object(
  {
    tenantId: Id('The tenant.'),
    sessionId: Id("The conversation (the widget's session)."),
    fingerprint: Type.Optional(Id("The browser's fingerprint: required for visitors, as for a message.")),
    email: Type.String({
      format: 'email',
      minLength: 3,
      maxLength: 254,
      description: 'Where agent replies are emailed while the visitor is away.',
    }),
    name: Type.Optional(
      Type.String({ minLength: 1, maxLength: 200, description: "The visitor's name, for the agents and the email's greeting." }),
    ),
    userId: Type.Optional(OptionalUserId),
    userHash: Type.Optional(Type.String({ maxLength: 128, description: 'hex HMAC-SHA256(identitySecret, userId): verifies userId.' })),
  },
  { additionalProperties: true, description: "The visitor's contact, stored on the conversation. Unknown fields are ignored." },
);
export type ContactBody = Static<typeof ContactBody>;

export const ContactResponse = Type.Object(
  { success: Type.Literal(true), sessionId: Type.String() },
  { additionalProperties: false, description: 'Answer of POST /webchat/contact: stored on the conversation.' },
);

/** The Socket.IO `message` event of an agent: a reply to any conversation of its tenant. */
export const AgentMessageBody = Type.Object(
  {
    sessionId: Id('The conversation replied to.'),
    text: Type.String({ minLength: 1, maxLength: TEXT_MAX_SCHEMA, description: 'The reply.' }),
    tenantId: Type.Optional(Id("The tenant (must be the token's).")),
    clientMessageId: Type.Optional(ClientMessageId),
  },
  { additionalProperties: true, description: "An agent's reply." },
);

/** What the domain accepts from either door: the widget's body, with tenantId optional for agents. */
export const DomainSendInput = Type.Object(
  { ...SendMessageBody.properties, tenantId: Type.Optional(Id("The tenant (must be the token's).")) },
  { additionalProperties: true },
);
export type DomainSendInput = Static<typeof DomainSendInput>;

export const SenderSchema = Type.Object(
  {
    type: Type.Union([Type.Literal('visitor'), Type.Literal('user'), Type.Literal('agent'), Type.Literal('system')]),
    id: Type.String({ minLength: 1, maxLength: 128, description: "visitor: the sessionId; user: the userId; agent: the token's sub." }),
    verified: Type.Boolean({ description: 'Whether the id was verified (token sub or userHash).' }),
  },
  { additionalProperties: false },
);

const ActorSchema = Type.Object(
  {
    type: Type.Union([Type.Literal('agent'), Type.Literal('api'), Type.Literal('visitor'), Type.Literal('user'), Type.Literal('system')]),
    id: Type.String(),
  },
  { additionalProperties: false, description: 'Who made the change (api: a secret-key call; system: auto-assignment).' },
);

/** `meta.event` of a system message. */
export const ConversationEventSchema = Type.Union(
  [
    Type.Object(
      {
        type: Type.Literal('conversation.status_changed'),
        from: Type.Union([Type.Literal('open'), Type.Literal('pending'), Type.Literal('resolved')]),
        to: Type.Union([Type.Literal('open'), Type.Literal('pending'), Type.Literal('resolved')]),
        by: ActorSchema,
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        type: Type.Literal('conversation.assigned'),
        from: Type.Union([Type.String(), Type.Null()]),
        to: Type.Union([Type.String(), Type.Null()]),
        by: ActorSchema,
      },
      { additionalProperties: false },
    ),
  ],
  { description: 'System messages only: the change of status or assignee they record.' },
);

export const MessageSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid', description: 'Assigned by chatd.' }),
    tenantId: Id('The tenant.'),
    sessionId: Id('The conversation.'),
    seq: Type.Integer({ minimum: 1, description: 'Position in the conversation (its stream offset).' }),
    sender: SenderSchema,
    text: Type.String({ minLength: 1 }),
    clientMessageId: Type.Optional(ClientMessageId),
    createdAt: Type.String({ format: 'date-time' }),
    meta: Type.Object(
      {
        domain: Type.String(),
        origin: Type.String(),
        url: Type.String(),
        referrer: Type.String(),
        siteId: Type.String(),
        userInfo: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
        event: Type.Optional(ConversationEventSchema),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false, description: 'A message as returned and emitted.' },
);

export const ConversationStatusSchema = Type.Union([Type.Literal('open'), Type.Literal('pending'), Type.Literal('resolved')], {
  description: 'open (new or reopened), pending (waiting on someone), resolved (done; a visitor message reopens it by default).',
});

export const ConversationSummarySchema = Type.Object(
  {
    sessionId: Id('The conversation.'),
    status: ConversationStatusSchema,
    assignee: Type.Union([Type.String(), Type.Null()], { description: 'The agent id (JWT sub) it is assigned to; null: nobody.' }),
    visitor: Type.Object(
      {
        type: Type.Union([Type.Literal('visitor'), Type.Literal('user')], { description: "'user' when a verified userId owns it." }),
        id: Type.String({ description: 'The userId for a user, the sessionId for an anonymous visitor.' }),
        userId: Type.Optional(Type.String()),
        verified: Type.Boolean(),
        name: Type.Optional(Type.String({ description: 'From the contact the visitor gave.' })),
        email: Type.Optional(Type.String({ description: 'From the contact the visitor gave.' })),
      },
      { additionalProperties: false },
    ),
    lastMessage: Type.Union(
      [
        Type.Object(
          {
            id: Type.String({ format: 'uuid' }),
            text: Type.String({ maxLength: 200, description: 'The first 200 characters.' }),
            sender: SenderSchema,
            createdAt: Type.String({ format: 'date-time' }),
          },
          { additionalProperties: false },
        ),
        Type.Null(),
      ],
      { description: 'The newest stored message other than a system message; null before the first, or once retention deleted them all.' },
    ),
    unreadCount: Type.Integer({
      minimum: 0,
      description: "Visitor/user messages after the agents' read pointer (shared by the tenant's agents).",
    }),
    messageCount: Type.Integer({ minimum: 0, description: 'Stored messages other than system messages (retention deletes lower it).' }),
    online: Type.Boolean({ description: 'The visitor has a connection now (presence).' }),
    createdAt: Type.String({ format: 'date-time' }),
    lastActivityAt: Type.String({ format: 'date-time', description: 'The newest message or change: the inbox order.' }),
  },
  { additionalProperties: false, description: 'A conversation as the agents see it in their inbox.' },
);

export const SendAck = Type.Object(
  {
    success: Type.Literal(true),
    messageId: Type.String({ format: 'uuid' }),
    sessionId: Id('The conversation.'),
  },
  { additionalProperties: false, description: 'Answer of POST /webchat/message and ack of the `message` event: stored (committed).' },
);

export const ErrorDetailSchema = Type.Object(
  { path: Type.Optional(Type.String()), message: Type.String() },
  { additionalProperties: false },
);

export const ErrorBody = Type.Object(
  {
    error: Type.String({ description: "Human-readable message (the guide's field)." }),
    code: Type.String({ pattern: '^[a-z][a-z0-9_]*$', description: 'Stable snake_case code; see the error table in docs/http-api.md.' }),
    details: Type.Optional(Type.Array(ErrorDetailSchema)),
  },
  { additionalProperties: false, description: 'Every HTTP error body.' },
);

export const SendNack = Type.Object(
  { success: Type.Literal(false), error: Type.String(), code: Type.String({ pattern: '^[a-z][a-z0-9_]*$' }) },
  { additionalProperties: false, description: 'Ack of a refused `message` event.' },
);

export const HistoryPageSchema = Type.Object(
  {
    messages: Type.Array(MessageSchema, { description: 'Chronological (oldest first).' }),
    nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `before` for older messages; null at the start.' }),
    unreadCount: Type.Optional(
      Type.Integer({ minimum: 0, description: "Visitor and user tokens: agent messages after the visitor's read pointer." }),
    ),
  },
  { additionalProperties: false, description: 'Answer of GET /api/chat/messages.' },
);

const Party = Type.Object({ type: Type.String(), id: Type.String() }, { additionalProperties: true });

/** GET /api/chat/availability, and the `availability_changed` event (src/chat/availability.ts). */
export const AvailabilitySchema = Type.Object(
  {
    available: Type.Boolean({ description: 'In business hours and at least one agent online: a reply can be expected now.' }),
    agentsOnline: Type.Integer({ minimum: 0, description: 'Agents of the tenant with a socket on any node.' }),
    inBusinessHours: Type.Boolean({ description: 'Always true for a tenant without businessHours.' }),
    nextOpenAt: Type.Optional(Type.String({ format: 'date-time', description: 'Out of business hours: the next opening.' })),
    awayMessage: Type.Optional(Type.String({ description: "The tenant's away message, while not available." })),
    expectedReplySeconds: Type.Optional(Type.Integer({ minimum: 0, description: "The tenant's expected reply time." })),
    repliesByEmail: Type.Optional(
      Type.Boolean({
        description:
          'HTTP answer only: agent replies are emailed to visitors who left and gave an address (email.smtp is configured). With ConversationSummary.online false and visitor.email set, an agent console can say "your reply will be emailed".',
      }),
    ),
  },
  { additionalProperties: false, description: 'Whether visitors of a tenant can expect an agent now.' },
);

/** Socket.IO server events (DESIGN.md "Real time"). */
export const EventSchemas = {
  meta_message_created: Type.Object(
    { message: MessageSchema },
    { additionalProperties: false, description: "A stored message, to its conversation and the tenant's agents." },
  ),
  presence_update: Type.Object(
    {
      userId: Type.String(),
      sessionId: Type.String(),
      status: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
      at: Type.String({ format: 'date-time' }),
    },
    { additionalProperties: false, description: 'A user came online or went offline (to agents).' },
  ),
  typing: Type.Object(
    { sessionId: Id('The conversation.'), sender: Party, isTyping: Type.Boolean() },
    { additionalProperties: false, description: 'Typing indicator, relayed not stored.' },
  ),
  read: Type.Object(
    { sessionId: Id('The conversation.'), messageId: Type.String(), reader: Party },
    { additionalProperties: false, description: 'Read pointer moved.' },
  ),
  conversation_updated: Type.Object(
    {
      conversation: ConversationSummarySchema,
      version: Type.Integer({
        minimum: 0,
        description: 'One more on every change of the conversation, in commit order (not its seq): keep the highest, drop older versions.',
      }),
    },
    { additionalProperties: false, description: 'A conversation changed (message, status, assignee, read): to agents, on their stream.' },
  ),
  meta_broadcast: Type.Object(
    { event: Type.String(), data: Type.Unknown() },
    { additionalProperties: false, description: 'From POST /api/chat/broadcast, to every socket of the tenant.' },
  ),
  availability_changed: Type.Object(AvailabilitySchema.properties, {
    additionalProperties: false,
    description:
      "The tenant's availability changed (an agent came or left, business hours opened or closed): the new state, to every socket of the tenant. Not part of a stream (no offset).",
  }),
} satisfies Record<string, TSchema>;

/** Socket.IO client events. */
export const ClientEventSchemas = {
  message: SendMessageBody,
  agent_message: AgentMessageBody,
  join: Type.Object(
    { sessionId: Id('The conversation.') },
    { additionalProperties: true, description: "Agent: receive this conversation's typing and read." },
  ),
  leave: Type.Object({ sessionId: Id('The conversation.') }, { additionalProperties: true, description: 'Agent: stop receiving them.' }),
  typing: Type.Object(
    { sessionId: Id('The conversation.'), isTyping: Type.Boolean() },
    { additionalProperties: true, description: 'Typing indicator.' },
  ),
  read: Type.Object(
    { sessionId: Id('The conversation.'), messageId: Type.String({ maxLength: 64 }) },
    { additionalProperties: true, description: 'Mark read up to a message.' },
  ),
} satisfies Record<string, TSchema>;
