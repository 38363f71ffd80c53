// Business hours against known instants in zones with daylight saving time (Europe/Paris,
// America/New_York), a lunch break, 24:00, dated exceptions, and a tenant that never opens.
import { describe, expect, it } from 'vitest';
import { BusinessHours, isTimeZone } from './business-hours.js';

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

describe('BusinessHours', () => {
  const paris = new BusinessHours({
    timeZone: 'Europe/Paris',
    weekly: [
      { days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '09:00', to: '12:30' },
      { days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '13:30', to: '18:00' },
      { days: ['sat'], from: '10:00', to: '24:00' },
    ],
    exceptions: [{ date: '2026-12-25' }, { date: '2026-12-24', from: '09:00', to: '12:00' }],
  });

  it('is open inside a range and closed outside, in local time (winter: UTC+1)', () => {
    // Monday 2026-12-07 09:00 Paris = 08:00 UTC.
    expect(paris.stateAt(at('2026-12-07T08:00:00Z'))).toEqual({ open: true });
    expect(paris.stateAt(at('2026-12-07T07:59:59Z'))).toEqual({ open: false, nextOpenAt: at('2026-12-07T08:00:00Z') });
    // The lunch break: closed 12:30–13:30 local.
    expect(iso(paris.stateAt(at('2026-12-07T11:45:00Z')).nextOpenAt)).toBe('2026-12-07T12:30:00.000Z');
    // Friday evening: next open Saturday 10:00, open until midnight (24:00).
    expect(iso(paris.stateAt(at('2026-12-11T18:00:00Z')).nextOpenAt)).toBe('2026-12-12T09:00:00.000Z');
    expect(paris.stateAt(at('2026-12-12T22:59:00Z'))).toEqual({ open: true });
    // Sunday: closed all day; next open Monday 09:00.
    expect(iso(paris.stateAt(at('2026-12-12T23:00:00Z')).nextOpenAt)).toBe('2026-12-14T08:00:00.000Z');
  });

  it('follows daylight saving time (summer: UTC+2)', () => {
    // Monday 2026-06-01 09:00 Paris = 07:00 UTC.
    expect(paris.stateAt(at('2026-06-01T07:00:00Z'))).toEqual({ open: true });
    expect(paris.stateAt(at('2026-06-01T06:59:00Z')).open).toBe(false);
    // Friday 2026-03-27 evening: the next opening (Saturday 28 March, 10:00) is still UTC+1,
    // Monday 30 March 09:00 is after the change (29 March) — UTC+2.
    expect(iso(paris.stateAt(at('2026-03-27T18:00:00Z')).nextOpenAt)).toBe('2026-03-28T09:00:00.000Z');
    expect(iso(paris.stateAt(at('2026-03-28T23:30:00Z')).nextOpenAt)).toBe('2026-03-30T07:00:00.000Z');
  });

  it('applies dated exceptions in place of the weekly ranges', () => {
    // Thursday 24 December: 09:00–12:00 only.
    expect(paris.stateAt(at('2026-12-24T10:59:00Z')).open).toBe(true);
    expect(paris.stateAt(at('2026-12-24T11:00:00Z')).open).toBe(false);
    // Christmas (Friday) closed; next open Saturday 26 at 10:00.
    expect(iso(paris.stateAt(at('2026-12-24T11:00:00Z')).nextOpenAt)).toBe('2026-12-26T09:00:00.000Z');
  });

  it('other zones, and hours that never open', () => {
    const ny = new BusinessHours({ timeZone: 'America/New_York', weekly: [{ days: ['mon'], from: '00:00', to: '24:00' }], exceptions: [] });
    // Monday 2026-12-07 00:00 New York = 05:00 UTC.
    expect(ny.stateAt(at('2026-12-07T05:00:00Z')).open).toBe(true);
    expect(ny.stateAt(at('2026-12-07T04:59:00Z'))).toEqual({ open: false, nextOpenAt: at('2026-12-07T05:00:00Z') });
    expect(ny.stateAt(at('2026-12-08T04:59:00Z')).open).toBe(true);
    expect(ny.stateAt(at('2026-12-08T05:00:00Z')).open).toBe(false);
    const never = new BusinessHours({ timeZone: 'UTC', weekly: [], exceptions: [] });
    expect(never.stateAt(Date.now())).toEqual({ open: false });
    expect(isTimeZone('Europe/Paris')).toBe(true);
    expect(isTimeZone('Mars/Olympus')).toBe(false);
  });
});
