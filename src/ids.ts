// The id formats of the wire contract (DESIGN.md "The contract with the widget"), in one place:
// `tenantId`, `sessionId`, `siteId`, `fingerprint` match `[A-Za-z0-9_-]{1,128}`; a `userId` also
// allows `.` and `@` (e-mail-like ids). Anything else is a 400 `invalid_id` naming the field.
import { ChatdError } from './errors.js';

/** The text of the id pattern, for JSON Schemas and messages. */
export const ID_SOURCE = '[A-Za-z0-9_-]{1,128}';
export const USER_ID_SOURCE = '[A-Za-z0-9_.@-]{1,128}';
export const ID_PATTERN = new RegExp(`^${ID_SOURCE}$`);
export const USER_ID_PATTERN = new RegExp(`^${USER_ID_SOURCE}$`);

/** Throws `invalid_id` naming `field` unless `value` is an id. */
export function assertId(field: string, value: string): void {
  if (!ID_PATTERN.test(value)) throw new ChatdError('invalid_id', `${field} must match ${ID_SOURCE}`);
}

/** Throws `invalid_id` naming `field` unless `value` is a user id. */
export function assertUserId(field: string, value: string): void {
  if (!USER_ID_PATTERN.test(value)) throw new ChatdError('invalid_id', `${field} must match ${USER_ID_SOURCE}`);
}
