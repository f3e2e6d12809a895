// Every Prometheus metric of the relay (SPEC §8: names, types and labels are contract) lives here.
// Counters and histograms are fed by the typed EventBus (DESIGN rule 7). Per-account gauges are
// refreshed at scrape time: in-flight, waiting and cooldown from one batched store snapshot (the
// store is the one view every instance shares; events only reach the instance that emitted
// them), the EWMAs from this instance's scheduler stats.
// Hot path contract: an event costs a few Map lookups on cached label children; no label objects
// or strings are built per event. Account ids are labels; credentials and client keys never are.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Clock } from '../clock.js';
import type { Scheduler } from '../scheduler/types.js';
import type { AccountFlags, StateStore } from '../state/store.js';
import type { EventBus, Layer, RelayEvent } from './events.js';

export interface MetricsDeps {
  bus: EventBus;
  store: Pick<StateStore, 'snapshot'>;
  scheduler: Pick<Scheduler, 'accounts' | 'stats'>;
  clock: Clock;
}

const LAYERS: readonly Layer[] = ['previous_response_id', 'session_hash', 'load_balance'];
const SELECT_RESULTS = ['acquired', 'wait', 'error'] as const;
const DIRECTIONS = ['client_in', 'client_out'] as const;
/**
 * Cooldown reasons exported for every account (0/1), so `max by (account)` works without gaps:
 * the store's cooldown reasons, a recent WebSocket refusal, and a run-time disable (a 401 or an
 * operator; the store does not tell them apart).
 */
export const COOLDOWN_REASONS = ['rate_limited', 'server_error', 'unauthorized', 'connect_error', 'ws_unsupported', 'disabled'] as const;

// Selection is in-memory scoring plus one or two store round trips: 50 µs … 1 s.
const SELECT_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
// Standard deviation of candidates' load rates, in percentage points.
const SKEW_BUCKETS = [0, 1, 2.5, 5, 10, 20, 30, 50, 75, 100, 150, 200];
const CANDIDATE_BUCKETS = [0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 100];
const TTFT_BUCKETS = [0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60];

/** Label children cached per label value: after the first event, a lookup is all it costs. */
class Children<C> {
  private readonly map = new Map<string, C>();
  constructor(private readonly make: (value: string) => C) {}
  get(value: string): C {
    let c = this.map.get(value);
    if (c === undefined) {
      c = this.make(value);
      this.map.set(value, c);
    }
    return c;
  }
  delete(value: string): void {
    this.map.delete(value);
  }
}

type CounterChild = Counter.Internal;
type GaugeChild = Gauge.Internal<string>;
type HistogramChild = Histogram.Internal<string>;

export class Metrics {
  /** Own registry (never the global one), so several relays can live in one process. */
  readonly registry = new Registry();
  private readonly deps: MetricsDeps;

  private readonly selectTotal: Children<Children<CounterChild>>;
  private readonly stickyPrevious: CounterChild;
  private readonly stickySession: CounterChild;
  private readonly switchTotal: Counter;
  private readonly selectDuration: Children<HistogramChild>;
  private readonly loadSkew: Histogram;
  private readonly candidates: Histogram;
  private readonly fallbackTotal: Children<CounterChild>;
  private readonly turnsTotal: Children<Children<Children<CounterChild>>>;
  private readonly ttft: Children<HistogramChild>;
  private readonly wsSessions: Gauge;
  private readonly upstreamWs: Gauge;
  private readonly realtimeSessions: Gauge;
  private readonly wsMessages: Children<CounterChild>;
  private readonly realtimeFrames: Children<CounterChild>;
  private readonly realtimeBytes: Children<CounterChild>;
  private readonly storeErrors: Children<CounterChild>;
  private readonly runtimeStatsAccounts: Gauge;

  private readonly inflightGauge: Gauge;
  private readonly waitingGauge: Gauge;
  private readonly errorRateGauge: Gauge;
  private readonly ttftEwmaGauge: Gauge;
  private readonly cooldownGauge: Gauge;
  private readonly inflight: Children<GaugeChild>;
  private readonly waiting: Children<GaugeChild>;
  private readonly errorRate: Children<GaugeChild>;
  private readonly ttftEwma: Children<GaugeChild>;
  private readonly cooldown: Children<Children<GaugeChild>>;
  /** Accounts that currently have per-account series (removed accounts get theirs deleted). */
  private labelledAccounts = new Set<string>();
  /** Accounts with runtime stats samples on this instance. */
  private readonly statsSeen = new Set<string>();
  private readonly unsubscribe: () => void;
  private pending: RelayEvent[] = [];

