// Puts the demo pages on a listener that serves both the HTTP API and Socket.IO (`--role all`),
// when `demo.enabled` says so, and logs their URLs once the listener is bound.
import type { ListenerMount } from '../app/serve.js';
import { demoEnabled, demoUrls, mountDemo } from './index.js';

export const demoMount: ListenerMount = (listener, router, { config, logger, services }) => {
  if (!demoEnabled(config) || !listener.roles.includes('api') || !listener.roles.includes('ws')) return;
  mountDemo(router, config, {
    async mintAgentToken(tenantId, userId) {
      const minted = await (
        await services()
      ).auth.tokens.mint({
        tenantId,
        role: 'agent',
        subject: userId,
        name: 'Demo agent',
        ttlSeconds: config.auth.agentTokenTtlSeconds,
      });
      return { token: minted.token, expiresIn: minted.expiresIn };
    },
  });
  return (baseUrl) => {
    const urls = demoUrls(baseUrl);
    logger.info({ demo: urls }, `demo: visitor page ${urls.visitor} — agent console ${urls.agent}`);
  };
};
