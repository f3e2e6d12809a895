import { Counter, Gauge, Histogram } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { loadConfigValue } from '../../src/config/load.js';
import type { AccountConfig } from '../../src/config/schema.js';
import { EventBus, type RelayEvent } from '../../src/observability/events.js';
import { COOLDOWN_REASONS, Metrics } from '../../src/observability/metrics.js';
import type { AccountStats } from '../../src/scheduler/types.js';
import { NO_FLAGS, StoreUnavailableError, type AccountFlags, type AccountRef, type AccountSnapshot } from '../../src/state/store.js';
import { parsePrometheusText, sampleValue, type Family } from '../helpers/prom-parse.js';

const SECRET = 'sk-upstream-secret-0123456789';

function accountsOf(ids: string[]): readonly AccountConfig[] {
  const r = loadConfigValue(
    {
      clients: [{ key: 'sk-sy-client-key-000' }],
      accounts: ids.map((id) => ({ id, baseUrl: 'https://upstream.example/v1', apiKey: SECRET, concurrency: 4 })),
    },
    {},
  );
  if (!r.ok) throw new Error(r.errors.join('\n'));
  return r.config.accounts;
}

class FakeSource {
  accountList: readonly AccountConfig[];
  stats = new Map<string, AccountStats>();
  load = new Map<string, { inflight: number; waiting: number; flags?: Partial<AccountFlags> }>();
  snapshotCalls = 0;
  failStore = false;
  constructor(ids: string[]) {
    this.accountList = accountsOf(ids);
  }
  readonly scheduler = {
    accounts: () => this.accountList,
    stats: (id: string): AccountStats => this.stats.get(id) ?? { errorRate: 0, ttftMs: null },
  };
  readonly store = {
    snapshot: async (refs: readonly AccountRef[]): Promise<AccountSnapshot[]> => {
      this.snapshotCalls++;
      if (this.failStore) throw new StoreUnavailableError('redis down');
      const out: AccountSnapshot[] = [];
      for (const r of refs) {
        const l = this.load.get(r.id) ?? { inflight: 0, waiting: 0 };
        out.push({ inflight: l.inflight, waiting: l.waiting, loadRate: 0, flags: { ...NO_FLAGS, ...l.flags } });
      }
      return out;
    },
  };
}

const open: Metrics[] = [];
afterEach(() => {
  for (const m of open.splice(0)) m.close();
  vi.restoreAllMocks();
});

function setup(ids = ['acc-1', 'acc-2']) {
  const bus = new EventBus();
  const clock = new ManualClock();
  const src = new FakeSource(ids);
  const metrics = new Metrics({ bus, clock, store: src.store, scheduler: src.scheduler });
  open.push(metrics);
  const scrape = async (): Promise<{ text: string; fams: Map<string, Family> }> => {
    const { body, contentType } = await metrics.render();
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    return { text: body, fams: parsePrometheusText(body) };
  };
  return { bus, clock, src, metrics, scrape };
}

const select = (over: Partial<Extract<RelayEvent, { type: 'select' }>> = {}): RelayEvent => ({
  type: 'select',
  layer: 'load_balance',
  result: 'acquired',
  durationMs: 0.3,
  candidateCount: 3,
  loadSkew: 12,
  stickyPreviousHit: false,
  stickySessionHit: false,
  ...over,
});