  constructor(deps: MetricsDeps) {
    this.deps = deps;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });

    const select = new Counter({
      name: 'switchyard_scheduler_select_total',
      help: 'Scheduling decisions by layer and result.',
      labelNames: ['layer', 'result'],
      registers,
    });
    this.selectTotal = new Children((layer) => new Children((result) => select.labels(layer, result)));
    const sticky = new Counter({
      name: 'switchyard_scheduler_sticky_hit_total',
      help: 'Turns served by their bound account (previous response id or session).',
      labelNames: ['kind'],
      registers,
    });
    this.stickyPrevious = sticky.labels('previous_response');
    this.stickySession = sticky.labels('session');
    this.switchTotal = new Counter({
      name: 'switchyard_scheduler_account_switch_total',
      help: 'Turns moved to another account after an upstream failure (failover).',
      registers,
    });
    const duration = new Histogram({
      name: 'switchyard_scheduler_select_duration_seconds',
      help: 'Time spent deciding (not waiting for a slot), by decision layer.',
      labelNames: ['layer'],
      buckets: SELECT_BUCKETS,
      registers,
    });
    this.selectDuration = new Children((layer) => duration.labels(layer));
    this.loadSkew = new Histogram({
      name: 'switchyard_scheduler_load_skew',
      help: 'Standard deviation of the load rate (percent) over the compatible candidates of a load-balance decision.',
      buckets: SKEW_BUCKETS,
      registers,
    });
    this.candidates = new Histogram({
      name: 'switchyard_scheduler_candidates',
      help: 'Compatible candidate accounts scored per load-balance decision.',
      buckets: CANDIDATE_BUCKETS,
      registers,
    });
    const fallback = new Counter({
      name: 'switchyard_transport_fallback_total',
      help: 'WebSocket client turns served over HTTP/SSE upstream (bridged), by reason.',
      labelNames: ['reason'],
      registers,
    });
    this.fallbackTotal = new Children((reason) => fallback.labels(reason));

    this.inflightGauge = this.accountGauge('switchyard_account_inflight', 'Turns in flight on the account (all instances).');
    this.waitingGauge = this.accountGauge('switchyard_account_waiting', 'Turns queued for a slot on the account (all instances).');
    this.errorRateGauge = this.accountGauge('switchyard_account_error_rate_ewma', 'Error-rate EWMA of the account as seen by this instance (0..1).');
    this.ttftEwmaGauge = this.accountGauge('switchyard_account_ttft_ewma_seconds', 'Time-to-first-token EWMA of the account as seen by this instance; absent without samples.');
    this.cooldownGauge = new Gauge({
      name: 'switchyard_account_cooldown',
      help: '1 while the account is left out for the given reason, else 0.',
      labelNames: ['account', 'reason'],
      registers,
    });
    const inflightG = this.inflightGauge;
    const waitingG = this.waitingGauge;
    const errorG = this.errorRateGauge;
    const ttftG = this.ttftEwmaGauge;
    const cooldownG = this.cooldownGauge;
    this.inflight = new Children((account) => inflightG.labels(account));
    this.waiting = new Children((account) => waitingG.labels(account));
    this.errorRate = new Children((account) => errorG.labels(account));
    this.ttftEwma = new Children((account) => ttftG.labels(account));
    this.cooldown = new Children((account) => new Children((reason) => cooldownG.labels(account, reason)));

    const turns = new Counter({
      name: 'switchyard_upstream_turns_total',
      help: 'Finished upstream turns by account, transport and outcome.',
      labelNames: ['account', 'transport', 'outcome'],
      registers,
    });
    this.turnsTotal = new Children((account) => new Children((transport) => new Children((outcome) => turns.labels(account, transport, outcome))));
    const ttft = new Histogram({
      name: 'switchyard_upstream_ttft_seconds',
      help: 'Time from sending a turn upstream to its first output event.',
      labelNames: ['transport'],
      buckets: TTFT_BUCKETS,
      registers,
    });
    this.ttft = new Children((transport) => ttft.labels(transport));
    this.wsSessions = new Gauge({ name: 'switchyard_ws_sessions_active', help: 'Client WebSocket sessions open on this instance.', registers });
    this.upstreamWs = new Gauge({ name: 'switchyard_upstream_ws_connections', help: 'Upstream WebSocket connections open on this instance.', registers });
    const messages = new Counter({
      name: 'switchyard_ws_messages_total',
      help: 'Client WebSocket messages by direction (client_in: from the client, client_out: to the client).',
      labelNames: ['direction'],
      registers,
    });
    this.wsMessages = new Children((direction) => messages.labels(direction));

    this.realtimeSessions = new Gauge({ name: 'switchyard_realtime_sessions_active', help: 'Realtime relay sessions open on this instance.', registers });
    const rtFrames = new Counter({
      name: 'switchyard_realtime_frames_total',
      help: 'Realtime frames spliced, by direction (client_in: from the client, client_out: to the client).',
      labelNames: ['direction'],
      registers,
    });
    this.realtimeFrames = new Children((direction) => rtFrames.labels(direction));
    const rtBytes = new Counter({
      name: 'switchyard_realtime_bytes_total',
      help: 'Realtime payload bytes spliced, by direction.',
      labelNames: ['direction'],
      registers,
    });
    this.realtimeBytes = new Children((direction) => rtBytes.labels(direction));
    const storeErrors = new Counter({
      name: 'switchyard_store_errors_total',
      help: 'State store calls that failed (degraded mode), by operation.',
      labelNames: ['op'],
      registers,
    });
    this.storeErrors = new Children((op) => storeErrors.labels(op));
    this.runtimeStatsAccounts = new Gauge({
      name: 'switchyard_scheduler_runtime_stats_accounts',
      help: 'Configured accounts with runtime stats (EWMA) samples on this instance.',
      registers,
    });

    this.zeroKnownSeries(select, sticky, duration, messages, rtFrames, rtBytes);
    this.unsubscribe = deps.bus.on((e) => this.busOnEvent(e));
  }

  /** Stops listening to the bus (the registry stays readable). */
  close(): void {
    this.unsubscribe();
    this.drain();
  }

  /** Prometheus text exposition. Never fails because of the store: the last values stay. */
  async render(): Promise<{ contentType: string; body: string }> {
    this.drain();
    await this.refreshAccounts();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private accountGauge(name: string, help: string): Gauge {
    return new Gauge({ name, help, labelNames: ['account'], registers: [this.registry] });
  }

  /** Series with a fixed label set start at 0, so rate() and ratios work before the first event. */
  private zeroKnownSeries(select: Counter, sticky: Counter, duration: Histogram, ...byDirection: Counter[]): void {
    for (const layer of LAYERS) {
      for (const result of SELECT_RESULTS) this.selectTotal.get(layer).get(result).inc(0);
      duration.zero({ layer });
    }
    sticky.labels('previous_response').inc(0);
    sticky.labels('session').inc(0);
    for (const c of byDirection) for (const d of DIRECTIONS) c.labels(d).inc(0);
  }

  /**
   * Events are recorded in batches off the turn's path, not inside it: a select is emitted
   * between a client's frame arriving and its upstream send, and prom-client hashes the labels of
   * every update again (a few µs per event). The queue holds at most FLUSH_MS of events; a scrape
   * records what is queued first.
   */
  private busOnEvent(e: RelayEvent): void {
    this.pending.push(e);
    if (this.pending.length === 1) setTimeout(this.drain, FLUSH_MS).unref();
  }

  // Never throws into the emitter's loop (a session or the scheduler): a bad value is dropped.
  private readonly drain = (): void => {
    const events = this.pending;
    if (events.length === 0) return;
    this.pending = [];
    for (const e of events) {
      try {
        this.record(e);
      } catch {
        // A metric sample is not worth failing a turn over; prom-client only throws on invalid values.
      }
    }
  };

  private record(e: RelayEvent): void {
    switch (e.type) {
      case 'select':
        this.selectTotal.get(e.layer).get(e.result).inc();
        this.selectDuration.get(e.layer).observe(e.durationMs / 1000);
        if (e.result !== 'error') {
          if (e.stickyPreviousHit) this.stickyPrevious.inc();
          if (e.stickySessionHit) this.stickySession.inc();
        }
        // Candidate count and skew only mean something when the load-balance layer scored.
        if (e.layer === 'load_balance') {
          this.candidates.observe(e.candidateCount);
          this.loadSkew.observe(e.loadSkew);
        }
        return;
      case 'switch':
        this.switchTotal.inc();
        return;
      case 'transport_fallback':
        this.fallbackTotal.get(e.reason).inc();
        return;
      case 'turn':
        this.turnsTotal.get(e.account).get(e.transport).get(e.outcome).inc();
        if (e.ttftMs !== null) this.ttft.get(e.transport).observe(e.ttftMs / 1000);
        return;
      case 'account_stats':
        this.statsSeen.add(e.account);
        this.errorRate.get(e.account).set(e.errorRate);
        if (e.ttftMs !== null) this.ttftEwma.get(e.account).set(e.ttftMs / 1000);
        return;
      case 'cooldown':
        // Read from the store at scrape time instead: it is shared by every instance.
        return;
      case 'ws_message':
        if (e.count > 0) this.wsMessages.get(e.direction).inc(e.count);
        return;
      case 'gauge':
        if (e.name === 'ws_sessions_active') this.wsSessions.inc(e.delta);
        else if (e.name === 'upstream_ws_connections') this.upstreamWs.inc(e.delta);
        else this.realtimeSessions.inc(e.delta);
        return;
      case 'store_error':
        this.storeErrors.get(e.op).inc();
        return;
      case 'realtime_traffic':
        if (e.frames > 0) this.realtimeFrames.get(e.direction).inc(e.frames);
        if (e.bytes > 0) this.realtimeBytes.get(e.direction).inc(e.bytes);
        return;
    }
  }

  /** Per-account gauges from the scheduler's stats and ONE store snapshot over every account. */
  private async refreshAccounts(): Promise<void> {
    const { scheduler, store, clock } = this.deps;
    const accounts = scheduler.accounts();
    const live = new Set<string>();
    for (const a of accounts) {
      live.add(a.id);
      const s = scheduler.stats(a.id);
      this.errorRate.get(a.id).set(s.errorRate);
      if (s.ttftMs === null) this.dropSeries(this.ttftEwmaGauge, this.ttftEwma, a.id);
      else this.ttftEwma.get(a.id).set(s.ttftMs / 1000);
    }
    for (const id of this.labelledAccounts) if (!live.has(id)) this.forgetAccount(id);
    for (const id of this.statsSeen) if (!live.has(id)) this.statsSeen.delete(id);
    this.labelledAccounts = live;
    this.runtimeStatsAccounts.set(this.statsSeen.size);

    let snapshot;
    try {
      snapshot = await store.snapshot(accounts.map((a) => ({ id: a.id, max: a.concurrency })));
    } catch {
      this.storeErrors.get('metrics_snapshot').inc();
      return;
    }
    const now = clock.now();
    for (let i = 0; i < accounts.length; i++) {
      const a = accounts[i];
      const s = snapshot[i];
      if (!s) continue;
      this.inflight.get(a.id).set(s.inflight);
      this.waiting.get(a.id).set(s.waiting);
      const byReason = this.cooldown.get(a.id);
      for (const reason of COOLDOWN_REASONS) byReason.get(reason).set(cooldownActive(s.flags, reason, now) ? 1 : 0);
    }
  }

  /** A removed account (live reload) stops being exported; its turn counters keep their history. */
  private forgetAccount(id: string): void {
    this.dropSeries(this.inflightGauge, this.inflight, id);
    this.dropSeries(this.waitingGauge, this.waiting, id);
    this.dropSeries(this.errorRateGauge, this.errorRate, id);
    this.dropSeries(this.ttftEwmaGauge, this.ttftEwma, id);
    for (const reason of COOLDOWN_REASONS) this.cooldownGauge.remove(id, reason);
    this.cooldown.delete(id);
  }

  private dropSeries(gauge: Gauge, children: Children<GaugeChild>, account: string): void {
    gauge.remove(account);
    children.delete(account);
  }
}

/** How long a metric event may wait before it is recorded (a scrape records it at once). */
const FLUSH_MS = 20;

function cooldownActive(flags: AccountFlags, reason: (typeof COOLDOWN_REASONS)[number], now: number): boolean {
  switch (reason) {
    case 'disabled':
      return flags.disabled;
    case 'ws_unsupported':
      return flags.wsUnsupportedUntilMs > now;
    default:
      return flags.cooldownReason === reason && flags.cooldownUntilMs > now;
  }
}
