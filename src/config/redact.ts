// Secrets never leave the process: `config print` and every log line go through here.
import type { Config } from './schema.js';

export const REDACTED = '[redacted]';

const SECRET_KEY = /(secret|password|token|^key$|apikey|privatekey)/i;

/** A deep copy of the config with every secret replaced and passwords cut out of URLs. */
export function redactConfig(config: Config): unknown {
  return redactValue(config, '');
}

function redactValue(value: unknown, key: string): unknown {
  if (typeof value === 'string') {
    if (SECRET_KEY.test(key) && !key.endsWith('File')) return REDACTED;
    return redactUrl(value);
  }
  if (Array.isArray(value)) return value.map((v) => redactValue(v, key));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = redactValue(v, k);
    return out;
  }
  return value;
}

/** `redis://user:pass@host` → `redis://user:[redacted]@host`; other strings unchanged. */
export function redactUrl(s: string): string {
  return s.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*):([^@/\s]+)@/i, `$1:${REDACTED}@`);
}

/** Every secret value in the config, to scrub from log output as a last line of defence. */
export function secretValues(config: Config): string[] {
  const out = new Set<string>();
  const walk = (value: unknown, key: string) => {
    if (typeof value === 'string') {
      if (SECRET_KEY.test(key) && !key.endsWith('File') && value.length >= 8) out.add(value);
      const m = /^[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:([^@/\s]+)@/i.exec(value);
      if (m?.[1] && m[1].length >= 4) out.add(m[1]);
    } else if (Array.isArray(value)) value.forEach((v) => walk(v, key));
    else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) walk(v, k);
  };
  walk(config, '');
  return [...out];
}
