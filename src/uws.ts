// Loads uWebSockets.js and refuses its slow JS fallback. The npm alias build falls back silently
// when its native binary cannot be loaded; chatd must never run on it. The single binary loads
// the native module itself (scripts/package) and hands it over through globalThis.
import { createRequire } from 'node:module';
import type * as UWS from 'uWebSockets.js';

export type Uws = typeof UWS;
export type { TemplatedApp, HttpRequest, HttpResponse, WebSocket, us_listen_socket } from 'uWebSockets.js';

export class NativeUwsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NativeUwsError';
  }
}

let loaded: Uws | undefined;

export function isNative(mod: unknown): boolean {
  return typeof (mod as { getParts?: unknown }).getParts === 'function';
}

export function loadUws(): Uws {
  if (loaded) return loaded;
  const embedded = (globalThis as { __chatdUws?: Uws }).__chatdUws;
  let mod: Uws;
  if (embedded) mod = embedded;
  else {
    const require = createRequire(import.meta.url);
    mod = require('uWebSockets.js') as Uws;
  }
  if (!isNative(mod)) {
    throw new NativeUwsError(
      `uWebSockets.js native binary did not load (platform ${process.platform}-${process.arch}, ABI ${process.versions.modules}); ` +
        'refusing to run on its slow JavaScript fallback. Use Node 20 on linux-x64/arm64 or darwin, and unset UWS_USE_FALLBACK.',
    );
  }
  loaded = mod;
  return mod;
}