describe('metrics registry', () => {
  it('exposes every contract metric with its exact type and label names', async () => {
    const { metrics, scrape } = setup();
    const { fams } = await scrape();
    const contract: [string, string, string[]][] = [
      ['switchyard_scheduler_select_total', 'counter', ['layer', 'result']],
      ['switchyard_scheduler_sticky_hit_total', 'counter', ['kind']],
      ['switchyard_scheduler_account_switch_total', 'counter', []],
      ['switchyard_scheduler_select_duration_seconds', 'histogram', ['layer']],
      ['switchyard_scheduler_load_skew', 'histogram', []],
      ['switchyard_scheduler_candidates', 'histogram', []],
      ['switchyard_transport_fallback_total', 'counter', ['reason']],
      ['switchyard_account_inflight', 'gauge', ['account']],
      ['switchyard_account_waiting', 'gauge', ['account']],
      ['switchyard_account_error_rate_ewma', 'gauge', ['account']],
      ['switchyard_account_ttft_ewma_seconds', 'gauge', ['account']],
      ['switchyard_account_cooldown', 'gauge', ['account', 'reason']],
      ['switchyard_upstream_turns_total', 'counter', ['account', 'transport', 'outcome']],
      ['switchyard_upstream_ttft_seconds', 'histogram', ['transport']],
      ['switchyard_ws_sessions_active', 'gauge', []],
      ['switchyard_upstream_ws_connections', 'gauge', []],
      ['switchyard_ws_messages_total', 'counter', ['direction']],
      ['switchyard_scheduler_runtime_stats_accounts', 'gauge', []],
      ['switchyard_store_errors_total', 'counter', ['op']],
      ['switchyard_realtime_sessions_active', 'gauge', []],
      ['switchyard_realtime_frames_total', 'counter', ['direction']],
      ['switchyard_realtime_bytes_total', 'counter', ['direction']],
    ];
    for (const [name, type] of contract) expect(fams.get(name)?.type, name).toBe(type);
    // Label names: from the JSON view, which lists the declared labels of every sample.
    const json = await metrics.registry.getMetricsAsJSON();
    for (const [name, , labelNames] of contract) {
      const m = json.find((x) => x.name === name);
      expect(m, name).toBeDefined();
      for (const v of m!.values) {
        const names = Object.keys(v.labels).filter((l) => l !== 'le');
        expect(names.sort(), name).toEqual([...labelNames].sort());
      }
    }
    // prom-client's default process metrics come along.
    expect(fams.get('process_cpu_user_seconds_total')?.type).toBe('counter');
    expect(fams.get('nodejs_heap_size_total_bytes')?.type).toBe('gauge');
  });

  it('starts fixed-label series at zero so rates and ratios exist before traffic', async () => {
    const { scrape } = setup();
    const { fams } = await scrape();
    for (const layer of ['previous_response_id', 'session_hash', 'load_balance']) {
      for (const result of ['acquired', 'wait', 'error']) {
        expect(sampleValue(fams, 'switchyard_scheduler_select_total', { layer, result })).toBe(0);
      }
      expect(sampleValue(fams, 'switchyard_scheduler_select_duration_seconds_count', { layer })).toBe(0);
    }
    expect(sampleValue(fams, 'switchyard_scheduler_sticky_hit_total', { kind: 'session' })).toBe(0);
    expect(sampleValue(fams, 'switchyard_scheduler_sticky_hit_total', { kind: 'previous_response' })).toBe(0);
    expect(sampleValue(fams, 'switchyard_ws_messages_total', { direction: 'client_in' })).toBe(0);
    expect(sampleValue(fams, 'switchyard_scheduler_account_switch_total')).toBe(0);
  });

  it('keeps a registry per instance, so two relays in one process do not collide', async () => {
    const a = setup();
    const b = setup();
    a.bus.emit({ type: 'switch', fromAccount: 'acc-1' });
    expect(sampleValue((await a.scrape()).fams, 'switchyard_scheduler_account_switch_total')).toBe(1);
    expect(sampleValue((await b.scrape()).fams, 'switchyard_scheduler_account_switch_total')).toBe(0);
  });
});

