// The rooms' names (DESIGN.md "Rooms"), in one place: every uWS topic chatd publishes to is
// tenant-scoped, and every layer that subscribes or publishes (the ws role's streams and rooms,
// a gateway publishing natively to its local subscribers) builds them here. Ids match
// [A-Za-z0-9_-] (src/ids.ts, checked at the door), so no escaping is needed.

/** A visitor's (or user's) conversation: its one recoverable stream. */
export const conversationTopic = (tenantId: string, sessionId: string): string => `t:${tenantId}:conv:${sessionId}`;

/** The tenant's agents: their one recoverable stream (every message and presence event of the tenant). */
export const agentsTopic = (tenantId: string): string => `t:${tenantId}:agents`;

/** The tenant-wide room: every socket of the tenant (meta_broadcast). */
export const tenantTopic = (tenantId: string): string => `t:${tenantId}:all`;

/** What an agent joins to get one conversation's typing and read (it never follows that conversation's stream). */
export const watchTopic = (tenantId: string, sessionId: string): string => `t:${tenantId}:watch:${sessionId}`;
