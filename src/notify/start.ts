// Starts offline continuity's email worker when `email.smtp` is configured (off otherwise): the
// SMTP transport (nodemailer, from the URL), and the worker every node with the database runs.
import nodemailer from 'nodemailer';
import type { Logger } from 'pino';
import type { TenantDirectory } from '../auth/tenants.js';
import type { Config } from '../config/schema.js';
import { ConfigError } from '../config/load.js';
import type { Database } from '../db/ports.js';
import type { AgentPresenceStore, PresenceStore } from '../store/ports.js';
import { EmailWorker } from './email-worker.js';

/** The key signing unsubscribe links (and reply tokens): email.secret, else the JWT secret. */
export function emailSecret(config: Pick<Config, 'email' | 'auth'>): string | undefined {
  return config.email.secret ?? config.auth.jwtSecret ?? config.auth.jwtKeys.find((k) => k.secret)?.secret;
}

export function startEmailWorker(
  config: Config,
  deps: {
    db: Database;
    presence: Pick<PresenceStore, 'isOnline'>;
    agents: Pick<AgentPresenceStore, 'count'>;
    tenants: () => TenantDirectory;
    logger: Logger;
  },
): EmailWorker | undefined {
  const { smtp, from, publicUrl } = config.email;
  if (!smtp) return undefined;
  const secret = emailSecret(config);
  if (!secret || !from || !publicUrl)
    throw new ConfigError('email.smtp needs email.from, email.publicUrl and email.secret (or auth.jwtSecret)');
  const transport = nodemailer.createTransport(smtp, { disableFileAccess: true, disableUrlAccess: true });
  const worker = new EmailWorker({
    email: { ...config.email, secret, from, publicUrl },
    offline: deps.db.offline,
    messages: deps.db.messages,
    presence: deps.presence,
    agents: deps.agents,
    tenants: deps.tenants,
    transport: {
      sendMail: (mail) => transport.sendMail(mail),
      close: () => transport.close(),
    },
    logger: deps.logger,
  });
  worker.start();
  return worker;
}
