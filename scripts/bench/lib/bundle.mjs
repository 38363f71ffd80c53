// Bundles a TypeScript entry of the checkout with esbuild and imports it: the bench scripts run
// under plain Node. `outfile` should be inside the checkout, so the bundle's bare imports resolve
// from node_modules; it is removed once imported.
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/** The module `entry` (a .ts file) exports; `options` adds to or overrides the esbuild options. */
export async function importBundled(entry, outfile, options = {}) {
  fs.mkdirSync(path.dirname(outfile), { recursive: true });
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    packages: 'external',
    logLevel: 'warning',
    ...options,
  });
  try {
    return await import(pathToFileURL(outfile).href);
  } finally {
    fs.rmSync(outfile, { force: true });
  }
}
