// UpstreamWs.lastInRead reads `ws`'s receiver internals: this pins the behaviour the session's
// write batching relies on to the `ws` version installed (it fails if a `ws` upgrade moves them).
// And the bounded set of response ids a socket is trusted to hold.
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Duplex } from 'node:stream';
import { EventEmitter } from 'node:events';
import { connectUpstreamWs, MAX_REMEMBERED_RESPONSES, UpstreamWs } from '../../src/upstream/ws-upstream.js';
import type { AccountConfig } from '../../src/config/schema.js';

const account = { id: 'a', apiKey: 'sk-test' } as unknown as AccountConfig;

describe('UpstreamWs.lastInRead', () => {
  let wss: WebSocketServer | null = null;
  afterEach(async () => {
    await new Promise<void>((r) => (wss ? wss.close(() => r()) : r()));
    wss = null;
  });

  it('is false for every frame of one read but the last, and true for a frame read alone', async () => {
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    const server = new Promise<WebSocket>((r) => wss!.once('connection', r));
    await new Promise((r) => wss!.once('listening', r));
    const port = (wss.address() as { port: number }).port;
    const seen: Array<[string, boolean]> = [];
    const got = (n: number) =>
      new Promise<void>((resolve) => {
        const check = setInterval(() => {
          if (seen.length >= n) {
            clearInterval(check);
            resolve();
          }
        }, 5);
      });
    const r = await connectUpstreamWs({
      account,
      url: `ws://127.0.0.1:${port}/`,
      headers: {},
      timeoutMs: 2000,
      maxPayload: 1 << 20,
      nowMs: () => Date.now(),
      handlers: {
        onMessage: (c, data) => seen.push([data.toString(), c.lastInRead()]),
        onClose: () => {},
      },
    });
    if (!r.ok) throw new Error(r.failure.detail);
    const conn = r.conn;
    const peer = await server;
    // Three frames in one TCP write: the client reads them in one chunk.
    const socket = (peer as unknown as { _socket: Duplex })._socket;
    socket.cork();
    for (const m of ['one', 'two', 'three']) peer.send(m);
    socket.uncork();
    await got(3);
    peer.send('alone');
    await got(4);
    expect(seen).toEqual([
      ['one', false],
      ['two', false],
      ['three', true],
      ['alone', true],
    ]);
    conn.close(1000);
  });
});

describe('UpstreamWs response ids', () => {
  it('holds the latest MAX_REMEMBERED_RESPONSES ids and forgets the oldest beyond them', () => {
    const conn = new UpstreamWs(account, new EventEmitter() as unknown as WebSocket, { onMessage: () => undefined, onClose: () => undefined });
    for (let i = 0; i < MAX_REMEMBERED_RESPONSES; i++) conn.rememberResponse(`resp_${i}`);
    expect(conn.holdsResponse('resp_0')).toBe(true);
    conn.rememberResponse(`resp_${MAX_REMEMBERED_RESPONSES}`);
    expect(conn.holdsResponse('resp_0')).toBe(false);
    expect(conn.holdsResponse('resp_1')).toBe(true);
    expect(conn.holdsResponse(`resp_${MAX_REMEMBERED_RESPONSES}`)).toBe(true);
    // A chain that only ever uses the last id never loses it.
    for (let i = 0; i < 3 * MAX_REMEMBERED_RESPONSES; i++) {
      conn.rememberResponse(`resp_chain_${i}`);
      expect(conn.holdsResponse(`resp_chain_${i}`)).toBe(true);
    }
    expect(conn.holdsResponse(`resp_chain_${2 * MAX_REMEMBERED_RESPONSES - 1}`)).toBe(false);
  });
});
