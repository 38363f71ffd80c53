// Every error code in the catalogue is documented in the README (fastify's habit): an operator or
// a widget developer who meets a code can look it up.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChatdError, ERRORS, toChatdError, DependencyError, OutcomeUnknownError } from './errors.js';

const readme = readFileSync(path.resolve(__dirname, '../README.md'), 'utf8');

describe('error catalogue', () => {
  it('documents every code in the README error table, with its status', () => {
    const undocumented = Object.entries(ERRORS)
      .filter(([code, spec]) => !new RegExp(`\\|\\s*\`${code}\`\\s*\\|\\s*${spec.status}\\s*\\|`).test(readme))
      .map(([code]) => code);
    expect(undocumented, 'add a row `| `code` | status | meaning |` to the README error table').toEqual([]);
  });

  it('codes are snake_case and bodies keep the guide shape', () => {
    for (const code of Object.keys(ERRORS)) expect(code).toMatch(/^[a-z][a-z0-9_]*$/);
    expect(new ChatdError('invalid_api_key').toJSON()).toEqual({ error: 'Invalid API key', code: 'invalid_api_key' });
    expect(toChatdError(new OutcomeUnknownError()).code).toBe('outcome_unknown');
    expect(toChatdError(new DependencyError('redis', 'down')).status).toBe(503);
    expect(toChatdError(new Error('boom')).code).toBe('internal');
  });
});
