// Shell: one client Responses WebSocket (SPEC §6). A state machine: waiting for the first frame →
// idle ⇄ turn in flight → closed. The client socket is pinned to one upstream socket (and so one
// account) for as long as its `store:false` chain lives; only unchained turns may move.
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type WebSocket from 'ws';
import type { Config, AccountConfig } from '../config/schema.js';
import { RelayError, toErrorFrame, type ErrorCode } from '../errors.js';
import type { ScheduleOutcome, ScheduleRequest, SlotLease } from '../scheduler/types.js';
import { classifyErrorEvent, connectFailure, rateLimitResetMs, type UpstreamFailure } from '../upstream/failure.js';
import { scrubCredential } from '../upstream/scrub.js';
import { responsesWsTarget, type IncomingHeaders } from '../upstream/target.js';
import { connectUpstreamWs, ignoreError, sendOptions, type UpstreamWs, type UpstreamWsHandlers } from '../upstream/ws-upstream.js';
import type { HttpUpstream } from '../upstream/http-sse-upstream.js';
import { clientWritable, HttpBridge, type BridgeReason } from './bridge.js';
import { ClientGone } from './client-gone.js';
import { carriesError, classifyEvent, deferredResponseId, type ClassifiedEvent } from './events.js';
import { parseClientFrame, type CreateFrame } from './frames.js';
import { quietAfterCheck, quietSliceMs, type QuietWatch } from './quiet-watch.js';
import { applyAccountAction, refusalError } from './outcomes.js';
import type { RelayCore } from './core.js';

export interface SessionIdentity {
  /** Log/metrics id of the session (not secret). */
  id: string;
  /** Client key's name or short hash (never the key). */
  clientName: string;
  group: string;
  /** Digest of the client key (never the key): what the ingress counts connections per key by. */
  keyHash: string;
  /** The upgrade headers the session uses (sessionHeaders: pass-through and session-key ones). */
  headers: IncomingHeaders;
}

export interface SessionDeps extends RelayCore {
  onClosed(session: ResponsesSession): void;
  /** HTTP/SSE upstream for the fallback bridge (SPEC §4, §6); absent = turns are never bridged. */
  upstream?: HttpUpstream;
}

type AttemptEnd =
  | { kind: 'terminal'; ev: ClassifiedEvent }
  | { kind: 'failed_before_output'; failure: UpstreamFailure }
  | { kind: 'broken' }
  | { kind: 'upstream_timeout' }
  | { kind: 'client_gone' };
type AttemptResult = AttemptEnd & { ttftMs: number | null; responseId: string | null };
type ServeResult = { kind: 'done' } | { kind: 'moveable_failure'; failure: UpstreamFailure };
type Acquired = Extract<ScheduleOutcome, { kind: 'acquired' }>;
type TurnLog = (fields: Record<string, unknown>) => void;
/** A turn's frame sent upstream (before the turn's record is built): when, and whether it went. */
interface Presend {
  sentAt: number;
  sent: boolean;
}

/**
 * A turn being served on an upstream socket: everything it holds while its response streams, in
 * one record. It ends once (endTurn), into `onEnd` — attempt()'s promise — or, with `onEnd` null,
 * into pinnedEnded: a pinned turn started in the tick its frame came in has no promise at all.
 */
interface ActiveTurn extends QuietWatch {
  conn: UpstreamWs;
  /** Account, slot lease (released the moment the terminal event goes out; release is idempotent), decision. */
  outcome: Acquired;
  sentAt: number;
  ttftMs: number | null;
  forwarded: number;
  responseId: string | null;
  /** websocket.upstreamIdleTimeoutMs, watched against `forwarded` (quiet-watch.ts, ResponsesSession.quietCheck). */
  idleTimer: NodeJS.Timeout | null;
  onEnd: ((r: AttemptResult) => void) | null;
  /** The request's `store`: only a stored response's id is bound to the account (a `store:false` one lives on this socket alone). */
  store: boolean;
  turnNo: number;
  /** The session's turn generation when this turn began (see ResponsesSession.turnGen). */
  gen: number;
}

