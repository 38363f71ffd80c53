// Loads the configuration: find the file (cosmiconfig, or --config), parse YAML, interpolate
// ${VAR} / ${VAR:-default}, overlay the guide's environment variables, validate against the
// schema with its defaults, freeze. Every error names the file and the key path.
import { clockMinutes, isTimeZone } from '../chat/business-hours.js';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { cosmiconfig } from 'cosmiconfig';
import YAML from 'yaml';
import { ConfigSchema, type Config } from './schema.js';
import { compileValidator } from '../schemas/validate.js';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface LoadedConfig {
  readonly config: Config;
  /** The file it came from; undefined when running on defaults and the environment. */
  readonly file: string | undefined;
}

export interface LoadOptions {
  /** An explicit file (`--config`); otherwise cosmiconfig searches from `cwd`. */
  file?: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Values that win over the file (CLI flags such as --log-level). */
  overrides?: (raw: Record<string, unknown>) => void;
}

const MODULE = 'chat-server';
const SEARCH_PLACES = [
  'chat-server.yaml',
  'chat-server.yml',
  'chat-server.json',
  `.${MODULE}rc`,
  `.${MODULE}rc.yaml`,
  `.${MODULE}rc.yml`,
  `.${MODULE}rc.json`,
  `.config/${MODULE}.yaml`,
  `.config/${MODULE}rc.yaml`,
];

const parseYaml = (filepath: string, content: string): unknown => {
  const doc = YAML.parseDocument(content, { prettyErrors: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new ConfigError(`${path.basename(filepath)}: invalid YAML: ${e.message.split('\n')[0]}`);
  }
  return doc.toJS() ?? {};
};

const validate = compileValidator(ConfigSchema, { useDefaults: true, coerceTypes: true });

export async function loadConfig(opts: LoadOptions = {}): Promise<LoadedConfig> {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  let raw: unknown = {};
  let file: string | undefined;

  if (opts.file) {
    file = path.resolve(cwd, opts.file);
    let content: string;
    try {
      content = await readFile(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`${opts.file}: cannot read config file (${(err as NodeJS.ErrnoException).code ?? err})`);
    }
    raw = file.endsWith('.json') ? parseJson(file, content) : parseYaml(file, content);
  } else {
    const explorer = cosmiconfig(MODULE, {
      searchPlaces: SEARCH_PLACES,
      searchStrategy: 'none',
      loaders: { '.yaml': parseYaml, '.yml': parseYaml, noExt: parseYaml },
    });
    const found = await explorer.search(cwd).catch((err: unknown) => {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(`cannot load config: ${(err as Error).message}`);
    });
    if (found && !found.isEmpty) {
      raw = found.config;
      file = found.filepath;
    }
  }

  const label = file ? path.relative(cwd, file) || path.basename(file) : '(environment)';
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(`${label}: the config must be a mapping of keys`);
  }
  const interpolated = interpolate(raw, env, label, '') as Record<string, unknown>;
  applyGuideEnv(interpolated, env);
  opts.overrides?.(interpolated);

  const result = validate(interpolated);
  if (!result.ok) {
    const first = result.errors[0]!;
    const more =
      result.errors.length > 1
        ? ` (and ${result.errors.length - 1} more: ${result.errors
            .slice(1, 4)
            .map((e) => `${e.path} ${e.message}`)
            .join('; ')})`
        : '';
    throw new ConfigError(`${label}: ${first.path} ${first.message}${more}`);
  }
  const config = result.value as Config;
  checkSemantics(config, label);
  return { config: deepFreeze(config), file };
}

function parseJson(file: string, content: string): unknown {
  try {
    return JSON.parse(content);
  } catch (err) {
    throw new ConfigError(`${path.basename(file)}: invalid JSON: ${(err as Error).message}`);
  }
}

const VAR = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** Replaces ${VAR} and ${VAR:-default} in every string; an unset variable without default is an error. */
export function interpolate(value: unknown, env: NodeJS.ProcessEnv, label: string, at: string): unknown {
  if (typeof value === 'string') {
    return value.replace(VAR, (_m, name: string, def: string | undefined) => {
      const v = env[name];
      if (v !== undefined && v !== '') return v;
      if (def !== undefined) return def;
      throw new ConfigError(`${label}: ${at || '(root)'} uses \${${name}}, which is not set`);
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, label, `${at}[${i}]`));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = interpolate(v, env, label, at ? `${at}.${k}` : k);
    return out;
  }
  return value;
}

const list = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/**
 * The guide's variables work with no file. They fill keys the file leaves unset: a value written in
 * the file (possibly as ${VAR}) wins.
 */
