// Shell: one live Realtime session (SPEC §7): a client socket spliced to one upstream socket,
// frames unchanged both ways (text stays text, binary stays binary), in order, with backpressure
// both ways. It owns the session's slot and releases it exactly once, whichever side ends first.
import type { WebSocket } from 'ws';
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import type { EventBus, Layer } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import type { Scheduler, SlotLease } from '../scheduler/types.js';
import { ignoreError, type UpstreamWs, type UpstreamWsHandlers } from '../upstream/ws-upstream.js';
import { applyAccountAction } from './outcomes.js';
import { quietAfterCheck, quietSliceMs, type QuietWatch } from './quiet-watch.js';
import { scrubCredential } from '../upstream/scrub.js';
import { clientCloseCode, closeReason, inspectUpstreamEvent, mayCarryError, upstreamCloseCode, type HealthSignal } from './realtime-wire.js';

export interface SpliceDeps {
  config(): Config;
  scheduler: Scheduler;
  clock: Clock;
  bus: EventBus;
  log: Logger;
  /** Called once, after the slot is released. */
  onReleased(s: RealtimeSplice): void;
}

export interface SpliceInfo {
  id: string;
  clientName: string;
  layer: Layer;
  switches: number;
  waitedMs: number;
  model: string | null;
  intent: string | null;
}

/** Per-frame bookkeeping charged against the buffer bound, so many tiny frames count too. */
const FRAME_OVERHEAD_BYTES = 64;
const OPEN = 1;

/**
 * Receives upstream frames from the moment the socket opens, before any splice exists, and holds
 * them (and a close) until one binds. The server speaks first (`session.created`), so this is
 * what keeps those first events from being lost.
 */
export class UpstreamSink implements UpstreamWsHandlers {
  private early: Array<{ data: Buffer; isBinary: boolean }> = [];
  private closed: { code: number; reason: string } | null = null;
  private target: RealtimeSplice | null = null;

  onMessage(_c: UpstreamWs, data: Buffer, isBinary: boolean): void {
    if (this.target) this.target.upstreamOnMessage(data, isBinary);
    else this.early.push({ data, isBinary });
  }

  onClose(_c: UpstreamWs, code: number, reason: string): void {
    if (this.target) this.target.upstreamOnClose(code, reason);
    else this.closed = { code, reason };
  }

  bind(s: RealtimeSplice): void {
    this.target = s;
    for (const f of this.early.splice(0)) s.upstreamOnMessage(f.data, f.isBinary);
    if (this.closed) s.upstreamOnClose(this.closed.code, this.closed.reason);
  }
}

export class RealtimeSplice {
  /** Resolves once the slot is released. */
  readonly released: Promise<void>;
  private resolveReleased!: () => void;
  private client: WebSocket | null = null;
  /** Upstream frames waiting for the client's upgrade to complete; never dropped. */
  private pending: Array<{ data: Buffer; isBinary: boolean }> = [];
  private pendingBytes = 0;
  private upstreamEnded = false;
  /** The close the client gets once the session ends from the relay's or the upstream's side. */
  private end: { code: number; reason: string } | null = null;
  private upstreamPaused = false;
  private clientPaused = false;
  /** The account said it is rate limited: an abnormal upstream close then maps to 1013. */
  private rateLimited = false;
  private readonly reported = new Set<string>();
  private finished = false;
  private countedActive = false;
  private idleTimer: NodeJS.Timeout | null = null;
  private readonly quiet: QuietWatch = { seenAtCheck: 0, quietSlices: 0 };
  private readonly startedAt: number;
  private readonly stats = { framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0, upstreamPauses: 0, clientPauses: 0 };
  private readonly maxBuffered: number;

  constructor(
    private readonly deps: SpliceDeps,
    private readonly conn: UpstreamWs,
    private readonly lease: SlotLease,
    readonly info: SpliceInfo,
    sink: UpstreamSink,
  ) {
    this.startedAt = deps.clock.now();
    this.maxBuffered = deps.config().websocket.maxBufferedBytes;
    this.released = new Promise((r) => (this.resolveReleased = r));
    deps.bus.emit({ type: 'gauge', name: 'upstream_ws_connections', delta: 1 });
    deps.log.info(
      { event: 'realtime_session_start', client: info.clientName, account: conn.account.id, layer: info.layer, switches: info.switches, waitedMs: info.waitedMs, model: info.model, intent: info.intent },
      'realtime session start',
    );
    sink.bind(this);
  }

