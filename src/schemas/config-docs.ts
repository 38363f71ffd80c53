// Documentation generated from the config schema, so it cannot drift from the code:
// `chat-server.example.yaml` (every key, commented, with its default) and docs/configuration.md's config
// reference table. `npm run schemas` writes both; a test checks the committed copies are current.
import type { TSchema } from '@sinclair/typebox';
import { ConfigSchema } from '../config/schema.js';

interface Field {
  path: string;
  schema: TSchema;
  depth: number;
}

function describeType(s: TSchema): string {
  if (s.anyOf) return (s.anyOf as TSchema[]).map((x) => (x.const !== undefined ? JSON.stringify(x.const) : describeType(x))).join(' | ');
  if (s.type === 'array') return `${describeType(s.items as TSchema)}[]`;
  if (s.type === 'integer' || s.type === 'number') {
    const range = [s.minimum !== undefined ? `≥ ${s.minimum}` : '', s.maximum !== undefined ? `≤ ${s.maximum}` : '']
      .filter(Boolean)
      .join(', ');
    return range ? `${s.type} (${range})` : String(s.type);
  }
  return String(s.type ?? 'any');
}

function walk(schema: TSchema, prefix: string, depth: number, out: Field[]): void {
  const props = (schema.properties ?? {}) as Record<string, TSchema>;
  for (const [key, child] of Object.entries(props)) {
    if (key === '$schema') continue;
    const path = prefix ? `${prefix}.${key}` : key;
    out.push({ path, schema: child, depth });
    if (child.type === 'object' && child.properties) walk(child, path, depth + 1, out);
    if (child.type === 'array' && (child.items as TSchema)?.type === 'object') walk(child.items as TSchema, `${path}[]`, depth + 1, out);
  }
}

export function configFields(): Field[] {
  const out: Field[] = [];
  walk(ConfigSchema, '', 0, out);
  return out;
}

export function configReferenceMarkdown(): string {
  const rows = configFields().map(({ path, schema }) => {
    const def = schema.default === undefined || (typeof schema.default === 'object' && Object.keys(schema.default).length === 0 && !Array.isArray(schema.default))
      ? ''
      : `\`${JSON.stringify(schema.default)}\``;
    const type = schema.type === 'object' ? 'object' : describeType(schema).replace(/\|/g, '\\|');
    return `| \`${path}\` | ${type} | ${def} | ${(schema.description ?? '').replace(/\|/g, '\\|')} |`;
  });
  return ['| key | type | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

const yamlScalar = (v: unknown) => (typeof v === 'string' ? (v === '' ? "''" : JSON.stringify(v)) : JSON.stringify(v));

/** A complete, commented example config: every key with its default (optional keys commented out). */
export function exampleYaml(): string {
  const lines: string[] = [
    '# chatd configuration: every key, its default and what it does.',
    '# Editors: the schema below gives completion and validation (YAML language server).',
    '# yaml-language-server: $schema=./schemas/chat-server.schema.json',
    '# ${VAR} and ${VAR:-default} read the environment. With no file at all chatd runs on defaults;',
    "# the guide's variables GATEWAY_API_KEY, JWT_SECRET, REDIS_URL, DATABASE_URL, BACKEND_API_URL and",
    '# BACKEND_WS_URL fill the matching keys when the file leaves them unset.',
    '',
  ];
  const emit = (schema: TSchema, indent: string, required: Set<string>) => {
    const props = (schema.properties ?? {}) as Record<string, TSchema>;
    for (const [key, child] of Object.entries(props)) {
      if (key === '$schema') continue;
      if (child.description) lines.push(`${indent}# ${child.description}`);
      const optional = child.default === undefined && !required.has(key);
      const c = optional ? '# ' : '';
      if (child.type === 'object' && child.properties) {
        lines.push(`${indent}${c}${key}:`);
        emit(child, `${indent}${c}  `, new Set((child.required as string[]) ?? []));
      } else if (child.type === 'array' && (child.items as TSchema)?.type === 'object') {
        lines.push(`${indent}${key}: []`);
        lines.push(`${indent}# ${key}:`);
        lines.push(`${indent}#   - (each entry:)`);
        emitItem(child.items as TSchema, `${indent}#     `);
      } else {
        const value = child.default !== undefined ? yamlScalar(child.default) : exampleValue(child);
        lines.push(`${indent}${c}${key}: ${value}`);
      }
    }
  };
  const emitItem = (schema: TSchema, indent: string) => {
    const props = (schema.properties ?? {}) as Record<string, TSchema>;
    for (const [key, child] of Object.entries(props)) {
      const about = child.description ? `  # ${child.description}` : '';
      if (child.type === 'object' && child.properties) {
        lines.push(`${indent}${key}:${about}`);
        emitItem(child, `${indent}  `);
      } else if (child.type === 'array' && (child.items as TSchema)?.type === 'object') {
        lines.push(`${indent}${key}:${about}`);
        lines.push(`${indent}  - (each entry:)`);
        emitItem(child.items as TSchema, `${indent}    `);
      } else {
        lines.push(`${indent}${key}: ${child.default !== undefined ? yamlScalar(child.default) : exampleValue(child)}${about}`);
      }
    }
  };
  emit(ConfigSchema, '', new Set());
  return `${lines.join('\n')}\n`;
}

function exampleValue(s: TSchema): string {
  if (s.anyOf) {
    const first = (s.anyOf as TSchema[])[0]!;
    return first.const !== undefined ? yamlScalar(first.const) : exampleValue(first);
  }
  switch (s.type) {
    case 'string':
      return s.format === 'date-time' ? '"2026-01-01T00:00:00Z"' : '""';
    case 'integer':
    case 'number':
      return String(s.minimum ?? 0);
    case 'boolean':
      return 'false';
    case 'array':
      return '[]';
    default:
      return '{}';
  }
}
