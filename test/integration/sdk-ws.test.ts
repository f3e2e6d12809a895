// The official `openai` SDK's Responses WebSocket client through the relay (CLIENTS.md §5.1).
import { afterEach, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { ResponsesWS } from 'openai/resources/responses/ws';
import { startSimUpstream, type SimUpstream } from '../../scripts/sim/upstream.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';

const KEY = 'sk-sy-sdk-client';
let sim: SimUpstream | null = null;
let relay: TestRelay | null = null;
afterEach(async () => {
  await relay?.stop();
  await sim?.close();
});

type Ev = { type: string; response?: { id: string }; delta?: string; error?: { code?: string } };

/** Runs one turn on the SDK socket: resolves with the events up to the terminal one. */
function sdkTurn(rws: ResponsesWS, frame: Record<string, unknown>): Promise<Ev[]> {
  return new Promise((resolve, reject) => {
    const events: Ev[] = [];
    const onEvent = (e: Ev) => {
      events.push(e);
      if (['response.completed', 'response.failed', 'error'].includes(e.type)) {
        rws.off('event', onEvent as never);
        resolve(events);
      }
    };
    rws.on('event', onEvent as never);
    setTimeout(() => reject(new Error('SDK turn timed out')), 10_000).unref();
    rws.send(frame as never);
  });
}

describe('openai SDK ResponsesWS through the relay', () => {
  it('runs two chained turns on one socket, and the upstream saw them on one socket of one account', async () => {
    sim = await startSimUpstream({ accounts: [{ name: 'a' }, { name: 'b' }] });
    const s = sim;
    relay = await startRelay({
      clients: [{ key: KEY }],
      accounts: ['a', 'b'].map((n) => ({ id: n, baseUrl: s.baseUrlFor(n), apiKey: `sk-sim-${n}` })),
    });
    const client = new OpenAI({ apiKey: KEY, baseURL: `${relay.url}/v1` });
    const rws = new ResponsesWS(client);
    const errors: unknown[] = [];
    rws.on('error', (e) => errors.push(e));
    const t1 = await sdkTurn(rws, { type: 'response.create', model: 'gpt-5.5', input: 'Say hello', store: false });
    const done1 = t1.at(-1)!;
    expect(done1.type).toBe('response.completed');
    const id1 = done1.response!.id;
    const t2 = await sdkTurn(rws, {
      type: 'response.create',
      model: 'gpt-5.5',
      previous_response_id: id1,
      input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Again' }] }],
      store: false,
    });
    const done2 = t2.at(-1)!;
    expect(done2.type).toBe('response.completed');
    expect(t2.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('')).toMatch(/Hello from [ab]/);
    rws.close({ code: 1000, reason: 'done' });
    expect(errors).toEqual([]);
    const o1 = s.responseOwner(id1)!;
    const o2 = s.responseOwner(done2.response!.id)!;
    expect(o2.socketId).toBe(o1.socketId);
    expect(o2.account).toBe(o1.account);
  });
});
