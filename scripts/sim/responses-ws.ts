// Responses API WebSocket mode: upgrade checks driven by the account's knobs, then one
// ResponsesSocket per connection with its own response memory and one response at a time.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { RawData, WebSocket } from 'ws';
import { RESPONSES_BETA, type SimAccount } from './account.js';
import { trackSocket, type SimState } from './state.js';
import { runTurn, type TurnSink } from './turn.js';
import type { SimResponseRecord } from './types.js';
import {
  errorForStatus,
  isObject,
  newId,
  parseJson,
  previousNotFound,
  rateLimitError,
  rateLimitHeaders,
  refuseUpgrade,
  wsErrorFrame,
  type ApiError,
} from './wire.js';

/** Completes a WebSocket handshake with extra response headers (the 101 pass-through headers). */
export type Accept = (
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  headers: Record<string, string>,
) => Promise<WebSocket>;

export interface UpgradeContext {
  state: SimState;
  account: SimAccount;
  req: IncomingMessage;
  socket: Duplex;
  head: Buffer;
  url: string;
  headers: Record<string, string>;
  accept: Accept;
  /** Closes sockets left hanging by `hangUpgrade` when the sim stops. */
  hung: Set<Duplex>;
}

/** Above this many unsent bytes the sim waits for the peer to read, like a real server would. */
const HIGH_WATER_BYTES = 64 * 1024;

export function handleResponsesUpgrade(ctx: UpgradeContext): void {
  const { state, account, socket, url, headers } = ctx;
  const socketId = state.nextSocketId('ws');
  const knobs = account.knobs;
  account.upgrades++;
  const refuse = (status: number, error: ApiError, extra: Record<string, string> = {}): void => {
    account.upgradesRefused++;
    state.record({ account: account.name, kind: 'ws_upgrade', socketId, url, headers, direction: 'in', status });
    refuseUpgrade(socket, status, error, { ...account.responseHeaders(newId('req'), null), ...extra });
  };

  const refusal = account.wsRefusal();
  if (refusal !== null) {
    const extra = refusal === 429 ? rateLimitHeaders(knobs.retryAfterSeconds) : {};
    return refuse(refusal, errorForStatus(refusal, 'GET', url), extra);
  }
  if (account.rateLimited()) return refuse(429, rateLimitError(), rateLimitHeaders(knobs.retryAfterSeconds));
  if (knobs.requireBetaHeader && !(headers['openai-beta'] ?? '').includes(RESPONSES_BETA)) {
    return refuse(400, {
      message: `WebSocket mode requires the header 'OpenAI-Beta: ${RESPONSES_BETA}'.`,
      type: 'invalid_request_error',
      code: 'missing_beta_header',
      param: null,
    });
  }
  if (knobs.hangUpgrade) {
    state.record({ account: account.name, kind: 'ws_upgrade', socketId, url, headers, direction: 'in', status: 0 });
    ctx.hung.add(socket);
    socket.once('close', () => ctx.hung.delete(socket));
    return;
  }

  state.record({ account: account.name, kind: 'ws_upgrade', socketId, url, headers, direction: 'in', status: 101 });
  void ctx.accept(ctx.req, socket, ctx.head, account.responseHeaders(newId('req'), null)).then((ws) => {
    const rs = new ResponsesSocket(state, account, ws, socketId, url, headers);
    if (knobs.closeAfterUpgrade) rs.drop(1011);
  });
}

