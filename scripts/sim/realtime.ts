// Realtime API sim (/realtime?model=…): a different protocol from Responses WS. The server speaks
// first (session.created), answers response.create with text and audio deltas, and echoes binary
// frames unchanged so relays can be checked for loss and reordering.
import type { RawData, WebSocket } from 'ws';
import type { SimAccount } from './account.js';
import { splitText } from './events.js';
import type { UpgradeContext } from './responses-ws.js';
import { trackSocket, type SimState } from './state.js';
import { errorForStatus, isObject, newId, parseJson, rateLimitError, rateLimitHeaders, refuseUpgrade, sleep } from './wire.js';

export interface RealtimeUpgradeContext extends UpgradeContext {
  query: URLSearchParams;
}

export function handleRealtimeUpgrade(ctx: RealtimeUpgradeContext): void {
  const { state, account, socket, url, headers } = ctx;
  const socketId = state.nextSocketId('rt');
  const knobs = account.knobs;
  account.realtimeUpgrades++;
  const log = (status: number): void => {
    state.record({ account: account.name, kind: 'realtime_upgrade', socketId, url, headers, direction: 'in', status });
  };
  const refusal = account.realtimeRefusal() ?? (account.rateLimited() ? 429 : null);
  if (refusal !== null) {
    log(refusal);
    const error = refusal === 429 ? rateLimitError() : errorForStatus(refusal, 'GET', url);
    const extra = refusal === 429 ? rateLimitHeaders(knobs.retryAfterSeconds) : {};
    return refuseUpgrade(socket, refusal, error, { 'x-request-id': newId('req'), ...extra });
  }
  if (knobs.hangUpgrade) {
    log(0);
    ctx.hung.add(socket);
    socket.once('close', () => ctx.hung.delete(socket));
    return;
  }
  log(101);
  void ctx.accept(ctx.req, socket, ctx.head, { 'x-request-id': newId('req') }).then((ws) => {
    const rt = new RealtimeSocket(state, account, ws, socketId, url, headers, ctx.query);
    if (knobs.closeAfterUpgrade) rt.drop(1011);
  });
}

class RealtimeSocket {
  private session: Record<string, unknown>;
  private lastItemId: string | null = null;
  private inFlight: AbortController | null = null;
  private readonly gone = new AbortController();
  private readonly conversationId = newId('conv');

