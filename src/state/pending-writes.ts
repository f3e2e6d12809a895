// Writes a degraded instance made locally that shared state should learn once it answers again
// (bindings, cooldowns, operator disables). One entry per target key, latest write wins, bounded:
// past the cap the oldest entry is dropped, because losing an old binding only costs stickiness.

export const DEFAULT_MAX_PENDING_WRITES = 10_000;
/** Writes sent at once during a replay: fast on a healthy Redis, bounded on a slow one. */
const REPLAY_BATCH = 64;

export type PendingWrite = () => Promise<void>;

export class PendingWrites {
  private readonly entries = new Map<string, PendingWrite>();

  constructor(private readonly max: number = DEFAULT_MAX_PENDING_WRITES) {}

  get size(): number {
    return this.entries.size;
  }

  /** Records the latest write for `key`; it moves to the end of the replay order. */
  add(key: string, write: PendingWrite): void {
    this.entries.delete(key);
    if (this.entries.size >= this.max) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(key, write);
  }

  /**
   * Sends every entry, including ones added while it runs; resolves with how many were sent. On
   * the first failure the unsent entries stay (a newer write for the same key wins) and it rejects.
   */
  async replay(): Promise<number> {
    let sent = 0;
    while (this.entries.size > 0) {
      const batch = [...this.entries].slice(0, REPLAY_BATCH);
      for (const [key] of batch) this.entries.delete(key);
      const results = await Promise.allSettled(batch.map(([, write]) => write()));
      let failure: { reason: unknown } | null = null;
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') {
          sent++;
          return;
        }
        failure ??= { reason: r.reason };
        const [key, write] = batch[i]!;
        if (!this.entries.has(key)) this.entries.set(key, write);
      });
      if (failure !== null) throw (failure as { reason: unknown }).reason;
    }
    return sent;
  }

  clear(): void {
    this.entries.clear();
  }
}
