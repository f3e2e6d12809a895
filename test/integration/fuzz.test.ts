// Issue 8, fuzzing: thousands of generated client WebSocket frames and POST /v1/responses bodies
// (garbage, random JSON, response.create with random field types, huge, deeply nested, unicode,
// binary) against a live relay and simulated upstream. Every input must be answered by an error
// (frame + documented close, or HTTP 4xx) or a valid turn; the relay must never crash, never
// answer 5xx/1011, and serve a normal turn afterwards. The seed is printed on failure
// (FUZZ_SEED=<n> replays a run).
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readOutcome } from '../helpers/faults.js';
import { slotsReleased, startPool, type Pool } from '../helpers/pool.js';
import { connect, userMessage, type TestWsClient } from '../helpers/ws-client.js';

const KEY = 'sk-sy-fuzz-client';
const MAX_FRAME = 32 * 1024;
const MAX_BODY = 32 * 1024;
const WS_INPUTS = 6_500;
const HTTP_INPUTS = 3_600;
const WS_WORKERS = 12;
const HTTP_WORKERS = 8;
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);

/** Error codes after which the relay closes the socket (SPEC §6), with the close code. */
const CLOSING: Record<string, number> = {
  invalid_json: 1008,
  binary_frame_not_supported: 1008,
  invalid_request: 1008,
  missing_required_parameter: 1008,
  invalid_previous_response_id: 1008,
  message_too_large: 1009,
};

// ---- generators -----------------------------------------------------------------------------

const json = fc.jsonValue({ maxDepth: 3 });
const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 64 }), fc.string({ unit: 'grapheme', maxLength: 64 }), fc.string({ maxLength: 16 }));
const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined, freq: 3 });

/** A response.create that looks right, with any field possibly of the wrong type. */
const createBody = fc.record(
  {
    type: fc.oneof({ arbitrary: fc.constant('response.create'), weight: 8 }, { arbitrary: fc.constantFrom('response.cancel', 'session.update', ''), weight: 1 }, { arbitrary: json, weight: 1 }),
    model: fc.oneof({ arbitrary: fc.constant('gpt-5.5'), weight: 8 }, { arbitrary: fc.constant(''), weight: 1 }, { arbitrary: json, weight: 1 }, { arbitrary: text, weight: 1 }),
    input: fc.oneof(fc.constant(userMessage('hi')), text, json, fc.array(fc.record({ type: text, role: text, content: json }), { maxLength: 3 })),
    previous_response_id: fc.oneof(fc.constant(null), fc.stringMatching(/^resp_[A-Za-z0-9]{1,24}$/), fc.stringMatching(/^msg_[a-z0-9]{1,8}$/), text, json),
    store: fc.oneof(fc.constant(false), fc.boolean(), json),
    generate: fc.oneof(fc.boolean(), json),
    stream: fc.oneof(fc.boolean(), json),
    instructions: text,
    tools: json,
    client_metadata: json,
  },
  { requiredKeys: ['model'] },
).chain((base) => fc.dictionary(text, json, { maxKeys: 3 }).map((extra) => ({ ...extra, ...base })));

/** A valid turn with random content: unicode text, odd item shapes, unknown fields passed through. */
const validBody = fc
  .record({
    model: fc.constant('gpt-5.5'),
    store: fc.constant(false),
    input: fc.oneof(text.map((t) => userMessage(t)), text),
    instructions: maybe(text),
    generate: maybe(fc.boolean()),
    metadata: maybe(fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 16 }), { maxKeys: 3 })),
  })
  .chain((base) => fc.dictionary(fc.string({ maxLength: 12 }).filter((k) => !(k in base) && k !== 'type' && k !== 'previous_response_id'), json, { maxKeys: 2 }).map((extra) => ({ ...extra, ...base })));

/** Deeply nested JSON: stresses any recursive parser or walker. */
const nested = fc.tuple(fc.integer({ min: 50, max: 12_000 }), fc.boolean()).map(([depth, obj]) =>
  obj ? `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}` : `{"model":"gpt-5.5","input":${'['.repeat(depth)}${']'.repeat(depth)}}`,
);

/** Around the size limit on both sides (the relay's own check, then `ws`'s maxPayload at twice it). */
const huge = fc.integer({ min: MAX_FRAME - 64, max: MAX_FRAME * 3 }).map((n) => JSON.stringify({ model: 'gpt-5.5', input: 'é'.repeat(Math.floor(n / 2)) }));

/** A valid frame, cut or with one byte changed. */
const mangled = fc.tuple(createBody, fc.nat(), fc.nat({ max: 255 })).map(([b, at, byte]) => {
  const s = Buffer.from(JSON.stringify(b));
  if (byte % 2 === 0) return s.subarray(0, at % (s.length + 1)).toString('utf8');
  s[at % s.length] = byte;
  return s.toString('latin1');
});

