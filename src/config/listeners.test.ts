// Which listeners a role set opens: the gateway with other roles shares one public listener.
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { loadConfig } from './load.js';
import { coLocationProblem, listenerConflict, planListeners } from './listeners.js';
import type { Role } from './schema.js';

const config = async (raw: Record<string, unknown> = {}) =>
  (
    await loadConfig({
      env: {},
      cwd: tmpdir(),
      overrides: (r) => {
        Object.assign(r, {
          server: { host: '0.0.0.0', port: 3000 },
          roles: { api: { host: '127.0.0.1', port: 3001 }, ws: { host: '127.0.0.1', port: 3002 } },
          ...raw,
        });
      },
    })
  ).config;

describe('planListeners', () => {
  it.each<[Role[], { name: string; port: number; roles: Role[] }[]]>([
    [['gateway', 'api', 'ws'], [{ name: 'public', port: 3000, roles: ['gateway', 'api', 'ws'] }]],
    [['gateway', 'ws'], [{ name: 'public', port: 3000, roles: ['gateway', 'ws'] }]],
    [['gateway', 'api'], [{ name: 'public', port: 3000, roles: ['gateway', 'api'] }]],
    [['gateway'], [{ name: 'gateway', port: 3000, roles: ['gateway'] }]],
    [
      ['api', 'ws'],
      [
        { name: 'api', port: 3001, roles: ['api'] },
        { name: 'ws', port: 3002, roles: ['ws'] },
      ],
    ],
    [['ws'], [{ name: 'ws', port: 3002, roles: ['ws'] }]],
  ])('%j', async (roles, expected) => {
    const plans = planListeners(await config(), roles).map(({ name, port, roles: r }) => ({ name, port, roles: r }));
    expect(plans).toEqual(expected);
  });

  it('a co-located gateway uses server.host and server.port: roles.ws.port may equal it', async () => {
    const c = await config({ roles: { ws: { host: '0.0.0.0', port: 3000 } } });
    expect(listenerConflict(c, ['gateway', 'ws'])).toBeUndefined();
    expect(listenerConflict(c, ['gateway', 'api', 'ws'])).toBeUndefined();
    expect(listenerConflict(c, ['ws', 'api'])).toBeUndefined();
  });
});

describe('coLocationProblem', () => {
  it('gateway,ws needs upstreams.api; gateway,api needs upstreams.ws; all and the rest need neither', async () => {
    const bare = await config();
    expect(coLocationProblem(bare, ['gateway', 'ws'])).toMatch(/upstreams\.api/);
    expect(coLocationProblem(bare, ['gateway', 'api'])).toMatch(/upstreams\.ws/);
    expect(coLocationProblem(bare, ['gateway', 'api', 'ws'])).toBeUndefined();
    expect(coLocationProblem(bare, ['api', 'ws'])).toBeUndefined();
    const withUpstreams = await config({ upstreams: { api: ['http://127.0.0.1:4001'], ws: ['http://127.0.0.1:4002'] } });
    expect(coLocationProblem(withUpstreams, ['gateway', 'ws'])).toBeUndefined();
    expect(coLocationProblem(withUpstreams, ['gateway', 'api'])).toBeUndefined();
  });
});
