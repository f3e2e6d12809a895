// Runs one simulated response against a sink: the same event sequence for WS frames, SSE and
// plain JSON. Timing (TTFT, delta pacing), failures, mid-stream drops and cancellation live here.
import type { SimAccount } from './account.js';
import {
  chooseAnswer,
  functionCallItem,
  messageItem,
  outputText,
  responseObject,
  splitText,
  turnContext,
  usageOf,
  type ResponseFields,
} from './events.js';
import type { SimAnswer } from './types.js';
import { hrMs, newId, sleep, type ApiError } from './wire.js';

export interface TurnSink {
  /** Sends one event; resolves false once the peer is gone. May wait while the peer is not reading. */
  emit(event: Record<string, unknown>): Promise<boolean>;
  /** `closeMidStream`: cut the connection abruptly. */
  cut(): void;
}

export interface TurnSpec {
  account: SimAccount;
  body: Record<string, unknown>;
  transport: 'ws' | 'http';
  socketId: string;
  /** Aborted when the client asks to cancel (WS `response.cancel`). */
  cancel: AbortSignal;
  /** Aborted when the connection is gone. */
  gone: AbortSignal;
}

export type TurnResult =
  | { status: 'completed' | 'failed' | 'cancelled'; id: string; response: Record<string, unknown> }
  /** The peer went away or the sim cut the connection: nothing more can be sent. */
  | { status: 'aborted'; id: string }
  /** The script asked for an error instead of a response: the caller sends it. */
  | { status: 'error'; httpStatus: number; error: ApiError };

const FAIL_ERROR = { code: 'server_error', message: 'The server had an error processing your request (simulated).' };

/**
 * Plays one response. The caller has already validated the request (model, previous id, rate
 * limit, one-at-a-time) and records the result. Counts the turn in flight for its whole duration.
 */
export async function runTurn(spec: TurnSpec, sink: TurnSink): Promise<TurnResult> {
  const { account, body } = spec;
  const warmup = body.generate === false;
  account.turnStarted(warmup);
  try {
    return await play(spec, sink, warmup);
  } finally {
    account.turnEnded();
  }
}