type WsInput = { kind: 'text'; data: string } | { kind: 'binary'; data: Uint8Array };

const wsInput: fc.Arbitrary<WsInput> = fc.oneof(
  { arbitrary: createBody.map((b) => ({ kind: 'text' as const, data: JSON.stringify(b) })), weight: 30 },
  { arbitrary: validBody.map((b) => ({ kind: 'text' as const, data: JSON.stringify(b) })), weight: 15 },
  { arbitrary: mangled.map((d) => ({ kind: 'text' as const, data: d })), weight: 15 },
  { arbitrary: fc.json({ maxDepth: 3 }).map((d) => ({ kind: 'text' as const, data: d })), weight: 15 },
  { arbitrary: text.map((d) => ({ kind: 'text' as const, data: d })), weight: 15 },
  { arbitrary: fc.uint8Array({ maxLength: 256 }).map((d) => ({ kind: 'binary' as const, data: d })), weight: 8 },
  { arbitrary: nested.map((d) => ({ kind: 'text' as const, data: d })), weight: 2 },
  { arbitrary: huge.map((d) => ({ kind: 'text' as const, data: d })), weight: 2 },
);

type HttpInput = { contentType: string | null; body: string | Uint8Array };

const httpInput: fc.Arbitrary<HttpInput> = fc.record({
  contentType: fc.oneof(
    { arbitrary: fc.constant('application/json'), weight: 12 },
    { arbitrary: fc.constantFrom('application/json; charset=utf-8', 'application/vnd.x+json', 'text/plain', 'multipart/form-data', ''), weight: 2 },
    { arbitrary: fc.constant(null), weight: 1 },
  ),
  body: fc.oneof(
    { arbitrary: createBody.map((b) => JSON.stringify(b)), weight: 30 },
    { arbitrary: validBody.map((b) => JSON.stringify(b)), weight: 15 },
    { arbitrary: mangled, weight: 15 },
    { arbitrary: fc.json({ maxDepth: 3 }), weight: 15 },
    { arbitrary: text, weight: 12 },
    { arbitrary: fc.uint8Array({ maxLength: 256 }), weight: 6 },
    { arbitrary: nested, weight: 2 },
    { arbitrary: huge, weight: 2 },
  ),
});

// ---- runner ---------------------------------------------------------------------------------

let pool: Pool;
beforeAll(async () => {
  pool = await startPool(
    ['a', 'b', 'c'].map((name) => ({ name, deltaCount: 2, relay: { concurrency: 16 } })),
    {
      clientKey: KEY,
      relay: {
        clients: [{ key: KEY, maxConnections: 0 }],
        websocket: { maxMessageBytes: MAX_FRAME },
        http: { maxBodyBytes: MAX_BODY },
        auth: { failureLimit: 0 },
        logLevel: 'warn',
      },
      sim: { recordLog: false },
    },
  );
});
afterAll(async () => {
  await pool?.stop();
});

const describeInput = (d: string | Uint8Array) => (typeof d === 'string' ? JSON.stringify(d.slice(0, 200)) : `<${d.length} binary bytes>`);