export class ResponsesSession implements UpstreamWsHandlers {
  private conn: UpstreamWs | null = null;
  private turn: ActiveTurn | null = null;
  private busy = false;
  /** Generation of the turn that owns `busy`: an older turn's clean-up must not touch a newer one's state. */
  private turnGen = 0;
  private closed = false;
  private model: string | null = null;
  private turnNo = 0;
  private messagesIn = 0;
  private messagesOut = 0;
  private pausedForClient = false;
  private corked = false;
  private hashMemo: { field: unknown; hash: string | null } | null = null;
  private firstTimer: NodeJS.Timeout | null;
  private idleTimer: NodeJS.Timeout | null = null;
  private readonly gone = new ClientGone();
  /** The client's TCP socket under `ws` (set before a session exists): drain events and corking. */
  private readonly socket: Duplex | undefined;
  private readonly startedAt: number;
  private idleWaiters: Array<() => void> = [];
  /** Created by the first turn that needs HTTP/SSE upstream; keeps the bridged transcript. */
  private bridge: HttpBridge | null = null;
  /** A `response.cancel` that came while the turn was still being scheduled: it follows the turn's frame. */
  private pendingCancel: Buffer | null = null;

  constructor(private readonly ws: WebSocket, readonly identity: SessionIdentity, private readonly deps: SessionDeps) {
    this.startedAt = deps.clock.now();
    const wsCfg = deps.config().websocket;
    ws.on('message', (data: Buffer, isBinary: boolean) => this.clientOnMessage(data, isBinary));
    ws.on('close', () => this.clientOnClose());
    ws.on('error', ignoreError);
    this.socket = (ws as unknown as { _socket?: Duplex })._socket;
    this.socket?.on('drain', () => this.clientOnDrain());
    this.firstTimer = setTimeout(() => this.fail('SY_ERR_FIRST_MESSAGE_TIMEOUT'), wsCfg.firstMessageTimeoutMs);
    deps.bus.emit({ type: 'gauge', name: 'ws_sessions_active', delta: 1 });
    deps.log.info({ event: 'session_start', session: identity.id, client: identity.clientName, group: identity.group }, 'session start');
  }

  /** True while a turn is being scheduled or served. */
  get inFlight(): boolean {
    return this.busy;
  }

  /** Resolves when no turn is in flight (graceful drain). */
  whenIdle(): Promise<void> {
    if (!this.busy) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Close from the relay's side (shutdown 1001, idle 1000, errors). */
  close(code: number, reason = ''): void {
    if (this.closed) return;
    try {
      this.ws.close(code, reason);
    } catch {
      this.ws.terminate();
    }
  }

  /** Drops the connection without waiting for the client's side of the close handshake. */
  terminate(): void {
    if (!this.closed) this.ws.terminate();
  }

  // ---- client side -------------------------------------------------------------------------

  private clientOnMessage(data: Buffer, isBinary: boolean): void {
    this.messagesIn++;
    if (this.firstTimer) {
      clearTimeout(this.firstTimer);
      this.firstTimer = null;
    }
    const cfg = this.deps.config();
    const frame = parseClientFrame(data, isBinary, cfg.websocket.maxMessageBytes);
    if (frame.kind === 'invalid') return this.fail(frame.error, frame.message);
    if (frame.kind === 'cancel') return this.cancel(frame.raw);
    const model = frame.model ?? this.model;
    if (model === null) return this.fail('SY_ERR_MISSING_MODEL');
    if (this.busy) return this.sendError(new RelayError('SY_ERR_IN_FLIGHT'));
    this.model = model;
    this.busy = true;
    const gen = ++this.turnGen;
    // A pinned turn's frame is upstream when startPinnedNow returns; what is not needed for that follows.
    let started: boolean;
    try {
      started = this.startPinnedNow(frame, model, gen);
    } catch (err) {
      this.crashed(err, gen);
      return;
    }
    // (A turn that ended already has armed the idle timer again.)
    if (this.busy) this.clearIdle();
    if (started) return;
    this.runTurn(frame, model).then(
      () => this.settleTurn(gen),
      (err: unknown) => this.crashed(err, gen),
    );
  }

  /** A bug, not an upstream or client failure: the turn ends with an internal error. */
  private crashed(err: unknown, gen: number): void {
    this.deps.log.error({ session: this.identity.id, err: err instanceof Error ? err.message : String(err) }, 'turn crashed');
    this.fail('SY_ERR_INTERNAL');
    this.settleTurn(gen);
  }

  /** Turn `gen` is over: the session is idle again, unless a newer turn owns it already. */
  private settleTurn(gen: number): void {
    if (gen === this.turnGen) this.settleIdle();
  }

  /**
   * `response.cancel` (SPEC §6) goes to the turn in flight, wherever it is served; with none in
   * flight the relay answers `response_cancel_not_active` itself and the session goes on, as
   * OpenAI's realtime API does (the upstream socket, if any, never sees it).
   */
  private cancel(raw: Buffer): void {
    if (!this.busy) return this.sendError(new RelayError('SY_ERR_CANCEL_NOT_ACTIVE'));
    if (this.turn) {
      this.turn.conn.send(raw);
      return;
    }
    if (this.bridge?.cancel()) return;
    this.pendingCancel = raw;
  }

  /** No turn in flight any more: the client may send the next one; drain waiters may proceed. */
  private settleIdle(): void {
    if (!this.busy) return;
    this.busy = false;
    this.pendingCancel = null;
    for (const w of this.idleWaiters.splice(0)) w();
    this.armIdle();
  }

  private clientOnClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.gone.abort();
    if (this.firstTimer) clearTimeout(this.firstTimer);
    this.clearIdle();
    if (this.turn) this.endTurn(this.turn, { kind: 'client_gone' });
    this.dropUpstream();
    const d = this.deps;
    d.bus.emit({ type: 'gauge', name: 'ws_sessions_active', delta: -1 });
    this.flushMessageCounts();
    d.log.info({ event: 'session_end', session: this.identity.id, turns: this.turnNo, durationMs: d.clock.now() - this.startedAt }, 'session end');
    d.onClosed(this);
  }

