// The protocol layer alone (src/protocol/harness.ts: no store, no database, no role), bundled on the
// fly, in a process started with --expose-gc; answers `heap` over IPC like heap-server.mjs. For
// telling the protocol layer's share of per-connection memory from the ws role's.
import { build } from 'esbuild';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
// Inside the checkout, so the bundle's bare imports resolve from node_modules.
const outfile = path.join(root, 'dist', `protocol-harness-${process.pid}.mjs`);
await build({
  entryPoints: [path.join(root, 'src/protocol/harness.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  packages: 'external',
  logLevel: 'warning',
  absWorkingDir: root,
});
process.on('message', (msg) => {
  if (msg !== 'heap') return;
  globalThis.gc?.();
  globalThis.gc?.();
  process.send?.({ heap: process.memoryUsage() });
});
const { startHarness } = await import(outfile);
(await import('node:fs')).rmSync(outfile, { force: true });
const h = await startHarness({ maxConnections: 19000 }, { acceptAnyToken: true });
process.stdout.write(`LISTENING ${h.port}\n`);