  /** The client's upgrade completed: deliver what arrived meanwhile, in order, then splice. */
  attachClient(ws: WebSocket): void {
    this.client = ws;
    ws.on('message', (data: Buffer, isBinary: boolean) => this.clientOnMessage(data, isBinary));
    ws.on('close', (code: number, reason: Buffer) => this.clientOnClose(code, reason.toString('utf8')));
    ws.on('error', ignoreError);
    for (const f of this.pending.splice(0)) this.deliver(f.data, f.isBinary);
    this.pendingBytes = 0;
    // Ended meanwhile (upstream closed, shutdown): the client still gets what was sent, then the close.
    if (this.end) return this.closeClient(this.end.code, this.end.reason);
    this.countedActive = true;
    this.deps.bus.emit({ type: 'gauge', name: 'realtime_sessions_active', delta: 1 });
    this.flowUpstream();
    // websocket.idleTimeoutMs, watched against the frames both ways (quiet-watch.ts): a frame
    // costs its count, not a timer re-arm.
    this.idleTimer = setTimeout(RealtimeSplice.quietCheck, quietSliceMs(this.deps.config().websocket.idleTimeoutMs), this);
    this.idleTimer.unref();
  }

  /** One slice of websocket.idleTimeoutMs has passed: frames either way are the session's activity. */
  private static quietCheck(splice: RealtimeSplice): void {
    if (splice.finished) return;
    if (quietAfterCheck(splice.quiet, splice.stats.framesIn + splice.stats.framesOut)) return splice.close(1000, 'idle timeout');
    splice.idleTimer?.refresh();
  }

  /** The client socket went away before its upgrade completed. */
  clientGone(): void {
    if (this.client) return;
    this.pending = [];
    this.pendingBytes = 0;
    this.conn.close(1000);
    this.finish('client', 1006);
  }

  /** Close from the relay's side (shutdown 1001, idle 1000). */
  close(code: number, reason: string): void {
    if (this.end) return;
    this.end = { code, reason };
    this.conn.close(code === 1001 ? 1001 : 1000, reason);
    if (this.client) this.closeClient(code, reason);
    this.finish('relay', code);
  }

  // ---- upstream → client -------------------------------------------------------------------

  upstreamOnMessage(raw: Buffer, isBinary: boolean): void {
    // Frames pass unchanged, except that an error event never carries the account's key onward.
    const maybeError = mayCarryError(raw, isBinary);
    const data = maybeError ? scrubCredential(raw, this.conn.account.apiKey) : raw;
    const signal = inspectUpstreamEvent(data, isBinary, this.deps.clock.now(), maybeError);
    if (signal) this.onHealth(signal);
    if (this.client) return this.deliver(data, isBinary);
    if (this.finished) return;
    this.pending.push({ data, isBinary });
    this.pendingBytes += data.length + FRAME_OVERHEAD_BYTES;
    this.flowUpstream();
  }

  upstreamOnClose(code: number, reason: string): void {
    this.deps.bus.emit({ type: 'gauge', name: 'upstream_ws_connections', delta: -1 });
    this.upstreamEnded = true;
    if (!this.end) {
      this.end = { code: clientCloseCode(code, this.rateLimited), reason };
      if (this.client) this.closeClient(this.end.code, reason);
    }
    this.finish('upstream', code);
  }

  private deliver(data: Buffer, isBinary: boolean): void {
    const c = this.client;
    if (!c || c.readyState !== OPEN) return;
    c.send(data, { binary: isBinary }, this.clientOnSent);
    this.stats.framesOut++;
    this.stats.bytesOut += data.length;
    this.deps.bus.emit({ type: 'realtime_traffic', direction: 'client_out', frames: 1, bytes: data.length });
    this.flowUpstream();
  }

  private readonly clientOnSent = (): void => {
    if (this.upstreamPaused) this.flowUpstream();
  };

