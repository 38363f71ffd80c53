// Writes every JSON Schema in schemas/ from its TypeBox definition (`npm run schemas`). A test
// checks the committed files are current, so the schema files and the code never disagree.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { allSchemas } from './registry.js';

const outDir = path.resolve(process.argv[2] ?? 'schemas');
mkdirSync(outDir, { recursive: true });
for (const [file, schema] of Object.entries(allSchemas())) {
  writeFileSync(path.join(outDir, file), `${JSON.stringify(schema, null, 2)}\n`);
  process.stdout.write(`wrote ${path.join(path.basename(outDir), file)}\n`);
}
