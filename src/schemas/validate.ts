// One way to validate anything against a JSON Schema (config, request bodies, event payloads):
// Ajv, compiled once, with errors turned into `{ path, message }` that name the key path the way a
// user writes it (`tenants[0].apiKeys[1].key must match ...`).
import { Ajv, type ErrorObject, type Options } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { Static, TSchema } from '@sinclair/typebox';

// ajv-formats is CJS with a default export; under NodeNext its type is the module namespace.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (
  ajv: Ajv,
) => Ajv;

export interface ValidationIssue {
  /** Dotted key path, e.g. `server.port` or `tenants[0].id`; `(root)` for the whole value. */
  readonly path: string;
  readonly message: string;
}

export type ValidationResult<T> = { ok: true; value: T } | { ok: false; errors: ValidationIssue[] };

const ajvs = new Map<string, Ajv>();
function ajvFor(opts: Options): Ajv {
  const key = JSON.stringify(opts);
  let ajv = ajvs.get(key);
  if (!ajv) {
    ajv = new Ajv({ allErrors: true, strict: false, ...opts });
    addFormats(ajv);
    ajvs.set(key, ajv);
  }
  return ajv;
}

/**
 * Compiles a schema once. With `useDefaults` the value is modified in place (defaults filled); pass a
 * copy when the input must stay untouched.
 */
export function compileValidator<S extends TSchema>(
  schema: S,
  opts: Pick<Options, 'useDefaults' | 'coerceTypes' | 'removeAdditional'> = {},
): (data: unknown) => ValidationResult<Static<S>> {
  const fn = ajvFor(opts).compile(schema);
  return (data) => {
    if (fn(data)) return { ok: true, value: data as Static<S> };
    return { ok: false, errors: formatErrors(fn.errors ?? []) };
  };
}

export function formatErrors(errors: readonly ErrorObject[]): ValidationIssue[] {
  const out: ValidationIssue[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    // anyOf/oneOf wrappers repeat their branches' errors; keep the specific ones.
    if (e.keyword === 'anyOf' || e.keyword === 'oneOf' || e.keyword === 'if') continue;
    let p = pointerToPath(e.instancePath);
    let message = e.message ?? 'is invalid';
    switch (e.keyword) {
      case 'additionalProperties': {
        const extra = (e.params as { additionalProperty: string }).additionalProperty;
        p = join(p, extra);
        message = 'is not a known key';
        break;
      }
      case 'required': {
        const missing = (e.params as { missingProperty: string }).missingProperty;
        p = join(p, missing);
        message = 'is required';
        break;
      }
      case 'enum':
      case 'const': {
        const allowed = (e.params as { allowedValues?: unknown[]; allowedValue?: unknown }).allowedValues ?? [
          (e.params as { allowedValue?: unknown }).allowedValue,
        ];
        message = `must be one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}`;
        break;
      }
      default:
        break;
    }
    const key = `${p} ${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ path: p, message });
  }
  return mergeLiteralUnions(out);
}

/** `x must be equal to constant` ×N from a union of literals reads better as one line. */
function mergeLiteralUnions(issues: ValidationIssue[]): ValidationIssue[] {
  const byPath = new Map<string, ValidationIssue[]>();
  for (const i of issues) byPath.set(i.path, [...(byPath.get(i.path) ?? []), i]);
  const out: ValidationIssue[] = [];
  for (const [p, list] of byPath) {
    const consts = list.filter((i) => i.message.startsWith('must be one of '));
    if (consts.length > 1) {
      const values = consts.map((i) => i.message.slice('must be one of '.length));
      out.push({ path: p, message: `must be one of ${values.join(', ')}` });
      out.push(...list.filter((i) => !consts.includes(i)).filter((i) => i.message !== 'must be boolean'));
    } else out.push(...list);
  }
  return out;
}

function join(base: string, key: string): string {
  return base === '(root)' ? key : `${base}.${key}`;
}

function pointerToPath(pointer: string): string {
  if (!pointer) return '(root)';
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^[0-9]+$/.test(seg) ? `[${seg}]` : out ? `.${seg}` : seg;
  }
  return out;
}
