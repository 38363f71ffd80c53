// Runs chatd (the built CLI) in a process started with --expose-gc and answers `heap` requests over
// IPC with process.memoryUsage() after two full GCs: for measuring JS heap per connection.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
process.on('message', (msg) => {
  if (msg !== 'heap') return;
  globalThis.gc?.();
  globalThis.gc?.();
  process.send?.({ heap: process.memoryUsage() });
});
const { run } = await import(path.join(root, 'dist', 'chatd.mjs'));
await run([process.argv[0], 'chatd', ...process.argv.slice(2)]);