class ResponsesSocket {
  /** With store:false only the latest response stays in the socket's memory (OpenAI's connection-local cache). */
  private latest: SimResponseRecord | null = null;
  private inFlight: { cancel: AbortController } | null = null;
  /** Turns held by `hang`: released when the socket goes. */
  private hungTurns = 0;
  private readonly gone = new AbortController();
  private readonly ageTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly state: SimState,
    private readonly account: SimAccount,
    private readonly ws: WebSocket,
    readonly socketId: string,
    private readonly url: string,
    private readonly headers: Record<string, string>,
  ) {
    account.openSockets++;
    const live = {
      socketId,
      account: account.name,
      kind: 'responses' as const,
      send: (frame: Record<string, unknown>) => this.sendNow(frame),
      drop: (code: number | null) => this.drop(code),
    };
    ws.on('message', (data, isBinary) => this.wsOnMessage(data, isBinary));
    trackSocket(state, account, ws, live, (code, reason) => {
      this.gone.abort();
      if (this.ageTimer) clearTimeout(this.ageTimer);
      account.openSockets--;
      for (; this.hungTurns > 0; this.hungTurns--) account.turnEnded();
      this.record({ kind: 'ws_close', code, reason });
    });
    const maxAge = account.knobs.maxSocketAgeMs;
    if (maxAge !== null) {
      this.ageTimer = setTimeout(() => {
        this.sendNow(
          wsErrorFrame(400, {
            message: 'Responses websocket connection limit reached (60 minutes). Create a new websocket connection to continue.',
            type: 'invalid_request_error',
            code: 'websocket_connection_limit_reached',
            param: null,
          }),
        );
        ws.close(1000, 'websocket_connection_limit_reached');
      }, maxAge);
    }
  }

  drop(code: number | null): void {
    if (code === null) this.ws.terminate();
    else this.ws.close(code, 'simulated close');
  }

  private record(r: { kind: 'ws_frame' | 'ws_close'; frame?: unknown; binaryBytes?: number; code?: number; reason?: string; direction?: 'in' | 'out' }): void {
    const { direction = 'in', ...rest } = r;
    this.state.record({ account: this.account.name, socketId: this.socketId, url: this.url, headers: this.headers, direction, ...rest });
  }

  private sendNow(frame: Record<string, unknown>): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (this.state.logOutgoing) this.record({ kind: 'ws_frame', frame, direction: 'out' });
    this.ws.send(JSON.stringify(frame));
  }

  private sendError(status: number, error: ApiError, headers?: Record<string, string>): void {
    const frame = wsErrorFrame(status, error);
    if (headers) frame.headers = headers;
    this.sendNow(frame);
  }

  private wsOnMessage(data: RawData, isBinary: boolean): void {
    const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    if (isBinary) {
      this.record({ kind: 'ws_frame', binaryBytes: buf.length });
      return this.sendError(400, { message: 'Binary frames are not supported.', type: 'invalid_request_error', code: 'invalid_frame', param: null });
    }
    const text = buf.toString('utf8');
    const parsed = parseJson(text);
    this.record({ kind: 'ws_frame', frame: parsed.ok ? parsed.value : text });
    if (!parsed.ok || !isObject(parsed.value)) {
      return this.sendError(400, { message: 'Invalid JSON in client event.', type: 'invalid_request_error', code: 'invalid_json', param: null });
    }
    const frame = parsed.value;
    if (this.account.knobs.hang) {
      if (frame.type === undefined || frame.type === 'response.create') {
        this.account.turnStarted(frame.generate === false);
        this.hungTurns++;
      }
      return;
    }
    // Relays may forward frames with `type` omitted (SPEC §6); treat them as response.create.
    const type = frame.type ?? 'response.create';
    if (type === 'response.cancel') {
      this.inFlight?.cancel.abort();
      return;
    }
    if (type !== 'response.create') {
      return this.sendError(400, {
        message: `Invalid value: '${String(type)}'. Supported values are: 'response.create' and 'response.cancel'.`,
        type: 'invalid_request_error',
        code: 'invalid_value',
        param: 'type',
      });
    }
    this.create(frame);
  }

  private create(body: Record<string, unknown>): void {
    const { account } = this;
    if (this.inFlight) {
      return this.sendError(400, {
        message: 'A response is already in progress on this connection; wait for it to finish.',
        type: 'invalid_request_error',
        code: 'response_already_in_flight',
        param: null,
      });
    }
    if (account.rateLimited()) {
      return this.sendError(429, rateLimitError(), rateLimitHeaders(account.knobs.retryAfterSeconds));
    }
    if (typeof body.model !== 'string' || body.model === '') {
      return this.sendError(400, { message: "Missing required parameter: 'model'.", type: 'invalid_request_error', code: 'missing_required_parameter', param: 'model' });
    }
    const prev = body.previous_response_id;
    if (typeof prev === 'string' && prev !== '' && this.latest?.id !== prev && !account.stored.has(prev)) {
      return this.sendError(400, previousNotFound(prev));
    }
    const cancel = new AbortController();
    this.inFlight = { cancel };
    void this.play(body, cancel);
  }

  private async play(body: Record<string, unknown>, cancel: AbortController): Promise<void> {
    const { account } = this;
    const result = await runTurn(
      { account, body, transport: 'ws', socketId: this.socketId, cancel: cancel.signal, gone: this.gone.signal },
      this.sink(),
    );
    this.inFlight = null;
    if (result.status === 'error') return this.sendError(result.httpStatus, result.error);
    if (result.status === 'aborted') return;
    const rec: SimResponseRecord = {
      id: result.id,
      account: account.name,
      socketId: this.socketId,
      transport: 'ws',
      store: body.store !== false,
      status: result.status,
      warmup: body.generate === false,
    };
    this.state.remember(rec);
    if (result.status !== 'completed') return;
    this.latest = rec;
    if (rec.store) account.stored.set(rec.id, rec);
  }

  private sink(): TurnSink {
    return {
      emit: async (event) => {
        if (this.ws.readyState !== this.ws.OPEN) return false;
        this.sendNow(event);
        if (this.ws.bufferedAmount > HIGH_WATER_BYTES) {
          this.account.backpressureWaits++;
          while (this.ws.readyState === this.ws.OPEN && this.ws.bufferedAmount > HIGH_WATER_BYTES / 2) {
            await new Promise((r) => setTimeout(r, 5));
          }
        }
        return this.ws.readyState === this.ws.OPEN;
      },
      cut: () => this.drop(this.account.knobs.closeMidStreamCode),
    };
  }
}