  constructor(
    private readonly state: SimState,
    private readonly account: SimAccount,
    private readonly ws: WebSocket,
    readonly socketId: string,
    private readonly url: string,
    private readonly headers: Record<string, string>,
    query: URLSearchParams,
  ) {
    account.openRealtimeSockets++;
    const live = {
      socketId,
      account: account.name,
      kind: 'realtime' as const,
      send: (frame: Record<string, unknown>) => this.send(frame.type as string, frame),
      drop: (code: number | null) => this.drop(code),
    };
    ws.on('message', (data, isBinary) => this.wsOnMessage(data, isBinary));
    trackSocket(state, account, ws, live, (code, reason) => {
      this.gone.abort();
      account.openRealtimeSockets--;
      this.record({ kind: 'realtime_close', code, reason });
    });
    this.session = {
      type: query.get('intent') === 'transcription' ? 'transcription' : 'realtime',
      object: 'realtime.session',
      id: newId('sess'),
      model: query.get('model') ?? 'gpt-realtime',
      output_modalities: ['audio'],
      instructions: '',
      tools: [],
      tool_choice: 'auto',
      max_output_tokens: 'inf',
      tracing: null,
      prompt: null,
      expires_at: Math.floor(Date.now() / 1000) + 3600,
      audio: {
        input: { format: { type: 'audio/pcm', rate: 24000 }, transcription: null, noise_reduction: null, turn_detection: null },
        output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'alloy', speed: 1 },
      },
      include: null,
    };
    // The server speaks first, before the client sends anything.
    this.send('session.created', { session: this.session });
  }

  drop(code: number | null): void {
    if (code === null) this.ws.terminate();
    else this.ws.close(code, 'simulated close');
  }

  private record(r: { kind: 'realtime_frame' | 'realtime_close'; frame?: unknown; binaryBytes?: number; code?: number; reason?: string; direction?: 'in' | 'out' }): void {
    const { direction = 'in', ...rest } = r;
    this.state.record({ account: this.account.name, socketId: this.socketId, url: this.url, headers: this.headers, direction, ...rest });
  }

  /** Realtime server events carry `type` first, then a server `event_id`. */
  private send(type: string, fields: Record<string, unknown>): boolean {
    if (this.ws.readyState !== this.ws.OPEN) return false;
    const { type: _t, ...rest } = fields;
    const ev = { type, event_id: newId('event'), ...rest };
    if (this.state.logOutgoing) this.record({ kind: 'realtime_frame', frame: ev, direction: 'out' });
    this.ws.send(JSON.stringify(ev));
    return true;
  }

  private error(code: string, message: string, clientEventId: unknown): void {
    this.send('error', {
      error: { type: 'invalid_request_error', code, message, param: null, event_id: typeof clientEventId === 'string' ? clientEventId : null },
    });
  }

  private wsOnMessage(data: RawData, isBinary: boolean): void {
    const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    if (isBinary) {
      this.record({ kind: 'realtime_frame', binaryBytes: buf.length });
      if (this.ws.readyState === this.ws.OPEN) this.ws.send(buf, { binary: true });
      return;
    }
    const text = buf.toString('utf8');
    const parsed = parseJson(text);
    this.record({ kind: 'realtime_frame', frame: parsed.ok ? parsed.value : text });
    if (!parsed.ok || !isObject(parsed.value)) return this.error('invalid_json', 'Invalid JSON in client event.', null);
    const ev = parsed.value;
    if (this.account.knobs.hang) return;
    switch (ev.type) {
      case 'session.update':
        if (isObject(ev.session)) this.session = { ...this.session, ...ev.session };
        this.send('session.updated', { session: this.session });
        return;
      case 'conversation.item.create': {
        const item = isObject(ev.item) ? { ...ev.item } : {};
        item.id ??= newId('item');
        item.object = 'realtime.item';
        item.status ??= 'completed';
        this.send('conversation.item.created', { previous_item_id: this.lastItemId, item });
        this.lastItemId = item.id as string;
        return;
      }
      case 'response.create':
        if (this.inFlight) {
          return this.error('conversation_already_has_active_response', 'Conversation already has an active response in progress.', ev.event_id);
        }
        this.inFlight = new AbortController();
        void this.respond(this.inFlight).finally(() => (this.inFlight = null));
        return;
      case 'response.cancel':
        if (!this.inFlight) return this.error('response_cancel_not_active', 'Cancellation failed: no active response found.', ev.event_id);
        this.inFlight.abort();
        return;
      case 'input_audio_buffer.append':
      case 'input_audio_buffer.clear':
      case 'input_audio_buffer.commit':
        return;
      default:
        return this.error('invalid_value', `Invalid value: '${String(ev.type)}'.`, ev.event_id);
    }
  }

  private async respond(cancel: AbortController): Promise<void> {
    const { account } = this;
    const knobs = account.knobs;
    const signal = AbortSignal.any([cancel.signal, this.gone.signal]);
    account.realtimeResponses++;
    const id = newId('resp');
    const itemId = newId('item');
    const base = { object: 'realtime.response', id, conversation_id: this.conversationId, output_modalities: ['audio'], max_output_tokens: 'inf', metadata: null };
    const ids = { response_id: id, item_id: itemId, output_index: 0 };
    this.send('response.created', { response: { ...base, status: 'in_progress', status_details: null, output: [], usage: null } });
    this.send('response.output_item.added', { response_id: id, output_index: 0, item: { id: itemId, object: 'realtime.item', type: 'message', status: 'in_progress', role: 'assistant', content: [] } });
    const text = knobs.text ?? `Hello from ${account.name}! (realtime response ${account.realtimeResponses})`;
    const chunks = splitText(text, knobs.deltaCount);
    let ok = await sleep(knobs.ttftMs, signal);
    for (let i = 0; ok && i < chunks.length; i++) {
      if (i > 0) ok = await sleep(knobs.deltaIntervalMs, signal);
      if (ok) ok = this.send('response.output_text.delta', { ...ids, content_index: 0, delta: chunks[i] });
    }
    const audio: string[] = [];
    for (let i = 0; ok && i < knobs.realtimeAudioDeltas; i++) {
      ok = await sleep(knobs.deltaIntervalMs, signal);
      // Deterministic PCM-ish bytes so tests can compare what they received.
      const b64 = Buffer.from(Array.from({ length: 480 }, (_, j) => (i * 31 + j) & 0xff)).toString('base64');
      audio.push(b64);
      if (ok) ok = this.send('response.output_audio.delta', { ...ids, content_index: 1, delta: b64 });
    }
    if (this.gone.signal.aborted) return;
    const cancelled = cancel.signal.aborted;
    const content = [
      { type: 'output_text', text },
      { type: 'output_audio', transcript: text },
    ];
    if (!cancelled) {
      this.send('response.output_text.done', { ...ids, content_index: 0, text });
      this.send('response.output_audio.done', { ...ids, content_index: 1 });
    }
    const item = { id: itemId, object: 'realtime.item', type: 'message', status: cancelled ? 'incomplete' : 'completed', role: 'assistant', content };
    this.send('response.output_item.done', { response_id: id, output_index: 0, item });
    const usage = { total_tokens: 0, input_tokens: 0, output_tokens: Math.ceil(text.length / 4) + audio.length };
    usage.total_tokens = usage.input_tokens + usage.output_tokens;
    this.send('response.done', {
      response: {
        ...base,
        status: cancelled ? 'cancelled' : 'completed',
        status_details: cancelled ? { type: 'cancelled', reason: 'client_cancelled' } : null,
        output: [item],
        usage,
      },
    });
    if (knobs.realtimeRateLimits) {
      const limit = knobs.rateLimitAfterTurns ?? 1000;
      this.send('rate_limits.updated', {
        rate_limits: [
          { name: 'requests', limit, remaining: Math.max(0, limit - account.turns - account.realtimeResponses), reset_seconds: knobs.retryAfterSeconds },
          { name: 'tokens', limit: 1_000_000, remaining: 1_000_000 - usage.total_tokens, reset_seconds: 1 },
        ],
      });
    }
  }
}
