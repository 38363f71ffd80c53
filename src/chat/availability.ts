// Availability (DESIGN.md "Offline continuity"): whether a visitor can expect an agent now — the
// tenant is in its business hours and at least one agent has a socket on some node. What
// `GET /api/chat/availability` answers and `availability_changed` carries to the tenant-wide room.
import type { TenantConfig } from '../config/schema.js';
import { BusinessHours } from './business-hours.js';

/** A tenant's availability settings, prepared once per config (a reload builds new ones). */
export interface AvailabilitySettings {
  /** Undefined: always open. */
  readonly hours: BusinessHours | undefined;
  readonly awayMessage: string | undefined;
  readonly expectedReplySeconds: number | undefined;
  /** The config they were built from, as JSON: equal strings, equal settings (a reload's test for a change). */
  readonly source: string;
}

export const ALWAYS_OPEN: AvailabilitySettings = Object.freeze({
  hours: undefined,
  awayMessage: undefined,
  expectedReplySeconds: undefined,
  source: '{}',
});

export function availabilitySettings(
  t: Pick<TenantConfig, 'businessHours' | 'awayMessage' | 'expectedReplySeconds'>,
): AvailabilitySettings {
  return Object.freeze({
    hours: t.businessHours ? new BusinessHours(t.businessHours) : undefined,
    awayMessage: t.awayMessage,
    expectedReplySeconds: t.expectedReplySeconds,
    source: JSON.stringify({ businessHours: t.businessHours, awayMessage: t.awayMessage, expectedReplySeconds: t.expectedReplySeconds }),
  });
}

/** The wire shape (schema: AvailabilityResponse in src/roles/api/schemas.ts). */
export interface Availability {
  readonly available: boolean;
  readonly agentsOnline: number;
  readonly inBusinessHours: boolean;
  /** ISO 8601, when out of business hours and an opening is scheduled. */
  readonly nextOpenAt?: string;
  /** The tenant's away message, while not available. */
  readonly awayMessage?: string;
  readonly expectedReplySeconds?: number;
}

export function availabilityOf(settings: AvailabilitySettings, agentsOnline: number, nowMs: number): Availability {
  const state = settings.hours?.stateAt(nowMs) ?? { open: true };
  const available = state.open && agentsOnline > 0;
  return {
    available,
    agentsOnline,
    inBusinessHours: state.open,
    ...(state.nextOpenAt !== undefined ? { nextOpenAt: new Date(state.nextOpenAt).toISOString() } : {}),
    ...(!available && settings.awayMessage !== undefined ? { awayMessage: settings.awayMessage } : {}),
    ...(settings.expectedReplySeconds !== undefined ? { expectedReplySeconds: settings.expectedReplySeconds } : {}),
  };
}

/** Whether two answers differ in what a widget shows (the event is sent only then). */
export const sameAvailability = (a: Availability, b: Availability): boolean =>
  a.available === b.available &&
  a.agentsOnline === b.agentsOnline &&
  a.inBusinessHours === b.inBusinessHours &&
  a.nextOpenAt === b.nextOpenAt &&
  a.awayMessage === b.awayMessage &&
  a.expectedReplySeconds === b.expectedReplySeconds;
