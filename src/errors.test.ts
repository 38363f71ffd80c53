// Every error code and disconnect value in the catalogue is documented (fastify's habit): an
// operator or a widget developer who meets a code can look it up in docs/http-api.md (errors) and
// docs/realtime.md (close codes).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChatdError, DISCONNECT, ERRORS, toChatdError, DependencyError, OutcomeUnknownError } from './errors.js';

const errorsPage = readFileSync(path.resolve(__dirname, '../docs/http-api.md'), 'utf8');
const closeCodesPage = readFileSync(path.resolve(__dirname, '../docs/realtime.md'), 'utf8');

describe('error catalogue', () => {
  it('documents every code in the error table of docs/http-api.md, with its status', () => {
    const undocumented = Object.entries(ERRORS)
      .filter(([code, spec]) => !new RegExp(`\\|\\s*\`${code}\`\\s*\\|\\s*${spec.status}\\s*\\|`).test(errorsPage))
      .map(([code]) => code);
    expect(undocumented, 'add a row `| `code` | status | meaning |` to the error table of docs/http-api.md').toEqual([]);
  });

  it('codes are snake_case and bodies keep the guide shape', () => {
    for (const code of Object.keys(ERRORS)) expect(code).toMatch(/^[a-z][a-z0-9_]*$/);
    expect(new ChatdError('invalid_api_key').toJSON()).toEqual({ error: 'Invalid API key', code: 'invalid_api_key' });
    expect(toChatdError(new OutcomeUnknownError()).code).toBe('outcome_unknown');
    expect(toChatdError(new DependencyError('redis', 'down')).status).toBe(503);
    expect(toChatdError(new Error('boom')).code).toBe('internal');
  });
});

describe('disconnect values', () => {
  it('documents every value in the close-code table of docs/realtime.md, with its code, reason and whether it reconnects', () => {
    const undocumented = Object.entries(DISCONNECT)
      .filter(([name, d]) => {
        const row = `\\|\\s*\`${name}\`\\s*\\|\\s*${d.code}\\s*\\|\\s*\`${d.reason}\`\\s*\\|\\s*${d.reconnect ? 'yes' : 'no'}\\s*\\|`;
        return !new RegExp(row).test(closeCodesPage);
      })
      .map(([name]) => name);
    expect(undocumented, 'add a row `| `name` | code | `reason` | yes/no | when |` to the close-code table of docs/realtime.md').toEqual(
      [],
    );
  });

  it('names are camelCase, codes are sendable and reasons fit a close frame', () => {
    for (const [name, d] of Object.entries(DISCONNECT)) {
      expect(name).toMatch(/^[a-z][A-Za-z]*$/);
      // 1000-1003, 1007-1014 and 3000-4999 may be sent in a close frame (RFC 6455 section 7.4).
      expect(
        d.code === 1000 || d.code === 1001 || d.code === 1002 || (d.code >= 1007 && d.code <= 1014) || (d.code >= 3000 && d.code <= 4999),
        name,
      ).toBe(true);
      expect(Buffer.byteLength(d.reason), name).toBeLessThanOrEqual(123);
    }
  });
});