  private clientOnDrain(): void {
    if (this.pausedForClient && this.ws.bufferedAmount < this.deps.config().websocket.maxBufferedBytes / 2) {
      this.pausedForClient = false;
      this.conn?.resume();
    }
  }

  /**
   * `flush`: write this frame, and any held before it in this tick, at once instead of at the end
   * of the tick (corkClient).
   */
  private forward(data: Buffer, isBinary: boolean, flush = false): void {
    if (this.closed) return;
    if (!flush) this.corkClient();
    this.ws.send(data, sendOptions(isBinary));
    if (flush) this.uncorkClient();
    this.messagesOut++;
    if (!this.pausedForClient && this.ws.bufferedAmount > this.deps.config().websocket.maxBufferedBytes && this.conn) {
      this.pausedForClient = true;
      this.conn.pause();
    }
  }

  /**
   * Upstream frames come in bursts (one TCP read holds many, all handled in one tick): holding
   * the client socket's writes until the tick ends sends a burst in one writev, not one per frame.
   */
  private corkClient(): void {
    if (this.corked || !this.socket) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(() => this.uncorkClient());
  }

  /** Ends the cork corkClient took, if it is still held (a flush may have ended it first). */
  private uncorkClient(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket?.uncork();
  }

  private sendError(err: RelayError): void {
    if (this.closed) return;
    const { frame, close, reason } = toErrorFrame(err);
    this.ws.send(frame);
    this.messagesOut++;
    if (close !== null) this.close(close, reason);
  }

  private fail(code: ErrorCode, message?: string): void {
    this.sendError(new RelayError(code, message));
  }

  private armIdle(): void {
    if (this.closed) return;
    this.clearIdle();
    this.idleTimer = setTimeout(ResponsesSession.idleExpired, this.deps.config().websocket.idleTimeoutMs, this);
  }

  /** (A function and an argument, not a closure: the timer lives as long as the idle session.) */
  private static idleExpired(session: ResponsesSession): void {
    session.close(1000, 'idle timeout');
  }

  private clearIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  private flushMessageCounts(): void {
    const bus = this.deps.bus;
    if (this.messagesIn) bus.emit({ type: 'ws_message', direction: 'client_in', count: this.messagesIn });
    if (this.messagesOut) bus.emit({ type: 'ws_message', direction: 'client_out', count: this.messagesOut });
    this.messagesIn = 0;
    this.messagesOut = 0;
  }

  // ---- upstream side -----------------------------------------------------------------------

