// Shell: the Realtime API relay (SPEC §7). One client upgrade → one account chosen at connect time
// (session layer, then load balance; WS-capable accounts), one slot held for the socket's life, one
// upstream socket. The client's upgrade completes only once the upstream socket is open, so every
// failure before that is a plain HTTP answer and handshake failures move to another account unseen.
// Then frames are spliced both ways unchanged (realtime-splice.ts).
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Config } from '../config/schema.js';
import { RelayError, type ErrorCode } from '../errors.js';
import type { ClientIdentity } from '../ingress/auth.js';
import { chooseSubprotocol, rejectUpgrade } from '../ingress/http-server.js';
import type { Logger } from '../observability/logger.js';
import type { ScheduleOutcome, ScheduleRequest } from '../scheduler/types.js';
import type { UpstreamFailure } from '../upstream/failure.js';
import { passBackHeaders, type IncomingHeaders } from '../upstream/target.js';
import { connectUpstreamWs, type ConnectResult } from '../upstream/ws-upstream.js';
import { newSessionId } from './ids.js';
import { applyAccountAction, refusalError } from './outcomes.js';
import { RealtimeSplice, UpstreamSink, type SpliceDeps } from './realtime-splice.js';
import { parseRealtimeQuery, realtimeTarget } from './realtime-wire.js';
import { pickRelayCore, type RelayCore } from './core.js';

export interface RealtimeDeps extends RelayCore {
  /** Counts the socket against its key's connection limit: a release function, or null when full. */
  admit(client: ClientIdentity): (() => void) | null;
}

type Acquired = Extract<ScheduleOutcome, { kind: 'acquired' }>;
type Connected = { outcome: Acquired; conn: Extract<ConnectResult, { ok: true }>; sink: UpstreamSink; switches: number };

/** Upstream frames can be large (audio); the client-side limit is `websocket.maxMessageBytes`. */
const UPSTREAM_MAX_PAYLOAD = 64 * 1024 * 1024;

export class RealtimeRelay {
  readonly sessions = new Set<RealtimeSplice>();
  /** Upgrades still scheduling or connecting upstream: aborted, then awaited, on shutdown. */
  private readonly connecting = new Map<AbortController, Promise<void>>();
  private closing = false;
  private readonly wss: WebSocketServer;
  /** Upstream handshake headers to pass back on the client's 101, keyed by the upgrade request. */
  private readonly passBack = new WeakMap<IncomingMessage, Record<string, string>>();

