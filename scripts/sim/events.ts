// Pure builders for Responses API objects and for the answer rules. No I/O, no timers.
// Every event object starts with `type` because relays may peek at it without parsing.
import type { SimAnswer, SimKnobs, SimTurnContext } from './types.js';
import { isObject } from './wire.js';

export interface Usage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

/** Rough token estimate (4 chars a token) so usage grows with the request like the real thing. */
export function estimateTokens(v: unknown): number {
  if (v === undefined || v === null) return 0;
  let s: string;
  try {
    s = typeof v === 'string' ? v : JSON.stringify(v);
  } catch {
    // Fuzzed input nested deeper than JSON.stringify's recursion allows: the sim must not crash.
    return 0;
  }
  return Math.ceil(s.length / 4);
}

export function usageOf(body: Record<string, unknown>, outputText: string): Usage {
  const input = estimateTokens(body.input) + estimateTokens(body.instructions);
  const output = estimateTokens(outputText);
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: input + output,
  };
}

export interface ResponseFields {
  id: string;
  createdAt: number;
  status: 'in_progress' | 'completed' | 'failed' | 'incomplete' | 'cancelled';
  output: Record<string, unknown>[];
  usage: Usage | null;
  error?: { code: string; message: string } | null;
}

/** The `response` object as OpenAI returns it, echoing the request's settings. */
export function responseObject(body: Record<string, unknown>, f: ResponseFields): Record<string, unknown> {
  return {
    id: f.id,
    object: 'response',
    created_at: f.createdAt,
    status: f.status,
    background: false,
    completed_at: f.status === 'completed' ? Math.floor(Date.now() / 1000) : null,
    error: f.error ?? null,
    incomplete_details: null,
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    metadata: body.metadata ?? {},
    model: typeof body.model === 'string' ? body.model : 'gpt-5.5',
    output: f.output,
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: body.previous_response_id ?? null,
    prompt_cache_key: body.prompt_cache_key ?? null,
    reasoning: body.reasoning ?? { effort: null, summary: null },
    service_tier: 'default',
    store: body.store !== false,
    temperature: body.temperature ?? 1,
    text: body.text ?? { format: { type: 'text' } },
    tool_choice: body.tool_choice ?? 'auto',
    tools: body.tools ?? [],
    top_p: body.top_p ?? 1,
    truncation: body.truncation ?? 'disabled',
    usage: f.usage,
    user: null,
  };
}

export function outputText(text: string): Record<string, unknown> {
  return { type: 'output_text', text, annotations: [], logprobs: [] };
}

export function messageItem(id: string, status: 'in_progress' | 'completed', text: string | null): Record<string, unknown> {
  return { id, type: 'message', status, role: 'assistant', content: text === null ? [] : [outputText(text)] };
}

export function functionCallItem(
  id: string,
  status: 'in_progress' | 'completed',
  name: string,
  callId: string,
  args: string,
): Record<string, unknown> {
  return { type: 'function_call', id, status, name, call_id: callId, arguments: args };
}

/** Splits text into exactly `n` chunks (n ≥ 1) at even character positions; chunks may be empty. */
export function splitText(text: string, n: number): string[] {
  const count = Math.max(1, Math.floor(n));
  const chars = Array.from(text);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    out.push(chars.slice(Math.floor((i * chars.length) / count), Math.floor(((i + 1) * chars.length) / count)).join(''));
  }
  return out;
}

/** `input` as an item list: a string becomes one user message, like the API does. */
export function normaliseInput(input: unknown): Record<string, unknown>[] {
  if (typeof input === 'string') {
    return [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: input }] }];
  }
  return Array.isArray(input) ? input.filter(isObject) : [];
}

function messageText(item: Record<string, unknown>): string {
  const c = item.content;
  if (typeof c === 'string') return c;
  if (!Array.isArray(c)) return '';
  return c
    .filter(isObject)
    .map((p) => (typeof p.text === 'string' ? p.text : ''))
    .join('\n');
}

export function turnContext(
  base: Omit<SimTurnContext, 'input' | 'lastUserText' | 'lastToolOutput'>,
): SimTurnContext {
  const input = normaliseInput(base.body.input);
  const last = input[input.length - 1];
  const isMessage = last !== undefined && (last.type === 'message' || last.type === undefined);
  const lastUserText = isMessage && last.role === 'user' ? messageText(last) : null;
  let lastToolOutput: string | null = null;
  if (last !== undefined && last.type === 'function_call_output') {
    lastToolOutput = typeof last.output === 'string' ? last.output : JSON.stringify(last.output ?? null);
  }
  return { ...base, input, lastUserText, lastToolOutput };
}

/**
 * The answer to a turn: the script first, then the default rules — a tool result is acknowledged,
 * the trigger phrase asks for a tool, anything else gets the scripted or default greeting.
 */
export function chooseAnswer(ctx: SimTurnContext, knobs: Readonly<SimKnobs>): SimAnswer {
  const scripted = knobs.script?.(ctx);
  if (scripted !== undefined) return scripted;
  if (ctx.lastToolOutput !== null) return { type: 'text', text: `Tool said: ${ctx.lastToolOutput}` };
  const trigger = knobs.toolTrigger.toLowerCase();
  if (trigger !== '' && ctx.lastUserText !== null && ctx.lastUserText.toLowerCase().includes(trigger)) {
    return { type: 'function_call', name: knobs.toolName, arguments: knobs.toolArguments };
  }
  return { type: 'text', text: knobs.text ?? `Hello from ${ctx.account}! (turn ${ctx.turn})` };
}