  /** UpstreamWsHandlers: a frame from an upstream socket this session opened. */
  onMessage(conn: UpstreamWs, data: Buffer, isBinary: boolean): void {
    if (conn !== this.conn) return;
    const t = this.turn;
    if (!t || t.conn !== conn) {
      // Between turns: an `error` here (e.g. the 60-minute cap) would be read by the client as the
      // answer to its next request, so only harmless notices are passed on.
      if (classifyEvent(data, false, true).type !== 'error') this.forward(data, isBinary, conn.lastInRead());
      return;
    }
    const needId = t.responseId === null;
    // What decides the forwarding is read first; a response id (a turn's first event carries one)
    // is read once the frame is on its way, so it does not add to the client's time to first event.
    const ev = classifyEvent(data, needId, true);
    if (t.forwarded === 0 && ev.type === 'error') {
      const failure = this.errorFailure(ev);
      if (failure.retryable) return this.endTurn(t, { kind: 'failed_before_output', failure });
    }
    // Only error events can quote a credential back; every other frame passes untouched.
    // A turn's first event goes out at once: it ends the client's time to first event, and the
    // frames read with it in the same tick would otherwise hold it back (see corkClient). So does
    // the last frame of a read: nothing else comes in this tick to batch it with.
    this.forward(carriesError(ev) ? scrubCredential(data, t.outcome.account.apiKey) : data, isBinary, t.forwarded === 0 || conn.lastInRead());
    // The slot is free for the client's next turn, which cannot be read before this handler ends.
    if (ev.terminal) void releaseQuietly(t.outcome.lease);
    t.forwarded++;
    if (ev.output && t.ttftMs === null) t.ttftMs = performance.now() - t.sentAt;
    const responseId = ev.idDeferred ? deferredResponseId(data, ev, needId) : ev.responseId;
    if (responseId !== null && responseId !== t.responseId) {
      t.responseId = responseId;
      conn.rememberResponse(responseId);
      if (t.store) this.deps.scheduler.bindResponse(this.identity.group, responseId, t.outcome.account.id).catch(() => {});
    }
    if (ev.terminal) {
      // The client may send its next request as soon as it reads this event (Codex and the SDK
      // do): the slot and the in-flight flag are freed now, not after the turn's bookkeeping.
      this.endTurn(t, { kind: 'terminal', ev });
      this.settleIdle();
    }
  }

  /** UpstreamWsHandlers: an upstream socket this session opened has closed. */
  onClose(conn: UpstreamWs): void {
    this.deps.bus.emit({ type: 'gauge', name: 'upstream_ws_connections', delta: -1 });
    if (conn === this.conn) this.conn = null;
    const t = this.turn;
    if (t && t.conn === conn) {
      this.endTurn(t, t.forwarded === 0 ? { kind: 'failed_before_output', failure: connectFailure('upstream closed before the first event') } : { kind: 'broken' });
    }
  }

  private dropUpstream(): void {
    const c = this.conn;
    this.conn = null;
    this.pausedForClient = false;
    c?.close(1000);
  }

  private async openUpstream(account: AccountConfig): Promise<{ ok: true; conn: UpstreamWs } | { ok: false; failure: UpstreamFailure }> {
    const cfg = this.deps.config().websocket;
    const target = responsesWsTarget(account, this.identity.headers);
    const r = await connectUpstreamWs({
      account,
      url: target.url,
      headers: target.headers,
      timeoutMs: cfg.upstreamConnectTimeoutMs,
      maxPayload: Math.max(cfg.maxMessageBytes, 64 * 1024 * 1024),
      nowMs: () => this.deps.clock.now(),
      // The session itself: no handler object and closures per socket.
      handlers: this,
    });
    if (!r.ok) return r;
    this.deps.bus.emit({ type: 'gauge', name: 'upstream_ws_connections', delta: 1 });
    if (this.closed) {
      r.conn.close(1000);
      return { ok: false, failure: connectFailure('client gone') };
    }
    if (this.conn && this.conn !== r.conn) this.dropUpstream();
    this.conn = r.conn;
    return { ok: true, conn: r.conn };
  }

  private sendFrame(conn: UpstreamWs, frame: CreateFrame): Presend {
    const sentAt = performance.now();
    return { sentAt, sent: !this.closed && conn.send(frame.raw) };
  }

