// Shell helper: remembers the cooldown-like marks this instance set on accounts, so the
// `switchyard_account_cooldown` gauge (fed by `cooldown` events) is switched off again when a
// mark passes or is lifted. Marks set by other instances show up in the store's flags, not here.
import type { Clock } from '../clock.js';
import type { EventBus } from '../observability/events.js';

/** One slot per kind: a new rate limit replaces a server-error cooldown, not a WS mark. */
export type MarkKind = 'cooldown' | 'ws_unsupported' | 'unauthorized';

interface Mark {
  account: string;
  reason: string;
  untilMs: number;
}

export class CooldownTracker {
  private readonly marks = new Map<string, Mark>();

  constructor(private readonly clock: Clock, private readonly bus: EventBus) {}

  /** `untilMs` Infinity = until lifted. */
  set(account: string, kind: MarkKind, reason: string, untilMs: number): void {
    const key = keyOf(account, kind);
    const prev = this.marks.get(key);
    if (prev && prev.reason !== reason) this.bus.emit({ type: 'cooldown', account, reason: prev.reason, active: false });
    this.marks.set(key, { account, reason, untilMs });
    this.bus.emit({ type: 'cooldown', account, reason, active: true });
  }

  lift(account: string, kind: MarkKind): void {
    const key = keyOf(account, kind);
    const prev = this.marks.get(key);
    if (!prev) return;
    this.marks.delete(key);
    this.bus.emit({ type: 'cooldown', account, reason: prev.reason, active: false });
  }

  /** Emits `active: false` for every mark whose time has passed. Cheap when there are none. */
  sweep(): void {
    if (this.marks.size === 0) return;
    const now = this.clock.now();
    for (const [key, m] of this.marks) {
      if (m.untilMs > now) continue;
      this.marks.delete(key);
      this.bus.emit({ type: 'cooldown', account: m.account, reason: m.reason, active: false });
    }
  }
}

function keyOf(account: string, kind: MarkKind): string {
  return `${account}\0${kind}`;
}
