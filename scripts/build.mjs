// Builds dist/ from src/ with esbuild: one ESM bundle of our own code per entry point, every
// package left external (node_modules is there after `npm ci`). The single binary has its own,
// fully bundled build in scripts/package/.
import { build } from 'esbuild';
import { existsSync } from 'node:fs';
import { rawPlugin } from './esbuild-raw.mjs';

const entryPoints = {
  chatd: 'src/cli/main.ts',
  'gen-schemas': 'src/schemas/generate.ts',
};
const present = Object.fromEntries(Object.entries(entryPoints).filter(([, file]) => existsSync(file)));

await build({
  entryPoints: present,
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  packages: 'external',
  sourcemap: 'linked',
  logLevel: 'warning',
  plugins: [rawPlugin],
  define: { 'process.env.CHATD_BUILD_COMMIT': JSON.stringify(process.env.CHATD_BUILD_COMMIT ?? '') },
});