  /** Sends the frame on `conn` and resolves when the turn ends there. */
  private attempt(frame: CreateFrame, outcome: Acquired, conn: UpstreamWs, turnNo: number): Promise<AttemptResult> {
    return new Promise<AttemptResult>((resolve) => this.startAttempt(frame, outcome, conn, this.sendFrame(conn, frame), resolve, turnNo, this.turnGen));
  }

  /** Serves a turn whose frame `presend` says was sent on `conn`: it ends (endTurn) into `onEnd`, or pinnedEnded. */
  private startAttempt(frame: CreateFrame, outcome: Acquired, conn: UpstreamWs, presend: Presend, onEnd: ActiveTurn['onEnd'], turnNo: number, gen: number): void {
    // The frame left first; the turn's state is set up after it, in the same tick, so no
    // upstream event can arrive before it (they come in later callbacks).
    const sent = presend.sent;
    if (sent && this.pendingCancel !== null) {
      conn.send(this.pendingCancel);
      this.pendingCancel = null;
    }
    const turn: ActiveTurn = { conn, outcome, sentAt: presend.sentAt, ttftMs: null, forwarded: 0, responseId: null, idleTimer: null, seenAtCheck: 0, quietSlices: 0, onEnd, store: frame.store, turnNo, gen };
    this.turn = turn;
    if (this.closed) return this.endTurn(turn, { kind: 'client_gone' });
    // Codex's stream_idle_timeout: an upstream gone quiet must not hold the session and its slot
    // forever. (Arguments, not a closure: the timer holds nothing the turn does not.)
    turn.idleTimer = setTimeout(ResponsesSession.quietCheck, quietSliceMs(this.deps.config().websocket.upstreamIdleTimeoutMs), this, turn);
    if (!sent) this.endTurn(turn, { kind: 'failed_before_output', failure: connectFailure('upstream socket closed') });
  }

  /** One slice of upstreamIdleTimeoutMs has passed: the turn's forwarded events are its activity. */
  private static quietCheck(session: ResponsesSession, turn: ActiveTurn): void {
    if (session.turn !== turn) return;
    if (quietAfterCheck(turn, turn.forwarded)) return ResponsesSession.upstreamWentQuiet(session, turn);
    turn.idleTimer?.refresh();
  }

  /** The turn's upstream sent nothing for upstreamIdleTimeoutMs: its socket is closed first, so late events never reach the client. */
  private static upstreamWentQuiet(session: ResponsesSession, turn: ActiveTurn): void {
    if (turn.conn === session.conn) session.dropUpstream();
    else turn.conn.close(1000);
    session.endTurn(turn, { kind: 'upstream_timeout' });
  }

  /** Ends the turn in flight (once: a later end of the same turn is ignored). */
  private endTurn(turn: ActiveTurn, end: AttemptEnd): void {
    if (this.turn !== turn) return;
    this.turn = null;
    if (turn.idleTimer) clearTimeout(turn.idleTimer);
    const result: AttemptResult = { ...end, ttftMs: turn.ttftMs, responseId: turn.responseId };
    if (turn.onEnd) turn.onEnd(result);
    else this.pinnedEnded(turn, result);
  }

  /**
   * A chained `store:false` turn whose socket holds the chain, with its slot free now (in-process
   * store): its frame goes upstream in the tick it arrived in, ahead of its schedule request,
   * decision and lease, built after it; the turn is then one ActiveTurn record, no promise. False:
   * runTurn serves the frame (not chained, bridged, chain lost, or the slot must be waited for).
   */
  private startPinnedNow(frame: CreateFrame, model: string, gen: number): boolean {
    const conn = this.chainSocket(frame);
    if (conn === null || conn === 'lost') return false;
    const slot = this.deps.scheduler.acquireOnNow?.(conn.account.id, this.identity.group) ?? null;
    if (slot === null) return false;
    const presend = this.sendFrame(conn, frame);
    const turnNo = ++this.turnNo;
    const outcome = slot.outcome(this.scheduleRequest(frame, model));
    this.startAttempt(frame, outcome, conn, presend, null, turnNo, gen);
    return true;
  }

  /**
   * The upstream socket a chained `store:false` frame must be served on (SPEC §6: the chain lives
   * in that socket's memory alone); 'lost' when no live socket holds it; null when the frame is
   * not such a turn (unchained, stored, or chained on a response the bridge produced).
   */
  private chainSocket(frame: CreateFrame): UpstreamWs | 'lost' | null {
    const prev = frame.previousResponseId;
    if (prev === null || frame.store || this.bridge?.knows(prev)) return null;
    const conn = this.conn;
    return conn && conn.alive && conn.holdsResponse(prev) ? conn : 'lost';
  }