describe(`fuzzing (seed ${SEED})`, () => {
  it(`${WS_INPUTS} generated WebSocket frames: each gets an error (and the documented close) or a valid turn`, async () => {
    const inputs = fc.sample(wsInput, { numRuns: WS_INPUTS, seed: SEED });
    const tally: Record<string, number> = {};
    const problems: string[] = [];
    let next = 0;
    const worker = async () => {
      let c: TestWsClient | null = null;
      while (next < inputs.length && problems.length < 5) {
        const input = inputs[next++];
        c ??= await connect(pool.relay.wsUrl, { key: KEY });
        c.send(input.kind === 'binary' ? Buffer.from(input.data) : input.data);
        if (input.kind === 'text' && isCancel(input.data)) {
          // response.cancel is passed upstream and has nothing to answer when no turn is in flight.
          tally.cancel = (tally.cancel ?? 0) + 1;
          continue;
        }
        const o = await readOutcome(c, 10_000);
        const label = o.kind === 'terminal' ? o.type : o.kind === 'error' ? `error:${o.code}` : o.kind === 'closed' ? `closed:${o.code}` : 'lost';
        tally[label] = (tally[label] ?? 0) + 1;
        const bad =
          o.kind === 'lost' ||
          (o.kind === 'error' && (o.code === 'internal_error' || (o.status ?? 0) >= 500 && o.code !== 'upstream_error')) ||
          (o.kind === 'closed' && o.code !== 1009);
        if (bad) problems.push(`${label} for ${describeInput(input.data)}`);
        if (o.kind === 'error' && CLOSING[o.code] !== undefined) {
          // The upstream answers a model-less frame on a session that already has a model with the
          // same code (OpenAI-style, with `param`) and no close; the relay's own answer has no
          // `param` and is followed by a close.
          if ('param' in o.error) continue;
          const closed = await Promise.race([c.closed, new Promise<null>((r) => setTimeout(() => r(null), 5000))]);
          if (closed?.code !== CLOSING[o.code]) problems.push(`${label} then close ${closed?.code ?? 'never'} for ${describeInput(input.data)}`);
          c = null;
        } else if (o.kind !== 'terminal' && o.kind !== 'error') c = null;
        else if (c.ws.readyState !== c.ws.OPEN) c = null;
      }
      c?.close();
    };
    await Promise.all(Array.from({ length: WS_WORKERS }, worker));
    expect(problems, `seed ${SEED}; tally ${JSON.stringify(tally)}`).toEqual([]);
    expect(Object.values(tally).reduce((a, b) => a + b, 0)).toBe(WS_INPUTS);
    // The mix really exercised both sides: real turns and each kind of refusal.
    expect(tally['response.completed'] ?? 0).toBeGreaterThan(WS_INPUTS / 20);
    expect(tally['error:invalid_json'] ?? 0).toBeGreaterThan(0);
    expect(tally['error:binary_frame_not_supported'] ?? 0).toBeGreaterThan(0);
    expect((tally['error:message_too_large'] ?? 0) + (tally['closed:1009'] ?? 0)).toBeGreaterThan(0);
    await slotsReleased(pool.relay, 10_000);
  }, 90_000);

  it(`${HTTP_INPUTS} generated POST /v1/responses bodies: each gets a 4xx OpenAI error or a valid response`, async () => {
    const inputs = fc.sample(httpInput, { numRuns: HTTP_INPUTS, seed: SEED + 1 });
    const tally: Record<string, number> = {};
    const problems: string[] = [];
    let next = 0;
    const worker = async () => {
      while (next < inputs.length && problems.length < 5) {
        const input = inputs[next++];
        const headers: Record<string, string> = { authorization: `Bearer ${KEY}` };
        if (input.contentType !== null) headers['content-type'] = input.contentType;
        let status = 0;
        let bodyText = '';
        try {
          const res = await fetch(`${pool.relay.url}/v1/responses`, { method: 'POST', headers, body: input.body, signal: AbortSignal.timeout(10_000) });
          status = res.status;
          bodyText = await res.text();
        } catch (err) {
          problems.push(`request failed (${(err as Error).message}) for ${describeInput(input.body)}`);
          continue;
        }
        tally[status] = (tally[status] ?? 0) + 1;
        if (status === 200) {
          const ok = bodyText.includes('"response.completed"') || bodyText.includes('"status":"completed"') || bodyText.includes('event: error');
          if (!ok) problems.push(`200 without a terminal answer for ${describeInput(input.body)}`);
        } else if (status >= 400 && status < 500) {
          const parsed = safeJson(bodyText) as { error?: { code?: unknown; message?: unknown } } | null;
          if (typeof parsed?.error?.message !== 'string') problems.push(`${status} without an OpenAI error body for ${describeInput(input.body)}`);
        } else {
          problems.push(`${status} for ${describeInput(input.body)}: ${bodyText.slice(0, 200)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: HTTP_WORKERS }, worker));
    expect(problems, `seed ${SEED + 1}; tally ${JSON.stringify(tally)}`).toEqual([]);
    expect(Object.values(tally).reduce((a, b) => a + b, 0)).toBe(HTTP_INPUTS);
    expect(tally[200] ?? 0).toBeGreaterThan(HTTP_INPUTS / 20);
    expect(tally[400] ?? 0).toBeGreaterThan(HTTP_INPUTS / 20);
    await slotsReleased(pool.relay, 10_000);
  }, 90_000);

  it('afterwards the relay still serves a normal WebSocket turn and HTTP request, with nothing internal logged', async () => {
    const c = await connect(pool.relay.wsUrl, { key: KEY });
    expect((await c.turn({ model: 'gpt-5.5', store: false, input: userMessage('still alive?') })).terminal.type).toBe('response.completed');
    c.close();
    const res = await fetch(`${pool.relay.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-5.5', input: 'hi' }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { status?: string }).status).toBe('completed');
    expect(pool.relay.logs.filter((l) => /turn crashed|request failed|internal_error/.test(l))).toEqual([]);
    await slotsReleased(pool.relay);
  });
});

function isCancel(data: string): boolean {
  const v = safeJson(data) as { type?: unknown } | null;
  return v !== null && typeof v === 'object' && !Array.isArray(v) && v.type === 'response.cancel';
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return null;
  }
}