  /** Backpressure towards the client: pause reading upstream past the bound, resume at half. */
  private flowUpstream(): void {
    if (!this.conn.alive) return;
    const buffered = this.client ? this.client.bufferedAmount : this.pendingBytes;
    if (!this.upstreamPaused && buffered > this.maxBuffered) {
      this.upstreamPaused = true;
      this.stats.upstreamPauses++;
      this.conn.pause();
    } else if (this.upstreamPaused && this.client && buffered <= this.maxBuffered / 2) {
      this.upstreamPaused = false;
      this.conn.resume();
    }
  }

  private onHealth(signal: HealthSignal): void {
    const d = this.deps;
    const account = this.conn.account.id;
    // Realtime responses feed the account's error-rate EWMA like turns do (no TTFT: audio first).
    if (signal.kind === 'success') return d.scheduler.reportResult(account, true, null);
    if (signal.kind === 'exhausted') {
      this.rateLimited = true;
      d.scheduler.markRateLimited(account, signal.untilMs).catch(() => undefined);
      this.logOnce('exhausted', { event: 'realtime_rate_limited', account, untilMs: signal.untilMs });
      return;
    }
    // Only the account's health is touched: the session itself stays up, the client sees the event.
    if (signal.failure.action.kind === 'rate_limited') this.rateLimited = true;
    d.scheduler.reportResult(account, false, null);
    void applyAccountAction(d.scheduler, account, signal.failure);
    this.logOnce(signal.failure.action.kind, { event: 'realtime_upstream_error', account, detail: signal.failure.detail });
  }

  private logOnce(key: string, fields: Record<string, unknown>): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.deps.log.warn(fields, 'realtime account health event');
  }

  // ---- client → upstream -------------------------------------------------------------------

  private clientOnMessage(data: Buffer, isBinary: boolean): void {
    const ws = this.conn.ws;
    if (!this.conn.alive || ws.readyState !== OPEN) return;
    ws.send(data, { binary: isBinary }, this.upstreamOnSent);
    this.stats.framesIn++;
    this.stats.bytesIn += data.length;
    this.deps.bus.emit({ type: 'realtime_traffic', direction: 'client_in', frames: 1, bytes: data.length });
    this.flowClient();
  }

  private readonly upstreamOnSent = (): void => {
    if (this.clientPaused) this.flowClient();
  };

  /** Backpressure towards the upstream: stop reading the client while the upstream is slow. */
  private flowClient(): void {
    const c = this.client;
    if (!c) return;
    const buffered = this.conn.ws.bufferedAmount;
    if (!this.clientPaused && buffered > this.maxBuffered) {
      this.clientPaused = true;
      this.stats.clientPauses++;
      c.pause();
    } else if (this.clientPaused && buffered <= this.maxBuffered / 2) {
      this.clientPaused = false;
      c.resume();
    }
  }

  private clientOnClose(code: number, reason: string): void {
    if (!this.upstreamEnded) this.conn.close(upstreamCloseCode(code), closeReason(reason));
    this.finish('client', code);
  }

  // ---- end ---------------------------------------------------------------------------------

  private closeClient(code: number, reason: string): void {
    const c = this.client;
    if (!c || c.readyState > OPEN) return;
    if (this.clientPaused) c.resume();
    try {
      c.close(code, closeReason(reason));
    } catch {
      c.terminate();
    }
    // A client that never answers the close handshake must not hold the socket open.
    setTimeout(() => c.terminate(), 5_000).unref();
  }

  /** Releases everything exactly once; the first side to end decides `closedBy`. */
  private finish(closedBy: 'client' | 'upstream' | 'relay', code: number): void {
    if (this.finished) return;
    this.finished = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    const d = this.deps;
    if (this.countedActive) d.bus.emit({ type: 'gauge', name: 'realtime_sessions_active', delta: -1 });
    d.log.info(
      { event: 'realtime_session_end', account: this.conn.account.id, layer: this.info.layer, durationMs: d.clock.now() - this.startedAt, closedBy, code, ...this.stats },
      'realtime session end',
    );
    this.lease
      .release()
      .catch(() => undefined)
      .finally(() => {
        d.onReleased(this);
        this.resolveReleased();
      });
  }
}