  /** A turn startPinnedNow started has ended: its bookkeeping, then the session is idle again. */
  private pinnedEnded(turn: ActiveTurn, result: AttemptResult): void {
    void releaseQuietly(turn.outcome.lease);
    const gen = turn.gen;
    try {
      const served = this.served(turn.outcome, result, (f) => this.logTurn(turn.turnNo, f), 0);
      if (!(served instanceof Promise)) return this.pinnedServed(served, gen);
      served.then(
        (r) => this.pinnedServed(r, gen),
        (err: unknown) => this.crashed(err, gen),
      );
    } catch (err) {
      this.crashed(err, gen);
    }
  }

  private pinnedServed(result: ServeResult, gen: number): void {
    // The chain cannot move: drop the socket so the client replays the full history elsewhere.
    if (result.kind === 'moveable_failure') this.chainLost();
    this.settleTurn(gen);
  }

  private chainLost(): void {
    this.dropUpstream();
    this.sendError(new RelayError('SY_ERR_PREVIOUS_RESPONSE_NOT_FOUND'));
  }

  // ---- one turn ----------------------------------------------------------------------------

  private async runTurn(frame: CreateFrame, model: string): Promise<void> {
    const turnNo = ++this.turnNo;
    const d = this.deps;
    const cfg = d.config();
    const log: TurnLog = (fields) => this.logTurn(turnNo, fields);

    // A chain the bridge produced lives in the bridge's transcript, not on any upstream socket.
    if (frame.previousResponseId !== null && this.bridge?.knows(frame.previousResponseId)) {
      return this.runBridged(frame, model, 'chained_bridge', turnNo);
    }

    // A store:false chain lives only in the memory of the upstream socket that produced it.
    // (startPinnedNow serves it when its slot is free at once.)
    const chain = this.chainSocket(frame);
    if (chain === 'lost') {
      log({ outcome: 'previous_response_not_found', layer: 'previous_response_id' });
      return this.sendError(new RelayError('SY_ERR_PREVIOUS_RESPONSE_NOT_FOUND'));
    }
    if (chain !== null) {
      const outcome = await d.scheduler.acquireOn(chain.account.id, this.scheduleRequest(frame, model), this.gone);
      if (outcome.kind === 'refused') return this.refuse(outcome, 0, null, log);
      const serving = this.serve(frame, outcome, chain, log, 0, turnNo);
      // The frame went upstream in serve's synchronous part, and a pinned turn never needs its
      // parsed body again (no failover, no bridge): a Codex body (instructions, tools, input) is
      // tens of KB of objects that would otherwise live, and be copied by every scavenge, for as
      // long as the response streams.
      frame.body = RELEASED_BODY;
      if ((await serving).kind === 'moveable_failure') this.chainLost();
      return;
    }

    const req = this.scheduleRequest(frame, model);
    const excluded = req.excluded as Set<string>;
    let lastFailure: UpstreamFailure | null = null;
    // A switch is counted when the turn actually lands on another account, not when one fails.
    let switchingFrom: string | null = null;
    for (let switches = 0; ; switches++) {
      if (this.closed) return;
      const outcome = await d.scheduler.select(req, this.gone);
      if (outcome.kind === 'acquired' && switchingFrom !== null) {
        d.scheduler.reportSwitch(switchingFrom);
        switchingFrom = null;
      }
      if (outcome.kind === 'refused') {
        if (outcome.reason === 'no_compatible_account' && cfg.websocket.httpFallback && d.upstream && !this.closed) {
          return this.runBridged(frame, model, 'no_ws_account', turnNo);
        }
        return this.refuse(outcome, switches, lastFailure, log);
      }
      let conn = this.conn && this.conn.alive && this.conn.account.id === outcome.account.id ? this.conn : null;
      if (!conn) {
        const opened = await this.openUpstream(outcome.account);
        if (!opened.ok) {
          await outcome.lease.release();
          if (this.closed) return;
          lastFailure = opened.failure;
          await applyAccountAction(d.scheduler, outcome.account.id, opened.failure);
          d.scheduler.reportResult(outcome.account.id, false, null);
          log({ account: outcome.account.id, layer: outcome.decision.layer, outcome: 'upstream_connect_failed', detail: opened.failure.detail, switches });
          if (!this.mayMove(opened.failure, switches, cfg)) return this.allFailed(opened.failure);
          excluded.add(outcome.account.id);
          switchingFrom = outcome.account.id;
          continue;
        }
        conn = opened.conn;
      }
      const result = await this.serve(frame, outcome, conn, log, switches, turnNo);
      if (result.kind === 'done') return;
      lastFailure = result.failure;
      if (!this.mayMove(lastFailure, switches, cfg)) return this.allFailed(lastFailure);
      // The upstream answered this turn with an error before any output: its socket's state is
      // suspect, and the turn carries no chain, so it moves to a fresh socket on another account.
      this.dropUpstream();
      excluded.add(outcome.account.id);
      switchingFrom = outcome.account.id;
    }
  }