  constructor(private readonly deps: RealtimeDeps) {
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: deps.config().websocket.maxMessageBytes,
      perMessageDeflate: false,
      handleProtocols: chooseSubprotocol,
    });
    this.wss.on('headers', (lines: string[], req: IncomingMessage) => {
      for (const [name, value] of Object.entries(this.passBack.get(req) ?? {})) lines.push(`${name}: ${value}`);
    });
  }

  /** The `IngressDeps.realtime` handler: the client is already authenticated. */
  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer, client: ClientIdentity): void => {
    const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
    if (req.method !== 'GET' || upgrade !== 'websocket' || !req.headers['sec-websocket-key']) {
      return rejectUpgrade(socket, new RelayError('SY_ERR_INVALID_REQUEST', 'Not a valid WebSocket upgrade request.'));
    }
    const query = parseRealtimeQuery(req.url);
    if (!query.ok) return rejectUpgrade(socket, new RelayError('SY_ERR_MISSING_MODEL', query.message));
    const releaseKey = this.deps.admit(client);
    if (!releaseKey) return rejectUpgrade(socket, new RelayError('SY_ERR_TOO_MANY_CONNECTIONS', undefined, 5_000));
    const abort = new AbortController();
    // Without a data listener a paused socket only reports errors and resets, which is enough to
    // stop scheduling for a client that is already gone.
    const socketOnClose = () => abort.abort();
    socket.once('close', socketOnClose);
    const id = newSessionId();
    const log = this.deps.log.child({ session: id });
    const pending = this.connect(req, client, query.search, query.model ?? '', abort.signal, log)
      .then((r) => {
        socket.off('close', socketOnClose);
        if (r.kind === 'refused') {
          releaseKey();
          return rejectUpgrade(socket, r.error);
        }
        this.accept(req, socket, head, r.connected, { id, client, model: query.model, intent: query.intent, releaseKey, log });
      })
      .catch((err: unknown) => {
        releaseKey();
        log.error({ err: err instanceof Error ? err.message : String(err) }, 'realtime connect crashed');
        rejectUpgrade(socket, new RelayError('SY_ERR_INTERNAL'));
      })
      .finally(() => this.connecting.delete(abort));
    this.connecting.set(abort, pending);
  };

  /** Shutdown: connecting upgrades get 503, live sessions close 1001; resolves once every slot is released. */
  async closeAll(code = 1001, reason = 'shutting down'): Promise<void> {
    this.closing = true;
    for (const a of this.connecting.keys()) a.abort();
    // An upstream handshake cannot be aborted; it ends within upstreamConnectTimeoutMs.
    await Promise.all(this.connecting.values());
    const done = [...this.sessions].map((s) => s.released);
    for (const s of this.sessions) s.close(code, reason);
    await Promise.all(done);
  }

  /** Schedules and opens the upstream socket, failing over on handshake failures. Never throws on upstream trouble. */
  private async connect(
    req: IncomingMessage,
    client: ClientIdentity,
    search: string,
    model: string,
    signal: AbortSignal,
    log: Logger,
  ): Promise<{ kind: 'connected'; connected: Connected } | { kind: 'refused'; error: RelayError }> {
    const d = this.deps;
    const cfg = d.config();
    const headers: IncomingHeaders = req.headers;
    const excluded = new Set<string>();
    const sreq: ScheduleRequest = {
      group: client.group,
      sessionHash: d.sessionHash(client.group, headers, {}),
      previousResponseId: null,
      // A model-less transcription session is served only by accounts without a `models` list.
      model,
      requiredTransport: 'ws',
      excluded,
    };
    const gone = (): { kind: 'refused'; error: RelayError } => ({ kind: 'refused', error: new RelayError('SY_ERR_SHUTTING_DOWN') });
    let last: UpstreamFailure | null = null;
    for (let switches = 0; ; switches++) {
      if (signal.aborted) return gone();
      let outcome: ScheduleOutcome;
      try {
        outcome = await d.scheduler.select(sreq, signal);
      } catch {
        return { kind: 'refused', error: new RelayError('SY_ERR_INTERNAL') };
      }
      if (outcome.kind === 'refused') {
        if (outcome.reason === 'aborted') return gone();
        log.info({ event: 'realtime_refused', layer: outcome.decision.layer, reason: outcome.reason, switches }, 'realtime session refused');
        const error = switches > 0 && outcome.reason === 'no_compatible_account' ? this.allFailed(last, cfg) : refusalError(outcome, true);
        return { kind: 'refused', error };
      }
      const account = outcome.account;
      const target = realtimeTarget(account, headers, search);
      const sink = new UpstreamSink();
      const r = await connectUpstreamWs({
        account,
        url: target.url,
        headers: target.headers,
        protocols: target.protocols,
        timeoutMs: cfg.websocket.upstreamConnectTimeoutMs,
        maxPayload: Math.max(cfg.websocket.maxMessageBytes, UPSTREAM_MAX_PAYLOAD),
        nowMs: () => d.clock.now(),
        handlers: sink,
      });
      if (r.ok) return { kind: 'connected', connected: { outcome, conn: r, sink, switches } };
      await outcome.lease.release().catch(() => undefined);
      last = r.failure;
      await applyAccountAction(d.scheduler, account.id, r.failure);
      d.scheduler.reportResult(account.id, false, null);
      log.warn(
        { event: 'realtime_upstream_failed', account: account.id, layer: outcome.decision.layer, status: r.failure.status, detail: r.failure.detail, switches },
        'realtime upstream handshake failed',
      );
      if (signal.aborted) return gone();
      if (!r.failure.retryable) return { kind: 'refused', error: this.notRetryable(r.failure) };
      if (switches >= cfg.scheduler.maxAccountSwitches) return { kind: 'refused', error: this.allFailed(last, cfg) };
      excluded.add(account.id);
      d.scheduler.reportSwitch(account.id);
    }
  }

  /** Completes the client's upgrade on top of an open upstream socket and starts the splice. */
  private accept(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    connected: Connected,
    who: { id: string; client: ClientIdentity; model: string | null; intent: string | null; releaseKey: () => void; log: Logger },
  ): void {
    const { outcome, conn } = connected;
    const spliceDeps: SpliceDeps = {
      ...pickRelayCore(this.deps),
      log: who.log,
      onReleased: (s) => {
        this.sessions.delete(s);
        who.releaseKey();
      },
    };
    const splice = new RealtimeSplice(spliceDeps, conn.conn, outcome.lease, {
      id: who.id,
      clientName: who.client.name,
      layer: outcome.decision.layer,
      switches: connected.switches,
      waitedMs: outcome.waitedMs,
      model: who.model,
      intent: who.intent,
    }, connected.sink);
    this.sessions.add(splice);
    if (!socket.readable || !socket.writable) return splice.clientGone();
    if (this.closing) {
      splice.close(1001, 'shutting down');
      return rejectUpgrade(socket, new RelayError('SY_ERR_SHUTTING_DOWN'));
    }
    // ws destroys the socket without calling back when the handshake is invalid; the splice must
    // still end (and release its slot) then.
    const socketOnClose = () => splice.clientGone();
    socket.once('close', socketOnClose);
    this.passBack.set(req, passBackHeaders(conn.headers));
    this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      socket.off('close', socketOnClose);
      splice.attachClient(ws);
    });
  }

  private allFailed(last: UpstreamFailure | null, cfg: Config): RelayError {
    const limited = last?.action.kind === 'rate_limited';
    const code: ErrorCode = limited ? 'SY_ERR_UPSTREAM_RATE_LIMITED' : 'SY_ERR_ALL_ACCOUNTS_FAILED';
    const message = last ? `Every upstream account tried failed to open the realtime session. Last upstream error: ${last.detail}.` : undefined;
    let retryAfterMs: number | undefined;
    if (last?.action.kind === 'rate_limited') {
      const now = this.deps.clock.now();
      const until = last.action.untilMs;
      retryAfterMs = until !== null && until > now ? until - now : cfg.scheduler.cooldown.rateLimitMs;
    }
    return new RelayError(code, message, retryAfterMs);
  }

  /** A handshake refusal that is not the account's fault (a bad query, say) is the client's to fix. */
  private notRetryable(f: UpstreamFailure): RelayError {
    if (f.status !== null && f.status >= 400 && f.status < 500) {
      return new RelayError('SY_ERR_INVALID_REQUEST', `The upstream refused the realtime session (HTTP ${f.status}).`);
    }
    return new RelayError('SY_ERR_ALL_ACCOUNTS_FAILED', `The upstream refused the realtime session: ${f.detail}.`);
  }
}
