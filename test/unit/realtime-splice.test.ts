// The Realtime splice with stand-in sockets: upstream frames that arrive before the client's
// upgrade completes are held (bounded: the upstream is paused) and delivered in order; the slot is
// released exactly once whichever side ends first.
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { WebSocket } from 'ws';
import { systemClock } from '../../src/clock.js';
import type { Config } from '../../src/config/schema.js';
import { EventBus, type RelayEvent } from '../../src/observability/events.js';
import { createLogger } from '../../src/observability/logger.js';
import type { Scheduler, SlotLease } from '../../src/scheduler/types.js';
import { RealtimeSplice, UpstreamSink } from '../../src/session/realtime-splice.js';
import type { UpstreamWs } from '../../src/upstream/ws-upstream.js';

class FakeSocket extends EventEmitter {
  readyState = 1;
  bufferedAmount = 0;
  paused = false;
  sent: Array<{ data: string; binary: boolean }> = [];
  closedWith: number | null = null;
  send(data: Buffer, opts: { binary: boolean }, cb?: () => void): void {
    this.sent.push({ data: data.toString(), binary: opts.binary });
    cb?.();
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  close(code: number): void {
    this.closedWith = code;
    this.readyState = 2;
  }
  terminate(): void {}
}

function harness(maxBufferedBytes = 1000, idleTimeoutMs = 60_000) {
  const upstream = new FakeSocket();
  const conn = {
    account: { id: 'acct' },
    alive: true,
    ws: upstream,
    pause: () => upstream.pause(),
    resume: () => upstream.resume(),
    close: (code: number) => {
      conn.alive = false;
      upstream.closedWith = code;
    },
  };
  let releases = 0;
  const lease: SlotLease = { accountId: 'acct', leaseId: 'l', release: async () => void releases++ };
  const bus = new EventBus();
  const events: RelayEvent[] = [];
  bus.on((e) => events.push(e));
  const config = { websocket: { maxBufferedBytes, idleTimeoutMs } } as unknown as Config;
  const sink = new UpstreamSink();
  const fakeConn = conn as unknown as UpstreamWs;
  let onReleased = 0;
  const start = () =>
    new RealtimeSplice(
      { config: () => config, scheduler: {} as Scheduler, clock: systemClock, bus, log: createLogger('silent'), onReleased: () => void onReleased++ },
      fakeConn,
      lease,
      { id: 's', clientName: 'c', layer: 'load_balance', switches: 0, waitedMs: 0, model: 'm', intent: null },
      sink,
    );
  return { upstream, conn, sink, fakeConn, start, events, releases: () => releases, onReleased: () => onReleased };
}

const frame = (s: string) => Buffer.from(s);

describe('realtime splice', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('closes an idle session once the idle timeout has passed since the last frame either way, never while frames flow', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const h = harness(1000, 800);
    const splice = h.start();
    const client = new FakeSocket();
    splice.attachClient(client as unknown as WebSocket);
    // Frames every 500 ms for 3 s, alternating directions: each gap is under the timeout.
    for (let i = 0; i < 6; i++) {
      vi.advanceTimersByTime(500);
      if (i % 2 === 0) h.sink.onMessage(h.fakeConn, frame(`down-${i}`), false);
      else client.emit('message', frame(`up-${i}`), true);
    }
    expect(client.closedWith).toBeNull();
    // Then silence: not closed before the timeout, closed within one slice (1/8) after it.
    vi.advanceTimersByTime(799);
    expect(client.closedWith).toBeNull();
    vi.advanceTimersByTime(101);
    expect(client.closedWith).toBe(1000);
    expect(h.conn.alive).toBe(false);
    await splice.released;
    expect(h.releases()).toBe(1);
  });

  it('delivers frames that arrived before the splice and before the client, in order, text and binary kept', async () => {
    const h = harness();
    h.sink.onMessage(h.fakeConn, frame('{"type":"session.created"}'), false);
    const splice = h.start();
    h.sink.onMessage(h.fakeConn, frame('bin-1'), true);
    h.sink.onMessage(h.fakeConn, frame('{"type":"x"}'), false);
    const client = new FakeSocket();
    splice.attachClient(client as unknown as WebSocket);
    h.sink.onMessage(h.fakeConn, frame('after'), false);
    expect(client.sent).toEqual([
      { data: '{"type":"session.created"}', binary: false },
      { data: 'bin-1', binary: true },
      { data: '{"type":"x"}', binary: false },
      { data: 'after', binary: false },
    ]);
    client.emit('close', 1000, Buffer.from(''));
    await splice.released;
  });

  it('pauses the upstream while too much waits for the client, and resumes once it is delivered', () => {
    const h = harness(100);
    const splice = h.start();
    for (let i = 0; i < 5; i++) h.sink.onMessage(h.fakeConn, frame(`frame-${i}`), false);
    expect(h.upstream.paused).toBe(true);
    const client = new FakeSocket();
    splice.attachClient(client as unknown as WebSocket);
    expect(client.sent).toHaveLength(5);
    expect(h.upstream.paused).toBe(false);
  });

  it('pauses the client when the upstream is slow and resumes at half the bound', () => {
    const h = harness(100);
    const splice = h.start();
    const client = new FakeSocket();
    splice.attachClient(client as unknown as WebSocket);
    h.upstream.bufferedAmount = 150;
    client.emit('message', frame('audio'), true);
    expect(client.paused).toBe(true);
    h.upstream.bufferedAmount = 40;
    client.emit('message', frame('more'), true);
    expect(client.paused).toBe(false);
    expect(h.upstream.sent.map((s) => s.binary)).toEqual([true, true]);
  });

  it('an upstream close before the client is ready still delivers what was sent, then a sendable close code', async () => {
    const h = harness();
    const splice = h.start();
    h.sink.onMessage(h.fakeConn, frame('{"type":"session.created"}'), false);
    h.sink.onClose(h.fakeConn, 1006, '');
    const client = new FakeSocket();
    splice.attachClient(client as unknown as WebSocket);
    expect(client.sent).toHaveLength(1);
    expect(client.closedWith).toBe(1011);
    await splice.released;
    client.emit('close', 1011, Buffer.from(''));
    expect(h.releases()).toBe(1);
    expect(h.onReleased()).toBe(1);
  });

  it('releases the slot exactly once when both sides close, and balances its gauges', async () => {
    const h = harness();
    const splice = h.start();
    const client = new FakeSocket();
    splice.attachClient(client as unknown as WebSocket);
    client.emit('close', 1006, Buffer.from(''));
    expect(h.upstream.closedWith).toBe(1000);
    h.sink.onClose(h.fakeConn, 1000, '');
    await splice.released;
    await new Promise((r) => setImmediate(r));
    expect(h.releases()).toBe(1);
    const sum = (name: string) =>
      h.events.filter((e) => e.type === 'gauge' && e.name === name).reduce((n, e) => n + (e.type === 'gauge' ? e.delta : 0), 0);
    expect(sum('realtime_sessions_active')).toBe(0);
    expect(sum('upstream_ws_connections')).toBe(0);
  });
});
