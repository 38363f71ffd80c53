// Request and response bodies of the api role's endpoints (DESIGN.md "The contract"), as TypeBox
// schemas: the handlers validate with them, `npm run schemas` publishes them in schemas/, and the
// contract test checks real answers against the published files.
import { Type, type TSchema } from '@sinclair/typebox';
import {
  AgentMessageBody,
  AvailabilitySchema,
  ContactBody,
  ContactResponse,
  ClientEventSchemas,
  ErrorBody,
  EventSchemas,
  ConversationStatusSchema,
  ConversationSummarySchema,
  HistoryPageSchema,
  Id,
  MessageSchema,
  SendAck,
  SendMessageBody,
  SendNack,
  UserId,
} from '../../chat/contract.js';

export const AnonymousTokenRequest = Type.Object(
  {
    tenantId: Id('The tenant.'),
    sessionId: Type.Optional(Id('Bind the token to this session now (a new one, or one proven by fingerprint).')),
    fingerprint: Type.Optional(Id("The browser's fingerprint: proves ownership of an existing session.")),
  },
  { additionalProperties: true, description: 'POST /api/chat/anonymous-token (Authorization: Bearer <API key>).' },
);

export const AgentTokenRequest = Type.Object(
  {
    tenantId: Id('The tenant.'),
    userId: UserId("The agent's id in the tenant's admin backend (the token's sub)."),
    name: Type.Optional(Type.String({ maxLength: 200, description: 'Display name shown to visitors.' })),
  },
  { additionalProperties: true, description: 'POST /api/chat/agent-token (Authorization: Bearer <secret key>).' },
);

export const TokenResponse = Type.Object(
  {
    token: Type.String({ pattern: '^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$', description: 'A JWT.' }),
    expiresIn: Type.Integer({ minimum: 1, description: 'Seconds until it expires.' }),
  },
  { additionalProperties: false, description: 'Answer of the token endpoints.' },
);

export const BroadcastRequest = Type.Object(
  {
    tenantId: Id('The tenant.'),
    event: Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$', description: 'Event name for the widget, e.g. office_hours.' }),
    data: Type.Optional(Type.Unknown({ description: 'Any JSON value, delivered as is.' })),
  },
  { additionalProperties: true, description: 'POST /api/chat/broadcast (Authorization: Bearer <secret key>).' },
);

export const BroadcastResponse = Type.Object(
  { success: Type.Literal(true) },
  { additionalProperties: false, description: 'Answer of POST /api/chat/broadcast: published to the tenant-wide room.' },
);