describe('scheduler events', () => {
  it('counts selections by layer and result and observes select latency in seconds', async () => {
    const { bus, scrape } = setup();
    bus.emit(select({ durationMs: 0.3 }));
    bus.emit(select({ result: 'wait', durationMs: 2 }));
    bus.emit(select({ layer: 'session_hash', stickySessionHit: true, candidateCount: 0, loadSkew: 0 }));
    bus.emit(select({ layer: 'previous_response_id', stickyPreviousHit: true, candidateCount: 0, loadSkew: 0 }));
    bus.emit(select({ layer: 'session_hash', result: 'error', stickySessionHit: true }));
    const { fams } = await scrape();
    expect(sampleValue(fams, 'switchyard_scheduler_select_total', { layer: 'load_balance', result: 'acquired' })).toBe(1);
    expect(sampleValue(fams, 'switchyard_scheduler_select_total', { layer: 'load_balance', result: 'wait' })).toBe(1);
    expect(sampleValue(fams, 'switchyard_scheduler_select_total', { layer: 'session_hash', result: 'acquired' })).toBe(1);
    expect(sampleValue(fams, 'switchyard_scheduler_select_total', { layer: 'session_hash', result: 'error' })).toBe(1);
    // A failed selection is not a sticky hit.
    expect(sampleValue(fams, 'switchyard_scheduler_sticky_hit_total', { kind: 'session' })).toBe(1);
    expect(sampleValue(fams, 'switchyard_scheduler_sticky_hit_total', { kind: 'previous_response' })).toBe(1);
    expect(sampleValue(fams, 'switchyard_scheduler_select_duration_seconds_count', { layer: 'load_balance' })).toBe(2);
    expect(sampleValue(fams, 'switchyard_scheduler_select_duration_seconds_sum', { layer: 'load_balance' })).toBeCloseTo(0.0023, 6);
    expect(sampleValue(fams, 'switchyard_scheduler_select_duration_seconds_bucket', { layer: 'load_balance', le: '0.0005' })).toBe(1);
  });

  it('observes candidates and load skew for load-balance decisions only', async () => {
    const { bus, scrape } = setup();
    bus.emit(select({ candidateCount: 3, loadSkew: 12 }));
    bus.emit(select({ layer: 'session_hash', candidateCount: 9, loadSkew: 99 }));
    const { fams } = await scrape();
    expect(sampleValue(fams, 'switchyard_scheduler_candidates_count')).toBe(1);
    expect(sampleValue(fams, 'switchyard_scheduler_candidates_sum')).toBe(3);
    expect(sampleValue(fams, 'switchyard_scheduler_candidates_bucket', { le: '3' })).toBe(1);
    expect(sampleValue(fams, 'switchyard_scheduler_candidates_bucket', { le: '2' })).toBe(0);
    expect(sampleValue(fams, 'switchyard_scheduler_load_skew_count')).toBe(1);
    expect(sampleValue(fams, 'switchyard_scheduler_load_skew_sum')).toBe(12);
  });

  it('counts switches, transport fallbacks and store errors', async () => {
    const { bus, scrape } = setup();
    bus.emit({ type: 'switch', fromAccount: 'acc-1' });
    bus.emit({ type: 'switch', fromAccount: 'acc-2' });
    bus.emit({ type: 'transport_fallback', reason: 'no_ws_account' });
    bus.emit({ type: 'store_error', op: 'setSessionBinding' });
    const { fams } = await scrape();
    expect(sampleValue(fams, 'switchyard_scheduler_account_switch_total')).toBe(2);
    expect(sampleValue(fams, 'switchyard_transport_fallback_total', { reason: 'no_ws_account' })).toBe(1);
    expect(sampleValue(fams, 'switchyard_store_errors_total', { op: 'setSessionBinding' })).toBe(1);
  });
});

