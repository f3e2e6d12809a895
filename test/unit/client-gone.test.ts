// ClientGone: a session's "client went away" signal, whose AbortController is made only when
// something listens (src/session/client-gone.ts).
import { describe, expect, it } from 'vitest';
import { ClientGone } from '../../src/session/client-gone.js';
import { timerSleep } from '../../src/scheduler/wait.js';

describe('ClientGone', () => {
  it('makes no AbortController until a wait listens, and ends that wait when the client goes', async () => {
    const gone = new ClientGone();
    expect(gone.aborted).toBe(false);
    expect(gone.materialised).toBe(false);
    const t0 = Date.now();
    const sleeping = timerSleep(60_000, gone);
    expect(gone.materialised).toBe(true);
    gone.abort();
    await sleeping;
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(gone.aborted).toBe(true);
    expect(gone.signal.aborted).toBe(true);
  });

  it('gone before anything listened: aborted, a wait returns at once, its AbortSignal comes already aborted', async () => {
    const gone = new ClientGone();
    gone.abort();
    gone.abort();
    expect(gone.aborted).toBe(true);
    expect(gone.materialised).toBe(false);
    await timerSleep(60_000, gone);
    expect(gone.materialised).toBe(false);
    expect(gone.signal.aborted).toBe(true);
  });

  it('a removed listener is not called; removing one before any was added is harmless', () => {
    const gone = new ClientGone();
    let calls = 0;
    const listener = () => calls++;
    gone.removeEventListener('abort', listener);
    gone.addEventListener('abort', listener, { once: true });
    gone.removeEventListener('abort', listener);
    const kept = () => (calls += 10);
    gone.addEventListener('abort', kept, { once: true });
    gone.abort();
    expect(calls).toBe(10);
  });
});