  private scheduleRequest(frame: CreateFrame, model: string): ScheduleRequest {
    const d = this.deps;
    return {
      group: this.identity.group,
      sessionHash: this.sessionHashOf(frame.body),
      previousResponseId: frame.previousResponseId,
      model,
      requiredTransport: 'ws',
      excluded: new Set<string>(),
      fallsBackToHttp: d.config().websocket.httpFallback && d.upstream !== undefined,
    };
  }

  private logTurn(turnNo: number, fields: Record<string, unknown>): void {
    this.deps.log.info({ event: 'turn', session: this.identity.id, turn: turnNo, transport: 'ws', ...fields }, 'turn');
  }

  /**
   * The session key comes from the session's fixed upgrade headers or, without one, from the
   * body's `prompt_cache_key` (SPEC §5): the hash (a SHA-256) is computed again only when that
   * field changes, not on every turn.
   */
  private sessionHashOf(body: Record<string, unknown>): string | null {
    const field = body.prompt_cache_key;
    const memo = this.hashMemo;
    if (memo !== null && memo.field === field) return memo.hash;
    const hash = this.deps.sessionHash(this.identity.group, this.identity.headers, body);
    this.hashMemo = { field, hash };
    return hash;
  }

  /** An upstream error event → account action; a 429 cools down until the reset its headers give. */
  private errorFailure(ev: ClassifiedEvent): UpstreamFailure {
    const e = ev.error;
    const until = e?.headers ? rateLimitResetMs(e.headers, this.deps.clock.now()) : null;
    return classifyErrorEvent(e?.status ?? null, e?.code ?? null, e?.type ?? null, until);
  }

  /** Serves the turn over HTTP/SSE upstream through the session's bridge (created on first use). */
  private async runBridged(frame: CreateFrame, model: string, reason: BridgeReason, turnNo: number): Promise<void> {
    const d = this.deps;
    const id = this.identity;
    this.bridge ??= new HttpBridge({
      config: d.config,
      scheduler: d.scheduler,
      clock: d.clock,
      bus: d.bus,
      log: d.log.child({ session: id.id }),
      upstream: d.upstream!,
      group: id.group,
      headers: id.headers,
      sessionHash: (body) => d.sessionHash(id.group, id.headers, body),
      send: (data) => {
        this.forward(Buffer.from(data), false);
        return clientWritable(this.ws, d.config().websocket.maxBufferedBytes);
      },
      close: (code, reason) => this.close(code, reason),
      signal: this.gone.signal,
    });
    const turn = this.bridge.runTurn(frame, model, reason, turnNo);
    // A cancel that came while the turn was being scheduled applies to it now it is the bridge's.
    if (this.pendingCancel !== null) {
      this.pendingCancel = null;
      this.bridge.cancel();
    }
    await turn;
    this.flushMessageCounts();
  }

  private mayMove(f: UpstreamFailure | null, switches: number, cfg: Config): boolean {
    return f !== null && f.retryable && switches < cfg.scheduler.maxAccountSwitches && !this.closed;
  }