export function applyGuideEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  const section = (name: string): Record<string, unknown> => {
    const s = raw[name];
    if (s && typeof s === 'object' && !Array.isArray(s)) return s as Record<string, unknown>;
    const created: Record<string, unknown> = {};
    raw[name] = created;
    return created;
  };
  const set = (sec: string, key: string, value: unknown) => {
    const s = section(sec);
    if (s[key] === undefined) s[key] = value;
  };
  if (env.GATEWAY_API_KEY) set('auth', 'gatewayApiKey', env.GATEWAY_API_KEY);
  if (env.JWT_SECRET) set('auth', 'jwtSecret', env.JWT_SECRET);
  if (env.REDIS_URL) set('redis', 'url', env.REDIS_URL);
  // A cluster is named by its seeds; REDIS_URL set beside it is refused by checkSemantics below.
  if (env.REDIS_CLUSTER_NODES) set('redis', 'cluster', { nodes: list(env.REDIS_CLUSTER_NODES) });
  if (env.DATABASE_URL) set('database', 'url', env.DATABASE_URL);
  if (env.BACKEND_API_URL) set('upstreams', 'api', list(env.BACKEND_API_URL));
  if (env.BACKEND_WS_URL) set('upstreams', 'ws', list(env.BACKEND_WS_URL));
  if (env.CHATD_DATA_DIR && raw.dataDir === undefined) raw.dataDir = env.CHATD_DATA_DIR;
}

/** Checks the schema cannot express: cross-field rules. */
function checkSemantics(config: Config, label: string): void {
  const fail = (p: string, msg: string) => {
    throw new ConfigError(`${label}: ${p} ${msg}`);
  };
  const ids = new Set<string>();
  config.tenants.forEach((t, i) => {
    if (ids.has(t.id)) fail(`tenants[${i}].id`, `repeats tenant "${t.id}"`);
    ids.add(t.id);
    t.apiKeys.forEach((k, j) => {
      const at = `tenants[${i}].apiKeys[${j}]`;
      if (!k.key === !k.hash) fail(at, 'must have exactly one of key or hash');
      if (k.hash && !k.kind) fail(`${at}.kind`, 'is required with hash (publishable or secret)');
      if (k.key && k.kind) {
        const derived = k.key.startsWith('ck_sec_') ? 'secret' : 'publishable';
        if (derived !== k.kind) fail(`${at}.kind`, `is ${k.kind} but the key's prefix says ${derived}`);
      }
    });
    if (t.businessHours) {
      const at = `tenants[${i}].businessHours`;
      const hours = t.businessHours;
      if (!isTimeZone(hours.timeZone)) fail(`${at}.timeZone`, `is not a time zone this runtime knows: "${hours.timeZone}"`);
      hours.weekly.forEach((w, j) => {
        if (clockMinutes(w.from) >= clockMinutes(w.to)) fail(`${at}.weekly[${j}]`, `from ${w.from} must be before to ${w.to}`);
      });
      hours.exceptions.forEach((e, j) => {
        const p = `${at}.exceptions[${j}]`;
        if ((e.from === undefined) !== (e.to === undefined)) fail(p, 'needs both from and to, or neither (closed that day)');
        if (e.from !== undefined && e.to !== undefined && clockMinutes(e.from) >= clockMinutes(e.to)) {
          fail(p, `from ${e.from} must be before to ${e.to}`);
        }
        if (Number.isNaN(Date.parse(`${e.date}T00:00:00Z`))) fail(`${p}.date`, `is not a date: "${e.date}"`);
      });
    }
    if (t.identityVerification === 'required' && !t.identitySecret && !t.jwtVerificationKey) {
      fail(`tenants[${i}].identitySecret`, 'is required when identityVerification is required');
    }
  });
  if (config.email.smtp) {
    if (!config.email.from) fail('email.from', 'is required with email.smtp');
    if (!config.email.publicUrl) fail('email.publicUrl', 'is required with email.smtp (the unsubscribe link points there)');
  }
  if (!config.email.inboundSecret !== !config.email.replyDomain) {
    fail(
      config.email.inboundSecret ? 'email.replyDomain' : 'email.inboundSecret',
      'is required with the other (replies by email need both)',
    );
  }
  if (config.auth.defaultTenant && config.tenants.length > 0 && !ids.has(config.auth.defaultTenant)) {
    fail('auth.defaultTenant', `names tenant "${config.auth.defaultTenant}", which is not configured`);
  }
  config.auth.jwtKeys.forEach((k, i) => {
    const at = `auth.jwtKeys[${i}]`;
    if (k.algorithm === 'HS256' && !k.secret) fail(`${at}.secret`, 'is required for HS256');
    if (k.algorithm !== 'HS256' && !k.publicKeyFile) fail(`${at}.publicKeyFile`, `is required for ${k.algorithm}`);
  });
  if (config.redis.url && config.redis.sentinel) fail('redis', 'must have url or sentinel, not both');
  if (config.redis.cluster && (config.redis.url || config.redis.sentinel)) {
    fail('redis.cluster', 'excludes redis.url and redis.sentinel (a cluster is named by its seed nodes only)');
  }
}

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
