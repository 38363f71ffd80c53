// Every shell block in the README, CONTRIBUTING.md and docs/ is either run here or marked as an
// example, so a command the docs show cannot silently stop working. A block is preceded by one of:
//   <!-- tested: test/docs/commands.test.ts -->  run below, against a real `chatd serve --role all`
//                                               on the embedded defaults, from its own folder;
//   <!-- tested: PATH[, PATH] -->               run by those test files (or by .ci/run) instead;
//   <!-- example: why -->                        not run (it changes a machine, or never ends).
// The blocks run with `bash -euo pipefail`; `localhost:3000` becomes the server's real address,
// `npx chatd` / `chatd` the checkout's bin/chatd, and curl fails on an HTTP error.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHATD_BIN, spawnChatd, whenReady, type ChatdProcess } from '../helpers/chatd-process.js';

const ROOT = path.resolve(__dirname, '../..');
const SELF = 'test/docs/commands.test.ts';
const SHELL = new Set(['sh', 'bash', 'shell', 'console']);

interface Block {
  readonly where: string;
  readonly marker: string | undefined;
  readonly body: string;
}

function pages(): string[] {
  const docs = readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => path.join('docs', f));
  return ['README.md', 'CONTRIBUTING.md', ...docs.sort()];
}

function shellBlocks(): Block[] {
  const out: Block[] = [];
  for (const page of pages()) {
    const lines = readFileSync(path.join(ROOT, page), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const open = /^```(\S*)\s*$/.exec(lines[i]!);
      if (!open) continue;
      const end = lines.indexOf('```', i + 1);
      if (end < 0) throw new Error(`${page}:${i + 1}: unclosed code block`);
      if (SHELL.has(open[1]!)) {
        let j = i - 1;
        while (j >= 0 && lines[j]!.trim() === '') j--;
        const marker = /^<!-- ((?:tested|example):.*?) -->$/.exec(lines[j]?.trim() ?? '')?.[1];
        out.push({ where: `${page}:${i + 1}`, marker, body: lines.slice(i + 1, end).join('\n') });
      }
      i = end;
    }
  }
  return out;
}

const blocks = shellBlocks();
const runnable = blocks.filter((b) => b.marker === `tested: ${SELF}`);

describe('shell blocks in the docs', () => {
  it('each one is run by a test or marked as an example', () => {
    const unmarked = blocks.filter((b) => b.marker === undefined).map((b) => b.where);
    expect(unmarked, 'precede each shell block with <!-- tested: … --> or <!-- example: why -->').toEqual([]);
    const missing = blocks
      .filter((b) => b.marker?.startsWith('tested: '))
      .flatMap((b) =>
        b
          .marker!.slice('tested: '.length)
          .split(',')
          .map((p) => ({ where: b.where, file: p.trim() })),
      )
      .filter((t) => !existsSync(path.join(ROOT, t.file)))
      .map((t) => `${t.where}: ${t.file}`);
    expect(missing, 'a tested: marker names a file that does not exist').toEqual([]);
    expect(runnable.length).toBeGreaterThan(0);
  });
});

const tools = ['curl', 'jq'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
const ci = process.env.CI === 'true';
if (tools.length > 0 && !ci) console.warn(`[docs] skipping the runnable doc blocks: ${tools.join(', ')} not installed`);

describe.skipIf(tools.length > 0 && !ci)('runnable doc blocks, against chatd serve --role all', () => {
  let cwd: string;
  let bin: string;
  let chatd: ChatdProcess;
  let secrets: Record<string, string>;

  beforeAll(async () => {
    expect(tools, 'the doc blocks need these tools (.ci/run installs them)').toEqual([]);
    cwd = await mkdtemp(path.join(tmpdir(), 'chatd-docs-'));
    await writeFile(path.join(cwd, 'chat-server.yaml'), 'server:\n  host: 127.0.0.1\n  port: 0\nadmin:\n  port: 0\n');
    chatd = await spawnChatd({ cwd });
    // The CLI commands in the blocks find the running server from the same config: name its ports.
    await writeFile(
      path.join(cwd, 'chat-server.yaml'),
      `server:\n  host: 127.0.0.1\n  port: ${chatd.ports.public}\nadmin:\n  port: ${chatd.ports.admin}\n`,
    );
    await whenReady(chatd.ports.public!);
    secrets = JSON.parse(await readFile(path.join(cwd, '.chatd', 'secrets.json'), 'utf8')) as Record<string, string>;
    // `chatd` and `npx chatd` in a block are this checkout's launcher.
    bin = path.join(cwd, 'bin');
    await mkdir(bin);
    await writeFile(path.join(bin, 'chatd'), `#!/bin/sh\nexec "${process.execPath}" "${CHATD_BIN}" "$@"\n`);
    await chmod(path.join(bin, 'chatd'), 0o755);
  }, 300_000);
  afterAll(async () => {
    await chatd?.stop('SIGKILL');
  });

  it.each(runnable.map((b) => [b.where, b] as const))(
    '%s runs',
    async (_where, block) => {
      const script = block.body
        .replaceAll('localhost:3000', `127.0.0.1:${chatd.ports.public}`)
        .replaceAll('npx chatd ', 'chatd ')
        .replace(/\bcurl -s /g, 'curl -sS --fail-with-body ');
      const r = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const child = spawn('bash', ['-euo', 'pipefail', '-c', script], {
          cwd,
          env: { PATH: `${bin}:${process.env.PATH}`, HOME: cwd, SECRET_KEY: secrets.secretApiKey },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
        child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
        const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
        child.on('exit', (code) => {
          clearTimeout(timer);
          resolve({ code, out, err });
        });
      });
      expect(r.code, `${block.where}\n--- stdout\n${r.out}\n--- stderr\n${r.err}`).toBe(0);
      expect(r.out).not.toMatch(/"success":false|"code":"[a-z_]+"/);
    },
    150_000,
  );
});
