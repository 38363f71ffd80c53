// Zero-config secrets: with no JWT secret, API keys (publishable and secret) or admin token configured, chatd
// generates them once into `<dataDir>/secrets.json` (mode 0600) and every later command reads the
// same file, so `chatd token issue` mints tokens the running server accepts.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile, chmod } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from './schema.js';
import { deepFreeze } from './load.js';

export interface GeneratedSecrets {
  jwtSecret?: string;
  gatewayApiKey?: string;
  /** The zero-config secret key (`ck_sec_…`), accepted for any tenant while none is configured. */
  secretApiKey?: string;
  adminToken?: string;
}

export interface ResolvedSecrets {
  readonly config: Config;
  /** Which secrets were generated during this call (to announce them once). */
  readonly generated: readonly (keyof GeneratedSecrets)[];
  readonly file: string;
}

export const secretsFile = (config: Pick<Config, 'dataDir'>) => path.resolve(config.dataDir, 'secrets.json');

const token = (bytes: number) => randomBytes(bytes).toString('base64url');

/**
 * Returns the config with every missing secret filled from (or generated into) the data folder.
 * `create: false` only reads the file (commands that must not write, e.g. `config print`).
 */
export async function resolveSecrets(config: Config, opts: { create?: boolean } = {}): Promise<ResolvedSecrets> {
  const file = secretsFile(config);
  let stored: GeneratedSecrets = {};
  try {
    stored = JSON.parse(await readFile(file, 'utf8')) as GeneratedSecrets;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new Error(`${file}: cannot read generated secrets (${(err as Error).message})`, { cause: err });
    }
  }
  const needJwt = !config.auth.jwtSecret && config.auth.jwtKeys.length === 0;
  // With tenants configured and no GATEWAY_API_KEY, tenants' own keys are the keys: none is generated.
  const needKey = !config.auth.gatewayApiKey && config.tenants.length === 0;
  // A secret key for the server side of zero-config (agent tokens, broadcast, online users): the
  // publishable key lives in the widget and may only mint visitor tokens.
  const needSecretKey = !config.auth.secretApiKey && config.tenants.length === 0;
  const needAdmin = config.admin.enabled && !config.admin.token;

  const generated: (keyof GeneratedSecrets)[] = [];
  if (needJwt && !stored.jwtSecret) {
    stored.jwtSecret = token(48);
    generated.push('jwtSecret');
  }
  if (needKey && !stored.gatewayApiKey) {
    stored.gatewayApiKey = `ck_pub_${token(24)}`;
    generated.push('gatewayApiKey');
  }
  if (needSecretKey && !stored.secretApiKey) {
    stored.secretApiKey = `ck_sec_${token(32)}`;
    generated.push('secretApiKey');
  }
  if (needAdmin && !stored.adminToken) {
    stored.adminToken = token(32);
    generated.push('adminToken');
  }

  if (generated.length > 0 && opts.create !== false) {
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(stored, null, 2)}\n`, { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, file);
  }

  const merged: Config = structuredClone(config) as Config;
  if (needJwt) merged.auth.jwtSecret = stored.jwtSecret;
  if (needKey) merged.auth.gatewayApiKey = stored.gatewayApiKey;
  if (needSecretKey) merged.auth.secretApiKey = stored.secretApiKey;
  if (needAdmin) merged.admin.token = stored.adminToken;
  return { config: deepFreeze(merged), generated: opts.create === false ? [] : generated, file };
}
