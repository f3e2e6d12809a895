// The official openai SDK talks to the simulated upstream directly: the sim's wire format is
// what the SDK's parsers expect (Responses WS, SSE, JSON).
import OpenAI from 'openai';
import { ResponsesWS } from 'openai/resources/responses/ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startSimUpstream, type SimUpstream } from '../../scripts/sim/upstream.js';

let sim: SimUpstream;
let client: OpenAI;

beforeEach(async () => {
  sim = await startSimUpstream({ accounts: [{ name: 'a' }] });
  client = new OpenAI({ apiKey: 'sk-sim-a', baseURL: sim.baseUrlFor('a'), maxRetries: 0 });
});
afterEach(async () => {
  await sim.close();
});

describe('openai SDK against the sim', () => {
  it('ResponsesWS runs two chained turns on one socket (the SDK sends no OpenAI-Beta header)', async () => {
    sim.account('a').set({ requireBetaHeader: false });
    const rws = new ResponsesWS(client);
    const completed: string[] = [];
    const texts: string[] = [];
    const turn = (): Promise<void> =>
      new Promise((resolve, reject) => {
        rws.once('response.completed', (e) => {
          completed.push(e.response.id);
          resolve();
        });
        rws.once('error', reject);
      });
    rws.on('response.output_text.done', (e) => texts.push(e.text));
    const first = turn();
    rws.send({ type: 'response.create', model: 'gpt-5.5', input: 'Say hello', store: false });
    await first;
    const second = turn();
    rws.send({
      type: 'response.create',
      model: 'gpt-5.5',
      previous_response_id: completed[0],
      input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Again' }] }],
      store: false,
    });
    await second;
    rws.close({ code: 1000, reason: 'done' });
    expect(texts).toEqual(['Hello from a! (turn 1)', 'Hello from a! (turn 2)']);
    expect(sim.framesBySocket().size).toBe(1);
    expect(sim.responseOwner(completed[1])!.socketId).toBe(sim.responseOwner(completed[0])!.socketId);
  });

  it('responses.create streams every SSE event and returns JSON with output_text', async () => {
    const stream = await client.responses.create({ model: 'gpt-5.5', input: 'Say hello', stream: true });
    const seen: string[] = [];
    for await (const ev of stream) seen.push(ev.type);
    expect(seen[0]).toBe('response.created');
    expect(seen.at(-1)).toBe('response.completed');
    expect(seen).toHaveLength(11);
    const r = await client.responses.create({ model: 'gpt-5.5', input: 'Say hello' });
    expect(r.output_text).toBe('Hello from a! (turn 2)');
  });
});
