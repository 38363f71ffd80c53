// Business hours: whether a tenant is open at an instant, and when it next opens, in the tenant's
// IANA time zone. The time zone data is the runtime's (Intl, i.e. ICU's tz database): nothing here
// knows a rule about offsets or daylight saving time; local wall-clock times are mapped to instants
// by asking Intl for the offset at that instant.
import type { BusinessHoursConfig } from '../config/schema.js';
import { WEEKDAYS } from '../config/schema.js';

/** Minutes since local midnight, `24:00` = 1440. */
export const clockMinutes = (hhmm: string): number => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

/** Whether the runtime knows this IANA time zone. */
export function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

const formatters = new Map<string, Intl.DateTimeFormat>();
/** One formatter per zone: creating one costs far more than formatting with it. */
function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(tz, f);
  }
  return f;
}

interface Wall {
  readonly y: number;
  readonly m: number;
  readonly d: number;
  readonly minute: number;
  readonly second: number;
}

function wallClock(tz: string, ms: number): Wall {
  const p: Record<string, number> = {};
  for (const part of formatter(tz).formatToParts(ms)) if (part.type !== 'literal') p[part.type] = Number(part.value);
  return { y: p.year!, m: p.month!, d: p.day!, minute: p.hour! * 60 + p.minute!, second: p.second! };
}

/** The zone's offset from UTC at instant `ms`, in ms (wall clock read as UTC, minus the instant). */
function offsetAt(tz: string, ms: number): number {
  const w = wallClock(tz, ms);
  return Date.UTC(w.y, w.m - 1, w.d, 0, w.minute, w.second) - Math.floor(ms / 1000) * 1000;
}

/** The instant of a local wall-clock time (a time skipped by a DST change lands just after the gap). */
function instantOf(tz: string, y: number, m: number, d: number, minute: number): number {
  const guess = Date.UTC(y, m - 1, d, 0, minute);
  const first = offsetAt(tz, guess);
  const t = guess - first;
  const second = offsetAt(tz, t);
  return second === first ? t : guess - second;
}

interface Range {
  readonly from: number;
  readonly to: number;
}

const dateKey = (y: number, m: number, d: number) => `${y}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}`;

/** A tenant's hours, prepared once per config (reload builds a new one). */
export class BusinessHours {
  private readonly weekly: Range[][] = WEEKDAYS.map(() => []);
  private readonly exceptions = new Map<string, Range[]>();

  constructor(private readonly cfg: BusinessHoursConfig) {
    for (const w of cfg.weekly) {
      for (const day of w.days) this.weekly[WEEKDAYS.indexOf(day)]!.push({ from: clockMinutes(w.from), to: clockMinutes(w.to) });
    }
    for (const e of cfg.exceptions) {
      let list = this.exceptions.get(e.date);
      if (!list) this.exceptions.set(e.date, (list = []));
      if (e.from !== undefined && e.to !== undefined) list.push({ from: clockMinutes(e.from), to: clockMinutes(e.to) });
    }
    for (const list of [...this.weekly, ...this.exceptions.values()]) list.sort((a, b) => a.from - b.from);
  }

  get timeZone(): string {
    return this.cfg.timeZone;
  }

  /** The ranges of a local date: its exceptions if it has any, else its weekday's. */
  private rangesOf(y: number, m: number, d: number): Range[] {
    const exception = this.exceptions.get(dateKey(y, m, d));
    if (exception) return exception;
    const weekday = (new Date(Date.UTC(y, m - 1, d)).getUTCDay() + 6) % 7; // 0 = Monday
    return this.weekly[weekday]!;
  }

  /** Open at `nowMs`; when closed, the next opening instant (none within a year and a bit: undefined). */
  stateAt(nowMs: number): { open: boolean; nextOpenAt?: number } {
    const tz = this.cfg.timeZone;
    const w = wallClock(tz, nowMs);
    const today = this.rangesOf(w.y, w.m, w.d);
    if (today.some((r) => r.from <= w.minute && w.minute < r.to)) return { open: true };
    const later = today.find((r) => r.from > w.minute);
    if (later) return { open: false, nextOpenAt: instantOf(tz, w.y, w.m, w.d, later.from) };
    for (let k = 1; k <= 400; k++) {
      const day = new Date(Date.UTC(w.y, w.m - 1, w.d + k));
      const [y, m, d] = [day.getUTCFullYear(), day.getUTCMonth() + 1, day.getUTCDate()];
      const first = this.rangesOf(y, m, d).find((r) => r.to > r.from);
      if (first) return { open: false, nextOpenAt: instantOf(tz, y, m, d, first.from) };
    }
    return { open: false };
  }
}