describe('session events', () => {
  it('counts upstream turns by account, transport and outcome and observes TTFT in seconds', async () => {
    const { bus, scrape } = setup();
    bus.emit({ type: 'turn', account: 'acc-1', transport: 'ws', outcome: 'completed', ttftMs: 300 });
    bus.emit({ type: 'turn', account: 'acc-1', transport: 'ws', outcome: 'completed', ttftMs: 1200 });
    bus.emit({ type: 'turn', account: 'acc-2', transport: 'http', outcome: 'upstream_error', ttftMs: null });
    const { fams } = await scrape();
    expect(sampleValue(fams, 'switchyard_upstream_turns_total', { account: 'acc-1', transport: 'ws', outcome: 'completed' })).toBe(2);
    expect(sampleValue(fams, 'switchyard_upstream_turns_total', { account: 'acc-2', transport: 'http', outcome: 'upstream_error' })).toBe(1);
    expect(sampleValue(fams, 'switchyard_upstream_ttft_seconds_count', { transport: 'ws' })).toBe(2);
    expect(sampleValue(fams, 'switchyard_upstream_ttft_seconds_bucket', { transport: 'ws', le: '0.25' })).toBe(0);
    expect(sampleValue(fams, 'switchyard_upstream_ttft_seconds_bucket', { transport: 'ws', le: '0.5' })).toBe(1);
    expect(sampleValue(fams, 'switchyard_upstream_ttft_seconds_sum', { transport: 'ws' })).toBeCloseTo(1.5, 9);
    // A turn without a first output event is not a TTFT sample.
    expect(sampleValue(fams, 'switchyard_upstream_ttft_seconds_count', { transport: 'http' })).toBeUndefined();
  });

  it('tracks session and connection gauges and message counters', async () => {
    const { bus, scrape } = setup();
    bus.emit({ type: 'gauge', name: 'ws_sessions_active', delta: 1 });
    bus.emit({ type: 'gauge', name: 'ws_sessions_active', delta: 1 });
    bus.emit({ type: 'gauge', name: 'ws_sessions_active', delta: -1 });
    bus.emit({ type: 'gauge', name: 'upstream_ws_connections', delta: 1 });
    bus.emit({ type: 'gauge', name: 'realtime_sessions_active', delta: 3 });
    bus.emit({ type: 'ws_message', direction: 'client_in', count: 2 });
    bus.emit({ type: 'ws_message', direction: 'client_out', count: 40 });
    bus.emit({ type: 'realtime_traffic', direction: 'client_out', frames: 5, bytes: 65_536 });
    bus.emit({ type: 'realtime_traffic', direction: 'client_in', frames: 1, bytes: 10 });
    const { fams } = await scrape();
    expect(sampleValue(fams, 'switchyard_ws_sessions_active')).toBe(1);
    expect(sampleValue(fams, 'switchyard_upstream_ws_connections')).toBe(1);
    expect(sampleValue(fams, 'switchyard_realtime_sessions_active')).toBe(3);
    expect(sampleValue(fams, 'switchyard_ws_messages_total', { direction: 'client_in' })).toBe(2);
    expect(sampleValue(fams, 'switchyard_ws_messages_total', { direction: 'client_out' })).toBe(40);
    expect(sampleValue(fams, 'switchyard_realtime_frames_total', { direction: 'client_out' })).toBe(5);
    expect(sampleValue(fams, 'switchyard_realtime_bytes_total', { direction: 'client_out' })).toBe(65_536);
    expect(sampleValue(fams, 'switchyard_realtime_bytes_total', { direction: 'client_in' })).toBe(10);
  });

  it('never throws into the emitter, even on a value prom-client rejects', async () => {
    const { bus, scrape } = setup();
    expect(() => bus.emit({ type: 'gauge', name: 'ws_sessions_active', delta: Number.NaN })).not.toThrow();
    expect(() => bus.emit({ type: 'turn', account: 'a', transport: 'ws', outcome: 'completed', ttftMs: Number.POSITIVE_INFINITY })).not.toThrow();
    bus.emit({ type: 'turn', account: 'a', transport: 'ws', outcome: 'completed', ttftMs: 5 });
    // The rejected values are dropped when the queue is recorded; the good one after them stays.
    const { fams } = await scrape();
    expect(sampleValue(fams, 'switchyard_upstream_turns_total', { account: 'a', transport: 'ws', outcome: 'completed' })).toBe(2);
  });

  it('records events off the emitting call: on its own within a few ms, or at once on a scrape', async () => {
    const { bus, metrics } = setup();
    const selects = async () => {
      const json = await metrics.registry.getMetricsAsJSON();
      const m = json.find((x) => x.name === 'switchyard_scheduler_select_total');
      return m?.values.find((v) => v.labels.layer === 'load_balance' && v.labels.result === 'acquired')?.value;
    };
    bus.emit(select());
    // Not inside the emit: a select is emitted between a client frame and its upstream send.
    expect(await selects()).toBe(0);
    await new Promise((r) => setTimeout(r, 60));
    expect(await selects()).toBe(1);
  });

  it('builds no label children for label values it has seen before (hot path)', async () => {
    const { bus, scrape } = setup();
    const events: RelayEvent[] = [
      select(),
      select({ layer: 'session_hash', stickySessionHit: true }),
      { type: 'turn', account: 'acc-1', transport: 'ws', outcome: 'completed', ttftMs: 100 },
      { type: 'transport_fallback', reason: 'no_ws_account' },
      { type: 'ws_message', direction: 'client_out', count: 1 },
      { type: 'store_error', op: 'snapshot' },
      { type: 'realtime_traffic', direction: 'client_in', frames: 1, bytes: 1 },
      { type: 'account_stats', account: 'acc-1', errorRate: 0.1, ttftMs: 200 },
    ];
    for (const e of events) bus.emit(e);
    await new Promise((r) => setTimeout(r, 60));
    const spies = [vi.spyOn(Counter.prototype, 'labels'), vi.spyOn(Histogram.prototype, 'labels'), vi.spyOn(Gauge.prototype, 'labels')];
    for (let i = 0; i < 100; i++) for (const e of events) bus.emit(e);
    await new Promise((r) => setTimeout(r, 60)); // recorded by the queue's own flush
    for (const s of spies) expect(s).not.toHaveBeenCalled();
    for (const s of spies) s.mockRestore();
    const { fams } = await scrape();
    expect(sampleValue(fams, 'switchyard_upstream_turns_total', { account: 'acc-1', transport: 'ws', outcome: 'completed' })).toBe(101);
  });
});