export const OnlineUsersResponse = Type.Object(
  {
    users: Type.Array(
      Type.Object(
        {
          userId: Type.String(),
          sessionId: Type.String(),
          connectedAt: Type.String(),
          domain: Type.String(),
          origin: Type.String(),
          url: Type.String(),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false, description: 'Answer of GET /api/chat/online-users (from online_users:{tenantId}).' },
);

export const AvailabilityResponse = Type.Object(AvailabilitySchema.properties, {
  additionalProperties: false,
  description: 'Answer of GET /api/chat/availability.',
});

export const EraseRequest = Type.Object(
  {
    tenantId: Id('The tenant.'),
    sessionId: Type.Optional(Id('Erase this conversation (give sessionId or userId, not both).')),
    userId: Type.Optional(UserId('Erase every conversation owned by this user, and the read pointers it left elsewhere.')),
    dryRun: Type.Optional(Type.Boolean({ default: false, description: 'Count what would be removed; remove nothing.' })),
  },
  { additionalProperties: false, description: 'POST /api/chat/erase (Authorization: Bearer <secret key>).' },
);

const Count = (description: string) => Type.Integer({ minimum: 0, description });

export const EraseResponse = Type.Object(
  {
    tenantId: Type.String(),
    subject: Type.Union([
      Type.Object({ sessionId: Type.String() }, { additionalProperties: false }),
      Type.Object({ userId: Type.String() }, { additionalProperties: false }),
    ]),
    dryRun: Type.Boolean(),
    sessionIds: Type.Array(Type.String(), { description: 'Sessions whose data was erased (or would be).' }),
    removed: Type.Object(
      {
        conversations: Count('Conversations (database).'),
        messages: Count('Messages (database).'),
        readPointers: Count('Read pointers (database).'),
        outboxRows: Count('Messages not yet published (database outbox).'),
        sessionRecords: Count('`session:{id}` records.'),
        tokenBindings: Count('Token bindings to an erased session.'),
        presenceEntries: Count('Presence connections of an erased session.'),
        webhookJobs: Count('Entries of `meta:webhook_jobs`.'),
        webhookRetries: Count('Scheduled webhook retries (Redis store).'),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false, description: 'Answer of POST /api/chat/erase: counts per kind of what was removed.' },
);

export const ConversationStatusRequest = Type.Object(
  { tenantId: Type.Optional(Id("The tenant (must be the credential's; required with a secret key).")), status: ConversationStatusSchema },
  { additionalProperties: true, description: 'POST /api/chat/conversations/{sessionId}/status (agent JWT or secret key).' },
);

export const ConversationAssignRequest = Type.Object(
  {
    tenantId: Type.Optional(Id("The tenant (must be the credential's; required with a secret key).")),
    assignee: Type.Union([UserId('An agent id (JWT sub), or "me" for the calling agent.'), Type.Null()], {
      description: 'The agent to assign, "me" (agent tokens only), or null to unassign.',
    }),
  },
  { additionalProperties: true, description: 'POST /api/chat/conversations/{sessionId}/assign (agent JWT or secret key).' },
);

export const ConversationListResponse = Type.Object(
  {
    conversations: Type.Array(ConversationSummarySchema, { description: 'Newest activity first.' }),
    nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `before` for the next page; null at the end.' }),
  },
  { additionalProperties: false, description: 'Answer of GET /api/chat/conversations.' },
);

const Addresses = Type.Union([Type.String(), Type.Array(Type.Unknown())], {
  description: 'An address, a list of them (`a@x, b@y`), or provider objects with `Email`/`email`/`address`.',
});
const requiredOneOf = (fields: string[]) => fields.map((f) => ({ required: [f] }));

/**
 * POST /api/chat/inbound-email: a parsed inbound email as inbound-mail providers post it (Postmark,
 * Mailgun, or plain JSON). Other fields are allowed and ignored; at least one recipient field and
 * one text field are needed. Reading it is parseInbound's (src/notify/inbound-email.ts).
 */
export const InboundEmailRequest = Type.Object(
  {
    ToFull: Type.Optional(Type.Array(Type.Unknown(), { description: 'Postmark: `[{ Email, Name }]`.' })),
    To: Type.Optional(Addresses),
    to: Type.Optional(Addresses),
    recipient: Type.Optional(Addresses),
    OriginalRecipient: Type.Optional(Addresses),
    envelope: Type.Optional(Type.Object({ to: Type.Optional(Addresses) })),
    StrippedTextReply: Type.Optional(Type.String({ description: 'Postmark: the reply without the quoted history (preferred).' })),
    'stripped-text': Type.Optional(Type.String({ description: 'Mailgun: the reply without the quoted history (preferred).' })),
    TextBody: Type.Optional(Type.String()),
    'body-plain': Type.Optional(Type.String()),
    text: Type.Optional(Type.String()),
    plain: Type.Optional(Type.String()),
    From: Type.Optional(Type.String()),
    from: Type.Optional(Type.String()),
    sender: Type.Optional(Type.String()),
    MessageID: Type.Optional(
      Type.String({ description: 'Makes a retried webhook idempotent (also `Message-Id`, `messageId`, `message_id`).' }),
    ),
    'Message-Id': Type.Optional(Type.String()),
    messageId: Type.Optional(Type.String()),
    message_id: Type.Optional(Type.String()),
  },
  {
    additionalProperties: true,
    allOf: [
      { anyOf: requiredOneOf(['ToFull', 'To', 'to', 'recipient', 'OriginalRecipient', 'envelope']) },
      { anyOf: requiredOneOf(['StrippedTextReply', 'stripped-text', 'TextBody', 'body-plain', 'text', 'plain']) },
    ],
    description:
      'A parsed inbound email, authenticated with `Authorization: Bearer <email.inboundSecret>`; the reply address (r-<mac>-<conversation>@email.replyDomain) names the conversation.',
  },
);

/** File name in schemas/ → schema and title: every body and event of the contract. */
export const API_CONTRACT_SCHEMAS: Record<string, { schema: TSchema; title: string }> = {
  'api.anonymous-token.request.schema.json': { schema: AnonymousTokenRequest, title: 'POST /api/chat/anonymous-token request' },
  'api.agent-token.request.schema.json': { schema: AgentTokenRequest, title: 'POST /api/chat/agent-token request' },
  'api.token.response.schema.json': { schema: TokenResponse, title: 'Token endpoints response' },
  'api.broadcast.request.schema.json': { schema: BroadcastRequest, title: 'POST /api/chat/broadcast request' },
  'api.broadcast.response.schema.json': { schema: BroadcastResponse, title: 'POST /api/chat/broadcast response' },
  'api.erase.request.schema.json': { schema: EraseRequest, title: 'POST /api/chat/erase request' },
  'api.erase.response.schema.json': { schema: EraseResponse, title: 'POST /api/chat/erase response' },
  'api.webchat-message.request.schema.json': { schema: SendMessageBody, title: 'POST /webchat/message request' },
  'api.webchat-message.response.schema.json': { schema: SendAck, title: 'POST /webchat/message response' },
  'api.messages.response.schema.json': { schema: HistoryPageSchema, title: 'GET /api/chat/messages response' },
  'api.contact.request.schema.json': { schema: ContactBody, title: 'POST /webchat/contact request' },
  'api.contact.response.schema.json': { schema: ContactResponse, title: 'POST /webchat/contact response' },
  'api.inbound-email.request.schema.json': { schema: InboundEmailRequest, title: 'POST /api/chat/inbound-email request' },
  'api.inbound-email.response.schema.json': { schema: SendAck, title: 'POST /api/chat/inbound-email response' },
  'api.availability.response.schema.json': { schema: AvailabilityResponse, title: 'GET /api/chat/availability response' },
  'api.conversations.response.schema.json': { schema: ConversationListResponse, title: 'GET /api/chat/conversations response' },
  'api.conversation.response.schema.json': {
    schema: ConversationSummarySchema,
    title: 'GET /api/chat/conversations/{sessionId} response (and of its status and assign)',
  },
  'api.conversation-status.request.schema.json': {
    schema: ConversationStatusRequest,
    title: 'POST /api/chat/conversations/{sessionId}/status request',
  },
  'api.conversation-assign.request.schema.json': {
    schema: ConversationAssignRequest,
    title: 'POST /api/chat/conversations/{sessionId}/assign request',
  },
  'api.online-users.response.schema.json': { schema: OnlineUsersResponse, title: 'GET /api/chat/online-users response' },
  'api.error.schema.json': { schema: ErrorBody, title: 'Error body (every status >= 400)' },
  'message.schema.json': { schema: MessageSchema, title: 'A message as returned and emitted' },
  'event.message.ack.schema.json': { schema: Type.Union([SendAck, SendNack]), title: 'Ack of the Socket.IO `message` event' },
  'event.agent-message.schema.json': { schema: AgentMessageBody, title: 'Socket.IO `message` event of an agent' },
  ...Object.fromEntries(
    Object.entries(EventSchemas).map(([name, schema]) => [
      `event.server.${name}.schema.json`,
      { schema, title: `Socket.IO server event \`${name}\`` },
    ]),
  ),
  ...Object.fromEntries(
    Object.entries(ClientEventSchemas)
      .filter(([name]) => name !== 'agent_message')
      .map(([name, schema]) => [`event.client.${name}.schema.json`, { schema, title: `Socket.IO client event \`${name}\`` }]),
  ),
};
