import { describe, expect, it } from 'vitest';
import type { AdminContext, AdminRoutes } from '../app/serve.js';
import type { Handler, Req } from '../http/router.js';
import { type ChatdError } from '../errors.js';
import { webhookAdminEndpoints } from './admin.js';

describe('webhook admin endpoints', () => {
  const routes = new Map<string, Handler>();
  const admin: AdminRoutes = { route: (method, path, handler) => void routes.set(`${method} ${path}`, handler) };
  webhookAdminEndpoints(admin, {} as AdminContext);
  const call = async (route: string, req: Partial<Req>) => {
    try {
      await routes.get(route)!({ query: new URLSearchParams(), ...req } as Req);
      return undefined;
    } catch (err) {
      return err as ChatdError;
    }
  };

  it('refuses bad parameters with a 400 naming them, and answers 404 when no dispatcher runs here', async () => {
    expect([...routes.keys()].sort()).toEqual(['GET /admin/webhooks/dead', 'POST /admin/webhooks/replay']);
    const badLimit = await call('GET /admin/webhooks/dead', { query: new URLSearchParams('limit=0') });
    expect([badLimit?.status, badLimit?.details?.[0]?.path]).toEqual([400, 'limit']);
    const badAfter = await call('GET /admin/webhooks/dead', { query: new URLSearchParams('after=x') });
    expect([badAfter?.status, badAfter?.details?.[0]?.path]).toEqual([400, 'after']);
    expect((await call('POST /admin/webhooks/replay', { body: {} }))?.message).toBe(
      'Give either ids (an array of dead entry ids) or all: true',
    );
    expect((await call('POST /admin/webhooks/replay', { body: { ids: ['1-0'], all: true } }))?.status).toBe(400);
    expect((await call('POST /admin/webhooks/replay', { body: { ids: ['nope'] } }))?.status).toBe(400);
    const none = await call('GET /admin/webhooks/dead', {});
    expect([none?.status, none?.code]).toEqual([404, 'not_found']);
  });
});
