// The HTTP/SSE upstream decodes the event stream as UTF-8 chunk by chunk: a character split
// across two reads stays whole, and a leading byte order mark is dropped (the SSE format says so),
// whatever the chunking. A real node:http server on 127.0.0.1 writes the body in pieces.
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpUpstream, type SseEvent, type SseItem } from '../../src/upstream/http-sse-upstream.js';
import { validConfig } from '../helpers/relay.js';

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);
const event = (type: string, text: string) => `event: ${type}\ndata: ${JSON.stringify({ type, delta: text })}\n\n`;
const completed = `event: response.completed\ndata: ${JSON.stringify({ type: 'response.completed', response: { id: 'resp_1', status: 'completed' } })}\n\n`;

let server: http.Server | null = null;
let upstream: HttpUpstream | null = null;
afterEach(async () => {
  await upstream?.close();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = null;
  upstream = null;
});

/** Serves `pieces` as one SSE body, each in its own write a few ms apart; returns the events decoded. */
async function decode(pieces: Buffer[]): Promise<SseEvent[]> {
  server = http.createServer(async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    for (const p of pieces) {
      res.write(p);
      await new Promise((r) => setTimeout(r, 5));
    }
    res.end();
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  const config = validConfig({ clients: [{ key: 'sk-client' }], accounts: [{ id: 'a', baseUrl: `http://127.0.0.1:${port}/v1`, apiKey: 'sk-a' }] });
  upstream = new HttpUpstream({ config: () => config });
  const reply = await upstream.request(config.accounts[0], '{}', {}, new AbortController().signal);
  if (reply.kind !== 'sse') throw new Error(`expected an SSE reply, got ${reply.kind}`);
  const items: SseItem[] = [];
  for await (const batch of reply.events) items.push(...batch);
  return items.filter((i): i is SseEvent => i.kind === 'event');
}

describe('HTTP/SSE upstream decoding', () => {
  it('keeps a character split across two reads whole, and drops a leading byte order mark split from the rest', async () => {
    const text = 'héllo 👋 wörld';
    const body = Buffer.concat([BOM, Buffer.from(event('response.output_text.delta', text) + completed)]);
    // Cut inside the BOM and inside the emoji's four bytes.
    const emojiAt = body.indexOf(Buffer.from('👋'));
    const events = await decode([body.subarray(0, 2), body.subarray(2, emojiAt + 2), body.subarray(emojiAt + 2)]);
    expect(events.map((e) => e.name)).toEqual(['response.output_text.delta', 'response.completed']);
    expect(JSON.parse(events[0].data).delta).toBe(text);
    expect(events[1].ev.terminal).toBe(true);
  });

  it('decodes one event per read the same way', async () => {
    const events = await decode([Buffer.from(event('response.output_text.delta', 'ça va')), Buffer.from(completed)]);
    expect(events.map((e) => [e.name, e.ev.type])).toEqual([
      ['response.output_text.delta', 'response.output_text.delta'],
      ['response.completed', 'response.completed'],
    ]);
    expect(JSON.parse(events[0].data).delta).toBe('ça va');
  });
});