describe('per-account gauges at scrape time', () => {
  it('reads in-flight, waiting, cooldown and EWMAs from one store snapshot per scrape', async () => {
    const { src, clock, scrape } = setup(['acc-1', 'acc-2']);
    const now = clock.now();
    src.load.set('acc-1', { inflight: 3, waiting: 1, flags: { cooldownUntilMs: now + 30_000, cooldownReason: 'rate_limited' } });
    src.load.set('acc-2', { inflight: 0, waiting: 0, flags: { disabled: true, wsUnsupportedUntilMs: now + 1_000 } });
    src.stats.set('acc-1', { errorRate: 0.25, ttftMs: 850 });
    const { fams } = await scrape();
    expect(src.snapshotCalls).toBe(1);
    expect(sampleValue(fams, 'switchyard_account_inflight', { account: 'acc-1' })).toBe(3);
    expect(sampleValue(fams, 'switchyard_account_waiting', { account: 'acc-1' })).toBe(1);
    expect(sampleValue(fams, 'switchyard_account_inflight', { account: 'acc-2' })).toBe(0);
    expect(sampleValue(fams, 'switchyard_account_error_rate_ewma', { account: 'acc-1' })).toBe(0.25);
    expect(sampleValue(fams, 'switchyard_account_ttft_ewma_seconds', { account: 'acc-1' })).toBe(0.85);
    // No TTFT sample yet: no series rather than a misleading 0.
    expect(sampleValue(fams, 'switchyard_account_ttft_ewma_seconds', { account: 'acc-2' })).toBeUndefined();
    const cooldown = (account: string, reason: string) => sampleValue(fams, 'switchyard_account_cooldown', { account, reason });
    expect(cooldown('acc-1', 'rate_limited')).toBe(1);
    expect(cooldown('acc-1', 'server_error')).toBe(0);
    expect(cooldown('acc-2', 'disabled')).toBe(1);
    expect(cooldown('acc-2', 'ws_unsupported')).toBe(1);
    for (const reason of COOLDOWN_REASONS) expect(cooldown('acc-2', reason)).toBeDefined();

    clock.advance(60_000);
    const later = await scrape();
    expect(src.snapshotCalls).toBe(2);
    expect(sampleValue(later.fams, 'switchyard_account_cooldown', { account: 'acc-1', reason: 'rate_limited' })).toBe(0);
    expect(sampleValue(later.fams, 'switchyard_account_cooldown', { account: 'acc-2', reason: 'ws_unsupported' })).toBe(0);
  });

  it('still renders with the last values when the store is unreachable, and counts the failure', async () => {
    const { src, scrape } = setup(['acc-1']);
    src.load.set('acc-1', { inflight: 2, waiting: 0 });
    await scrape();
    src.failStore = true;
    src.load.set('acc-1', { inflight: 4, waiting: 0 });
    const { fams } = await scrape();
    expect(sampleValue(fams, 'switchyard_account_inflight', { account: 'acc-1' })).toBe(2);
    expect(sampleValue(fams, 'switchyard_store_errors_total', { op: 'metrics_snapshot' })).toBe(1);
  });

  it('drops the series of an account removed by a reload and counts runtime-stats accounts', async () => {
    const { src, bus, scrape } = setup(['acc-1', 'acc-2']);
    bus.emit({ type: 'account_stats', account: 'acc-1', errorRate: 0, ttftMs: 100 });
    bus.emit({ type: 'account_stats', account: 'acc-2', errorRate: 1, ttftMs: null });
    let { fams } = await scrape();
    expect(sampleValue(fams, 'switchyard_scheduler_runtime_stats_accounts')).toBe(2);
    expect(sampleValue(fams, 'switchyard_account_inflight', { account: 'acc-2' })).toBe(0);
    src.accountList = src.accountList.filter((a) => a.id === 'acc-1');
    ({ fams } = await scrape());
    expect(sampleValue(fams, 'switchyard_scheduler_runtime_stats_accounts')).toBe(1);
    for (const name of ['switchyard_account_inflight', 'switchyard_account_waiting', 'switchyard_account_error_rate_ewma', 'switchyard_account_cooldown']) {
      expect(fams.get(name)!.samples.some((s) => s.labels.account === 'acc-2'), name).toBe(false);
    }
    expect(sampleValue(fams, 'switchyard_account_inflight', { account: 'acc-1' })).toBe(0);
  });

  it('labels accounts by id and never exposes a credential', async () => {
    const { bus, scrape } = setup(['acc-1']);
    bus.emit({ type: 'turn', account: 'acc-1', transport: 'ws', outcome: 'completed', ttftMs: 5 });
    const { text } = await scrape();
    expect(text).toContain('account="acc-1"');
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain('sk-sy-client-key-000');
  });
});

describe('prometheus text parser (test helper)', () => {
  it('rejects malformed lines', () => {
    expect(() => parsePrometheusText('# TYPE x counter\nx{a="1" 3\n')).toThrow(/line 2/);
    expect(() => parsePrometheusText('x 1\nx 2\n')).toThrow(/duplicate/);
    expect(() => parsePrometheusText('x one\n')).toThrow(/bad value/);
    expect(parsePrometheusText('# TYPE x gauge\nx{a="q\\"uote"} +Inf\n').get('x')!.samples[0]).toEqual({ name: 'x', labels: { a: 'q"uote' }, value: Infinity });
  });
});
