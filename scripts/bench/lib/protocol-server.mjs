// The protocol layer alone (src/protocol/harness.ts: no store, no database, no role), bundled on the
// fly, in a process started with --expose-gc; answers `heap` over IPC like heap-server.mjs. For
// telling the protocol layer's share of per-connection memory from the ws role's.
import { importBundled } from './bundle.mjs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
// Inside the checkout, so the bundle's bare imports resolve from node_modules.
const outfile = path.join(root, 'dist', `protocol-harness-${process.pid}.mjs`);
process.on('message', (msg) => {
  if (msg !== 'heap') return;
  globalThis.gc?.();
  globalThis.gc?.();
  process.send?.({ heap: process.memoryUsage() });
});
const { startHarness } = await importBundled(path.join(root, 'src/protocol/harness.ts'), outfile, { absWorkingDir: root });
const h = await startHarness({ maxConnections: 19000 }, { acceptAnyToken: true });
process.stdout.write(`LISTENING ${h.port}\n`);
