import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { generatedFiles, REFERENCE_PAGE } from './generate.js';
import { configFields } from './config-docs.js';

const root = path.resolve(__dirname, '../..');

describe('generated files', () => {
  it('schemas/, chat-server.example.yaml and the config reference in docs/configuration.md are current (run `npm run schemas`)', () => {
    const files = generatedFiles(root);
    expect(Object.keys(files)).toContain(path.join(root, REFERENCE_PAGE));
    for (const [file, content] of Object.entries(files)) {
      expect(readFileSync(file, 'utf8'), `${path.relative(root, file)} is stale: run npm run schemas`).toBe(content);
    }
  });

  it('every config key is documented', () => {
    const undocumented = configFields().filter((f) => !f.schema.description).map((f) => f.path);
    expect(undocumented).toEqual([]);
  });
});
