// `chatd keys show`: the API keys this configuration accepts, read from the config and the data
// folder's secrets file (the zero-config keys the first start printed once). It prints key material
// on purpose, to the terminal of whoever can read the config; it never goes through a log.
import type { Command } from 'commander';
import { action, globals, loadCliConfig, printJson, printTable } from './common.js';
import { resolveSecrets } from '../config/secrets.js';
import type { Config } from '../config/schema.js';

export interface ShownKey {
  readonly kind: 'publishable' | 'secret';
  /** The tenant the key acts for; `*` = any tenant (zero-config). */
  readonly tenant: string;
  /** The key, or null when the config holds only its hash. */
  readonly key: string | null;
  readonly name: string | null;
  readonly source: string;
}

/** Every API key the configuration accepts, with what it may do. */
export function acceptedKeys(config: Config): ShownKey[] {
  const out: ShownKey[] = [];
  const zeroConfig = config.tenants.length === 0;
  const gw = config.auth.gatewayApiKey;
  if (gw) {
    const owner = zeroConfig ? '*' : (config.auth.defaultTenant ?? (config.tenants.length === 1 ? config.tenants[0]!.id : undefined));
    if (owner) out.push({ kind: 'publishable', tenant: owner, key: gw, name: 'GATEWAY_API_KEY', source: 'auth.gatewayApiKey' });
  }
  if (zeroConfig && config.auth.secretApiKey) {
    out.push({ kind: 'secret', tenant: '*', key: config.auth.secretApiKey, name: 'zero-config secret key', source: 'auth.secretApiKey' });
  }
  config.tenants.forEach((t, i) =>
    t.apiKeys.forEach((k, j) =>
      out.push({
        kind: k.kind ?? (k.key?.startsWith('ck_sec_') ? 'secret' : 'publishable'),
        tenant: t.id,
        key: k.key ?? null,
        name: k.name ?? null,
        source: `tenants[${i}].apiKeys[${j}]`,
      }),
    ),
  );
  return out;
}

export function registerKeysCommands(program: Command): void {
  const keys = program.command('keys').description('Show the API keys this configuration accepts.');
  keys
    .command('show')
    .description('Print the API keys (the zero-config keys generated into the data folder, and configured ones).')
    .addHelpText('after', '\nExamples:\n  $ chatd keys show\n  $ chatd keys show --json | jq -r \'.[] | select(.kind=="secret") | .key\'')
    .action(
      action(async (_opts: unknown, cmd: Command) => {
        const { config: loaded } = await loadCliConfig(cmd);
        // The same file the server reads (created if this comes before the first start, so the
        // keys shown are the ones the server will accept).
        const { config } = await resolveSecrets(loaded);
        const rows = acceptedKeys(config);
        if (globals(cmd).json) printJson(rows);
        else
          printTable(
            rows.map((r) => ({ ...r, key: r.key ?? '(hash only)' })),
            ['kind', 'tenant', 'key', 'name', 'source'],
          );
      }),
    );
}
