// A tenant as the config gives it, with every field at its empty default unless the test says.
import type { Config } from '../../src/config/schema.js';

export type TenantConfig = Config['tenants'][number];

export const tenant = (id: string, extra: Partial<TenantConfig> = {}): TenantConfig => ({
  id,
  apiKeys: [],
  allowedOrigins: [],
  identityVerification: 'optional',
  webhooks: [],
  retention: {},
  conversations: { reopenOnVisitorMessage: true, autoAssign: { mode: 'off', maxOpenPerAgent: 10 } },
  ...extra,
});