async function play(spec: TurnSpec, sink: TurnSink, warmup: boolean): Promise<TurnResult> {
  const { account, body } = spec;
  const knobs = account.knobs;
  // Drawn for every non-warm-up turn, whatever it answers, so a seed gives one failure pattern.
  const failing = !warmup && account.shouldFail();
  let answer: SimAnswer | null = null;
  if (!warmup) {
    const ctx = turnContext({ account: account.name, turn: account.turns, transport: spec.transport, socketId: spec.socketId, body });
    answer = chooseAnswer(ctx, knobs);
    if (answer.type === 'error') {
      const error: ApiError = {
        message: answer.message ?? `Simulated error ${answer.code}.`,
        type: answer.errorType ?? (answer.status >= 500 ? 'server_error' : 'invalid_request_error'),
        code: answer.code,
        param: answer.param ?? null,
      };
      return { status: 'error', httpStatus: answer.status, error };
    }
  }

  const id = newId('resp');
  const createdAt = Math.floor(Date.now() / 1000);
  const either = AbortSignal.any([spec.cancel, spec.gone]);
  let seq = 0;
  const output: Record<string, unknown>[] = [];
  const response = (f: Omit<ResponseFields, 'id' | 'createdAt'>): Record<string, unknown> =>
    responseObject(body, { id, createdAt, ...f });
  const send = (type: string, fields: Record<string, unknown>): Promise<boolean> => {
    const ev: Record<string, unknown> = { type, sequence_number: seq++, ...fields };
    if (knobs.timestamps) ev.sim_ts = hrMs();
    return sink.emit(ev);
  };
  const aborted: TurnResult = { status: 'aborted', id };
  const finish = async (
    type: string,
    status: 'completed' | 'failed' | 'cancelled',
    f: Omit<ResponseFields, 'id' | 'createdAt' | 'status'>,
  ): Promise<TurnResult> => {
    const r = response({ status, ...f });
    return (await send(type, { response: r })) ? { status, id, response: r } : aborted;
  };
  // response.cancel: OpenAI documents no `response.cancelled` stream event (the SDK's event union
  // has none); a cancelled response ends with the documented terminal `response.incomplete`,
  // carrying status "cancelled" as the cancel endpoint reports it.
  const interrupted = async (): Promise<TurnResult> => {
    if (spec.gone.aborted) return aborted;
    return finish('response.incomplete', 'cancelled', { output, usage: usageOf(body, '') });
  };
  const pause = async (ms: number): Promise<boolean> => (await sleep(ms, either)) && !either.aborted;

  if (!(await send('response.created', { response: response({ status: 'in_progress', output: [], usage: null }) }))) return aborted;
  if (!(await send('response.in_progress', { response: response({ status: 'in_progress', output: [], usage: null }) }))) return aborted;
  if (warmup || answer === null) return finish('response.completed', 'completed', { output: [], usage: usageOf(body, '') });

  if (!(await pause(knobs.ttftMs))) return interrupted();
  if (failing || answer.type === 'failed') {
    const error = answer.type === 'failed' ? { code: answer.code ?? FAIL_ERROR.code, message: answer.message ?? FAIL_ERROR.message } : FAIL_ERROR;
    return finish('response.failed', 'failed', { output: [], usage: null, error });
  }

  let deltas = 0;
  // Returns false when the turn must stop: the sim cut the connection on purpose.
  const countDelta = (): boolean => {
    deltas++;
    const limit = account.knobs.closeMidStream;
    if (limit !== null && deltas >= limit) {
      sink.cut();
      return false;
    }
    return true;
  };
  const cutBeforeFirst = (): boolean => {
    if (account.knobs.closeMidStream === 0) {
      sink.cut();
      return true;
    }
    return false;
  };

  if (answer.type === 'function_call') {
    const itemId = newId('fc');
    const callId = answer.callId ?? newId('call');
    const args = answer.arguments ?? '{}';
    if (!(await send('response.output_item.added', { output_index: 0, item: functionCallItem(itemId, 'in_progress', answer.name, callId, '') }))) return aborted;
    if (cutBeforeFirst()) return aborted;
    if (!(await send('response.function_call_arguments.delta', { item_id: itemId, output_index: 0, delta: args }))) return aborted;
    if (!countDelta()) return aborted;
    if (either.aborted) return interrupted();
    if (!(await send('response.function_call_arguments.done', { item_id: itemId, output_index: 0, arguments: args }))) return aborted;
    const done = functionCallItem(itemId, 'completed', answer.name, callId, args);
    if (!(await send('response.output_item.done', { output_index: 0, item: done }))) return aborted;
    output.push(done);
    return finish('response.completed', 'completed', { output, usage: usageOf(body, args) });
  }

  const text = answer.text;
  const itemId = newId('msg');
  const part = { item_id: itemId, output_index: 0, content_index: 0 };
  if (!(await send('response.output_item.added', { output_index: 0, item: messageItem(itemId, 'in_progress', null) }))) return aborted;
  if (!(await send('response.content_part.added', { ...part, part: outputText('') }))) return aborted;
  if (cutBeforeFirst()) return aborted;
  const chunks = splitText(text, knobs.deltaCount);
  for (let i = 0; i < chunks.length; i++) {
    if (i > 0 && !(await pause(account.knobs.deltaIntervalMs))) return interrupted();
    if (!(await send('response.output_text.delta', { ...part, delta: chunks[i], logprobs: [] }))) return aborted;
    if (!countDelta()) return aborted;
  }
  if (either.aborted) return interrupted();
  if (!(await send('response.output_text.done', { ...part, text, logprobs: [] }))) return aborted;
  if (!(await send('response.content_part.done', { ...part, part: outputText(text) }))) return aborted;
  const done = messageItem(itemId, 'completed', text);
  if (!(await send('response.output_item.done', { output_index: 0, item: done }))) return aborted;
  output.push(done);
  return finish('response.completed', 'completed', { output, usage: usageOf(body, text) });
}
