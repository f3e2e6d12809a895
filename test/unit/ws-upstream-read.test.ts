// UpstreamWs.lastInRead reads `ws`'s receiver internals: this pins the behaviour the session's
// write batching relies on to the `ws` version installed (it fails if a `ws` upgrade moves them).
// And the bounded set of response ids a socket is trusted to hold, and what the handshake leaves on
// an open socket (it lives for the session, so everything left there is heap for its whole life).
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { createServer, type Server, type Socket } from 'node:net';
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

describe('connectUpstreamWs', () => {
  const servers: Array<WebSocketServer | Server> = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
  });
  const listen = async <S extends WebSocketServer | Server>(s: S): Promise<number> => {
    servers.push(s);
    if (!(s instanceof WebSocketServer)) s.listen(0, '127.0.0.1');
    await new Promise((r) => s.once('listening', r));
    return (s.address() as { port: number }).port;
  };
  const open = (port: number, timeoutMs = 2000) =>
    connectUpstreamWs({
      account,
      url: `ws://127.0.0.1:${port}/`,
      headers: { authorization: 'Bearer sk-test' },
      timeoutMs,
      maxPayload: 1 << 20,
      nowMs: () => Date.now(),
      handlers: { onMessage: () => undefined, onClose: () => undefined },
    });

  it("leaves only the connection's own listeners and no socket timeout on an open socket", async () => {
    const port = await listen(new WebSocketServer({ host: '127.0.0.1', port: 0 }));
    const r = await open(port);
    if (!r.ok) throw new Error(r.failure.detail);
    try {
      const ws = r.conn.ws;
      expect(['upgrade', 'open', 'unexpected-response', 'error', 'close', 'message'].map((e) => [e, ws.listenerCount(e)])).toEqual([
        ['upgrade', 0],
        ['open', 0],
        ['unexpected-response', 0],
        ['error', 1],
        ['close', 1],
        ['message', 1],
      ]);
      const socket = (ws as unknown as { _socket: Socket })._socket;
      const timeout = Object.getOwnPropertySymbols(socket).find((sym) => sym.description === 'timeout');
      expect(timeout).toBeDefined();
      expect((socket as unknown as Record<symbol, unknown>)[timeout!]).toBeNull();
    } finally {
      r.conn.close(1000);
    }
  });

  it('fails with a timeout when the upgrade is never answered, and with the status when it is refused', async () => {
    const held: Socket[] = [];
    const silent = await listen(createServer((s) => held.push(s)));
    const t0 = Date.now();
    const r = await open(silent, 150);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.failure.detail).toBe('upstream connect timed out');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    for (const s of held) s.destroy();

    // (The request is read, or this socket would never see the client's end and never close.)
    const refusing = await listen(createServer((s) => s.resume().end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n')));
    const refused = await open(refusing);
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.failure).toMatchObject({ status: 503, detail: 'upstream server error (503)' });
  });
});
