// The JSON Schemas published in schemas/: the config, and (added by their modules) every request
// and response body and Socket.IO event payload.
import type { TSchema } from '@sinclair/typebox';
import { ConfigSchema } from '../config/schema.js';
import { API_CONTRACT_SCHEMAS } from '../roles/api/schemas.js';

const SCHEMA_BASE = 'https://chatd.dev/schemas/';

/** File name → schema, with `$id` and `$schema` set. */
export function allSchemas(): Record<string, object> {
  const out: Record<string, object> = {};
  const add = (file: string, schema: TSchema, title: string) => {
    out[file] = { $schema: 'http://json-schema.org/draft-07/schema#', $id: `${SCHEMA_BASE}${file}`, title, ...schema };
  };
  add('chat-server.schema.json', ConfigSchema, 'chatd configuration');
  for (const [file, { schema, title }] of Object.entries(contractSchemas)) add(file, schema, title);
  return out;
}

/** Request, response and event schemas, registered by the modules that own them. */
export const contractSchemas: Record<string, { schema: TSchema; title: string }> = { ...API_CONTRACT_SCHEMAS };
