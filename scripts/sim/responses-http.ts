// POST /responses: a JSON response, or SSE (`event: <type>` + `data: <json>`) when body.stream is
// true — decided on the body, not on Accept, because the SDK sends `accept: application/json`.
import type { ServerResponse } from 'node:http';
import type { SimAccount } from './account.js';
import type { SimState } from './state.js';
import { runTurn, type TurnSink } from './turn.js';
import type { SimLogRecord, SimResponseRecord } from './types.js';
import { errorForStatus, isObject, newId, previousNotFound, rateLimitError, rateLimitHeaders, type ApiError } from './wire.js';

export interface HttpContext {
  state: SimState;
  account: SimAccount;
  res: ServerResponse;
  url: string;
  headers: Record<string, string>;
  /** Parsed JSON body, or the raw text when it is not JSON. */
  body: unknown;
  bodyIsJson: boolean;
  /** Responses left open by `hang`, ended when the sim stops. */
  hung: Set<ServerResponse>;
}

export function sendJson(res: ServerResponse, status: number, payload: unknown, headers: Record<string, string>): void {
  const text = JSON.stringify(payload);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export async function handleResponsesPost(ctx: HttpContext): Promise<void> {
  const { state, account, res, body } = ctx;
  const socketId = state.nextSocketId('http');
  const knobs = account.knobs;
  account.httpRequests++;
  const rec: SimLogRecord | null = state.record({
    account: account.name,
    kind: 'http_request',
    socketId,
    url: ctx.url,
    headers: ctx.headers,
    direction: 'in',
    body,
  });
  const model = isObject(body) && typeof body.model === 'string' ? body.model : null;
  const baseHeaders = account.responseHeaders(newId('req'), model);
  const fail = (status: number, error: ApiError, extra: Record<string, string> = {}): void => {
    if (rec) rec.status = status;
    sendJson(res, status, { error }, { ...baseHeaders, ...extra });
  };

  if (knobs.httpStatus !== null) {
    const extra = knobs.httpStatus === 429 ? rateLimitHeaders(knobs.retryAfterSeconds) : {};
    return fail(knobs.httpStatus, errorForStatus(knobs.httpStatus, 'POST', ctx.url), extra);
  }
  if (account.rateLimited()) return fail(429, rateLimitError(), rateLimitHeaders(knobs.retryAfterSeconds));
  if (!ctx.bodyIsJson || !isObject(body)) {
    return fail(400, { message: 'We could not parse the JSON body of your request.', type: 'invalid_request_error', code: null, param: null });
  }
  if (knobs.hang) {
    account.turnStarted(body.generate === false);
    ctx.hung.add(res);
    res.once('close', () => {
      ctx.hung.delete(res);
      account.turnEnded();
    });
    return;
  }
  if (model === null || model === '') {
    return fail(400, { message: "Missing required parameter: 'model'.", type: 'invalid_request_error', code: 'missing_required_parameter', param: 'model' });
  }
  const prev = body.previous_response_id;
  if (typeof prev === 'string' && prev !== '' && !account.stored.has(prev)) return fail(400, previousNotFound(prev));

  const stream = body.stream === true;
  const gone = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) gone.abort();
  });
  let cutting = false;
  const sink: TurnSink = {
    emit: async (event) => {
      if (res.destroyed) return false;
      // JSON mode: the answer is the terminal event's response, which runTurn returns.
      if (!stream) return true;
      if (!res.headersSent) {
        if (rec) rec.status = 200;
        res.writeHead(200, { ...baseHeaders, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
      }
      if (!res.write(`event: ${String(event.type)}\ndata: ${JSON.stringify(event)}\n\n`)) {
        account.backpressureWaits++;
        await new Promise<void>((resolve) => {
          const done = (): void => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          res.on('drain', done);
          res.on('close', done);
        });
      }
      return !res.destroyed;
    },
    // Mid-stream failure of the connection, as a dying upstream would do it: what was already
    // written reaches the client first (http corks writes until the next tick), then the TCP drops.
    cut: () => {
      cutting = true;
      const sock = res.socket;
      if (!sock) return;
      setImmediate(() => sock.write('', () => sock.destroy()));
    },
  };

  const result = await runTurn(
    { account, body, transport: 'http', socketId, cancel: new AbortController().signal, gone: gone.signal },
    sink,
  );
  if (result.status === 'error') return fail(result.httpStatus, result.error);
  if (result.status === 'aborted') {
    if (!cutting && !res.destroyed) res.destroy();
    return;
  }
  const stored: SimResponseRecord = {
    id: result.id,
    account: account.name,
    socketId,
    transport: 'http',
    store: body.store !== false,
    status: result.status,
    warmup: body.generate === false,
  };
  state.remember(stored);
  if (result.status === 'completed' && stored.store) account.stored.set(stored.id, stored);
  if (stream) {
    res.end();
    return;
  }
  const response = result.response;
  if (result.status === 'failed') {
    const err = isObject(response.error) ? response.error : {};
    return fail(500, {
      message: typeof err.message === 'string' ? err.message : 'The server had an error processing your request.',
      type: 'server_error',
      code: typeof err.code === 'string' ? err.code : 'server_error',
      param: null,
    });
  }
  if (rec) rec.status = 200;
  sendJson(res, 200, response, baseHeaders);
}