  /**
   * Runs one attempt with an acquired slot, releases the slot, reports the result.
   * Returns 'moveable_failure' when the upstream failed before anything reached the client.
   */
  private async serve(frame: CreateFrame, outcome: Acquired, conn: UpstreamWs, log: TurnLog, switches: number, turnNo: number): Promise<ServeResult> {
    let result: AttemptResult;
    try {
      result = await this.attempt(frame, outcome, conn, turnNo);
    } finally {
      await releaseQuietly(outcome.lease);
    }
    return this.served(outcome, result, log, switches);
  }

  /**
   * An attempt's bookkeeping once its slot is released: scheduler report, log line, metrics. A
   * promise only where an account action must land first (an upstream failure).
   */
  private served(outcome: Acquired, result: AttemptResult, log: TurnLog, switches: number): ServeResult | Promise<ServeResult> {
    const d = this.deps;
    const account = outcome.account;
    const base = { account: account.id, layer: outcome.decision.layer, reason: outcome.decision.transportReason, switches, waitedMs: outcome.waitedMs };
    const ttft = result.ttftMs;
    if (result.kind === 'client_gone') {
      log({ ...base, outcome: 'client_gone' });
      d.bus.emit({ type: 'turn', account: account.id, transport: 'ws', outcome: 'client_gone', ttftMs: null });
      return DONE;
    }
    if (result.kind === 'failed_before_output') {
      const failure = result.failure;
      return applyAccountAction(d.scheduler, account.id, failure).then((): ServeResult => {
        d.scheduler.reportResult(account.id, false, null);
        log({ ...base, outcome: 'upstream_failed', detail: failure.detail });
        d.bus.emit({ type: 'turn', account: account.id, transport: 'ws', outcome: 'upstream_error', ttftMs: null });
        return { kind: 'moveable_failure', failure };
      });
    }
    if (result.kind === 'broken' || result.kind === 'upstream_timeout') {
      const broken = result.kind === 'broken';
      d.scheduler.reportResult(account.id, false, ttft);
      log({ ...base, outcome: broken ? 'upstream_broken' : 'upstream_timeout', ttftMs: ttft });
      d.bus.emit({ type: 'turn', account: account.id, transport: 'ws', outcome: 'upstream_error', ttftMs: ttft });
      this.sendError(new RelayError(broken ? 'SY_ERR_UPSTREAM_FAILED' : 'SY_ERR_UPSTREAM_TIMEOUT'));
      return DONE;
    }
    const ev = result.ev;
    const ended = (): ServeResult => {
      const outcomeName = ev.outcome ?? 'completed';
      log({ ...base, outcome: outcomeName, ttftMs: ttft === null ? null : Math.round(ttft * 10) / 10, responseId: result.responseId });
      d.bus.emit({ type: 'turn', account: account.id, transport: 'ws', outcome: outcomeName, ttftMs: ttft });
      this.flushMessageCounts();
      return DONE;
    };
    if (ev.outcome !== 'failed' && ev.outcome !== 'error') {
      d.scheduler.reportResult(account.id, true, ttft);
      return ended();
    }
    const f = this.errorFailure(ev);
    if (f.action.kind === 'none') return ended();
    return applyAccountAction(d.scheduler, account.id, f).then(() => {
      d.scheduler.reportResult(account.id, false, ttft);
      return ended();
    });
  }

  private refuse(
    outcome: Extract<ScheduleOutcome, { kind: 'refused' }>,
    switches: number,
    lastFailure: UpstreamFailure | null,
    log: TurnLog,
  ): void {
    if (outcome.reason === 'aborted') return;
    log({ layer: outcome.decision.layer, outcome: 'refused', reason: outcome.reason, switches });
    if (switches > 0 && outcome.reason === 'no_compatible_account') return this.allFailed(lastFailure);
    this.sendError(refusalError(outcome, this.deps.config().websocket.httpFallback));
  }

  private allFailed(last: UpstreamFailure | null): void {
    const code: ErrorCode = last?.action.kind === 'rate_limited' ? 'SY_ERR_UPSTREAM_RATE_LIMITED' : 'SY_ERR_ALL_ACCOUNTS_FAILED';
    this.sendError(new RelayError(code));
  }
}

const RELEASED_BODY: Record<string, unknown> = Object.freeze({});
const DONE: ServeResult = Object.freeze({ kind: 'done' });

async function releaseQuietly(lease: SlotLease): Promise<void> {
  try {
    await lease.release();
  } catch {
    // The store's own lease expiry frees it; never fail a turn over a release.
  }
}
