#!/usr/bin/env node
// chatd's memory on the embedded database: starts `chatd serve --role all` with zero config in a
// fresh folder (the first start runs PGlite's initdb), stops it, starts it again on the same folder,
// and prints each start's time to "database ready", peak RSS (VmHWM) and RSS once settled.
//   node scripts/bench/pglite-rss.mjs        (needs `npm run build` first)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-rss-'));
fs.writeFileSync(path.join(cwd, 'chat-server.yaml'), 'server:\n  port: 0\nadmin:\n  port: 0\nlog:\n  format: json\n');

const mb = (kb) => Math.round(kb / 1024);
function memory(pid) {
  const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (k) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(st)?.[1] ?? 0);
  return { rss: get('VmRSS'), peak: get('VmHWM') };
}

async function start(label) {
  const t0 = performance.now();
  const child = spawn(process.execPath, [path.join(root, 'bin/chatd'), 'serve', '--role', 'all'], {
    cwd,
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  await new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (c) => {
      out += c;
      if (out.includes('"database ready"')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`chatd exited (${code}) before the database was ready:\n${out}`)));
  });
  const readyMs = performance.now() - t0;
  // Let it settle (GC, the initdb worker's memory returned), then read.
  await new Promise((r) => setTimeout(r, 3000));
  const m = memory(child.pid);
  child.kill('SIGTERM');
  await new Promise((r) => child.on('exit', r));
  return { label, readyMs: Math.round(readyMs), peakMB: mb(m.peak), rssMB: mb(m.rss) };
}

try {
  const first = await start('first start (initdb)');
  const later = await start('later start');
  const size = Number(
    (await import('node:child_process')).execFileSync('du', ['-sk', path.join(cwd, '.chatd', 'data')], { encoding: 'utf8' }).split('\t')[0],
  );
  for (const r of [first, later])
    console.log(`${r.label.padEnd(22)} ready in ${String(r.readyMs).padStart(6)} ms  peak RSS ${r.peakMB} MB  settled RSS ${r.rssMB} MB`);
  console.log(`data folder: ${mb(size)} MB`);
  console.log(JSON.stringify({ first, later, dataFolderMB: mb(size) }));
} finally {
  fs.rmSync(cwd, { recursive: true, force: true });
}
