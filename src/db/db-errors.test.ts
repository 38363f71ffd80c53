import { describe, expect, it } from 'vitest';
import { ChatdError, DependencyError, OutcomeUnknownError } from '../errors.js';
import { isRowError, toCommitError, toQueryError, toRowRefusal } from './db-errors.js';

const pgError = (code: string, message = 'x') => Object.assign(new Error(message), { code });

describe('database error classification', () => {
  it.each([
    ['connection refused', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })],
    ['connection lost', new Error('Connection terminated unexpectedly')],
    ['pool connect timeout', new Error('timeout exceeded when trying to connect')],
    ['admin shutdown', pgError('57P01', 'terminating connection due to administrator command')],
    ['statement timeout', pgError('57014', 'canceling statement due to statement timeout')],
    ['too many connections', pgError('53300')],
    ['PGlite closed', new Error('PGlite is closed')],
  ])('%s is a DependencyError (nothing stored)', (_label, err) => {
    expect(toQueryError(err)).toBeInstanceOf(DependencyError);
    expect(isRowError(err)).toBe(false);
  });

  it.each([
    ['bad bytes', pgError('22021')],
    ['unique violation', pgError('23505')],
    ['deadlock', pgError('40P01')],
    ['value too long', pgError('54000')],
  ])('%s is about the row: retried alone, then a 400', (_label, err) => {
    expect(isRowError(err)).toBe(true);
    expect(toQueryError(err)).toBe(err);
    const refusal = toRowRefusal(err);
    expect(refusal).toBeInstanceOf(ChatdError);
    expect(refusal.code).toBe('validation_failed');
  });

  it('a COMMIT without a definite answer is OutcomeUnknownError; a definite refusal is not', () => {
    expect(toCommitError(new Error('Connection terminated unexpectedly'))).toBeInstanceOf(OutcomeUnknownError);
    expect(toCommitError(pgError('57P01'))).toBeInstanceOf(OutcomeUnknownError);
    expect(toCommitError(pgError('40001'))).not.toBeInstanceOf(OutcomeUnknownError);
  });
});
