import { describe, expect, it } from 'vitest';
import { ChatdError } from '../errors.js';
import { bearerValue, checkQueryCredentials, CREDENTIAL_PARAMS, looksLikeJwt } from './bearer.js';

const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJ0aWQiOiJhIn0.c2lnbmF0dXJl';

describe('bearerValue', () => {
  it('reads one token after the Bearer scheme, in any case; nothing else', () => {
    expect(bearerValue(`Bearer ${JWT}`)).toBe(JWT);
    expect(bearerValue(`bearer ${JWT}  `)).toBe(JWT);
    expect(bearerValue('Bearer\tck_pub_a_0123456789')).toBe('ck_pub_a_0123456789');
    expect(bearerValue(undefined)).toBeUndefined();
    expect(bearerValue('')).toBeUndefined();
    expect(bearerValue('Bearer ')).toBeUndefined();
    expect(bearerValue('Basic abc')).toBeUndefined();
    expect(bearerValue('Bearer two words')).toBeUndefined();
  });

  it('tells a JWT by its shape', () => {
    expect(looksLikeJwt(JWT)).toBe(true);
    expect(looksLikeJwt('ck_pub_a_0123456789')).toBe(false);
    expect(looksLikeJwt('plain-gateway-key')).toBe(false);
  });
});

describe('checkQueryCredentials', () => {
  it('refuses every credential parameter of the one list, in any case, password included', () => {
    expect(CREDENTIAL_PARAMS.has('password')).toBe(true);
    for (const name of [...CREDENTIAL_PARAMS, 'PASSWORD', 'Access_Token']) {
      const err = (() => {
        try {
          checkQueryCredentials(new URLSearchParams({ [name]: 'x' }));
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err, name).toBeInstanceOf(ChatdError);
      expect((err as ChatdError).code).toBe('credentials_in_query');
    }
  });
});
