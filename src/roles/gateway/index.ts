// The gateway role. (Foundation: health only; the role's issue fills it in.)
import type { RoleFactory } from '../../app/types.js';

export const createGatewayRole: RoleFactory = async () => ({
  readiness: [],
  async drain() {},
  async close() {},
});
