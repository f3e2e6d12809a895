// Issue 8, security basics: auth-failure throttling per address, keySha256 client keys end to
// end, slowloris guards (header/body deadlines, size limits, first-frame deadline), and upstream
// hosts that only ever come from config.
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { rawExchange, readOutcome, trickledHead } from '../helpers/faults.js';
import { slotsReleased, startPool, type Pool } from '../helpers/pool.js';
import { connect, userMessage } from '../helpers/ws-client.js';

const KEY = 'sk-sy-security-client';
let pool: Pool | null = null;
const extra: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const f of extra.splice(0)) await f();
  await pool?.stop();
  pool = null;
});

async function setup(relay: Record<string, unknown> = {}, clients?: unknown[]): Promise<Pool> {
  pool = await startPool([{ name: 'a' }, { name: 'b' }], { clientKey: KEY, relay: { ...relay, ...(clients ? { clients } : {}) } });
  return pool;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

/** One HTTP request from a chosen loopback address (127.0.0.0/8 is all local on Linux). */
function call(port: number, o: { method?: string; path?: string; key?: string; body?: string; from?: string; headers?: Record<string, string> }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'content-type': 'application/json', ...(o.headers ?? {}) };
    if (o.key) headers.authorization = `Bearer ${o.key}`;
    const req = http.request(
      { host: '127.0.0.1', port, method: o.method ?? 'POST', path: o.path ?? '/v1/responses', headers, localAddress: o.from ?? '127.0.0.1', agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
    const method = o.method ?? 'POST';
    req.end(method === 'POST' ? (o.body ?? JSON.stringify({ model: 'gpt-5.5', input: 'hi' })) : undefined);
  });
}

/** Status of a WebSocket upgrade attempt (101 when it opened). */
function upgradeStatus(url: string, key: string, from = '127.0.0.1'): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${key}` }, localAddress: from, perMessageDeflate: false });
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    ws.once('error', () => resolve(0));
  });
}

describe('auth failure throttling', () => {
  it('50 wrong keys from one address: 401s, then 429 for everything from it (right key too); other addresses unaffected', async () => {
    const p = await setup({ auth: { blockMs: 1500 } });
    const port = p.relay.port;
    const statuses: number[] = [];
    for (let i = 0; i < 50; i++) statuses.push((await call(port, { key: `sk-wrong-${i}`, from: '127.0.0.3' })).status);
    expect(statuses.slice(0, 19).every((s) => s === 401)).toBe(true);
    expect(statuses.slice(20).every((s) => s === 429)).toBe(true);
    const blocked = await call(port, { key: KEY, from: '127.0.0.3' });
    expect(blocked.status).toBe(429);
    expect(JSON.parse(blocked.text).error.code).toBe('too_many_auth_failures');
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(await upgradeStatus(p.relay.wsUrl, KEY, '127.0.0.3')).toBe(429);
    // Another address is served as usual.
    expect((await call(port, { key: KEY, from: '127.0.0.4' })).status).toBe(200);
    expect(await upgradeStatus(p.relay.wsUrl, KEY, '127.0.0.4')).toBe(101);
    expect(p.relay.logs.filter((l) => l.includes('"event":"auth_throttled"'))).toHaveLength(1);
    // The block ends after blockMs.
    await new Promise((r) => setTimeout(r, 1600));
    expect((await call(port, { key: KEY, from: '127.0.0.3' })).status).toBe(200);
  });

  it('wrong keys on WebSocket upgrades and on the admin API count too', async () => {
    const p = await setup({ adminKey: 'sy-admin-security-key', auth: { failureLimit: 6 } });
    for (let i = 0; i < 3; i++) expect(await upgradeStatus(p.relay.wsUrl, `sk-bad-${i}`, '127.0.0.5')).toBe(401);
    for (let i = 0; i < 3; i++) expect((await call(p.relay.port, { method: 'GET', path: '/admin/accounts', key: `bad-${i}`, from: '127.0.0.5' })).status).toBe(401);
    expect((await call(p.relay.port, { method: 'GET', path: '/admin/accounts', key: 'sy-admin-security-key', from: '127.0.0.5' })).status).toBe(429);
    expect((await call(p.relay.port, { method: 'GET', path: '/admin/accounts', key: 'sy-admin-security-key', from: '127.0.0.6' })).status).toBe(200);
  });

  it('failureLimit 0 disables throttling', async () => {
    const p = await setup({ auth: { failureLimit: 0 } });
    for (let i = 0; i < 30; i++) expect((await call(p.relay.port, { key: `sk-x-${i}`, from: '127.0.0.7' })).status).toBe(401);
    expect((await call(p.relay.port, { key: KEY, from: '127.0.0.7' })).status).toBe(200);
  });
});

describe('keySha256 client keys', () => {
  it('a key configured only by its SHA-256 works for WebSocket and HTTP; its digest is not a key', async () => {
    const secret = 'sk-sy-hashed-only-key-31415';
    const digest = createHash('sha256').update(secret).digest('hex');
    const p = await setup({}, [{ keySha256: digest.toUpperCase(), name: 'hashed' }]);
    const c = await connect(p.relay.wsUrl, { key: secret });
    expect((await c.turn({ model: 'gpt-5.5', store: false, input: userMessage('hi') })).terminal.type).toBe('response.completed');
    c.close();
    const proto = await connect(p.relay.wsUrl, { protocols: [`openai-insecure-api-key.${secret}`] });
    expect((await proto.turn({ model: 'gpt-5.5', store: false, input: userMessage('hi') })).terminal.type).toBe('response.completed');
    proto.close();
    expect((await call(p.relay.port, { key: secret })).status).toBe(200);
    expect((await call(p.relay.port, { key: digest })).status).toBe(401);
    expect(await upgradeStatus(p.relay.wsUrl, digest)).toBe(401);
    expect(p.relay.logs.join('\n')).not.toContain(secret);
    await slotsReleased(p.relay);
  });
});

describe('slowloris and size limits', () => {
  it('a client trickling header lines is cut off by the header deadline (408)', async () => {
    const p = await setup({ http: { requestHeadersTimeoutMs: 500 } });
    const a = await rawExchange(p.relay.port, trickledHead('/v1/responses', 100), { intervalMs: 100, deadlineMs: 5000 });
    expect(a.closedAfterMs).not.toBeNull();
    expect(a.closedAfterMs!).toBeLessThan(2000);
    expect(a.status).toBe(408);
  });

  it('a connection that never sends a byte is closed by the header deadline', async () => {
    const p = await setup({ http: { requestHeadersTimeoutMs: 500 } });
    const a = await rawExchange(p.relay.port, [], { deadlineMs: 5000 });
    expect(a.closedAfterMs).not.toBeNull();
    expect(a.closedAfterMs!).toBeLessThan(2000);
  });

  it('a body trickled byte by byte is cut off by the body deadline (408); streamed answers are not', async () => {
    const p = await setup({ http: { requestHeadersTimeoutMs: 500, requestBodyTimeoutMs: 800 } });
    const head = `POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n`;
    const a = await rawExchange(p.relay.port, [head, ...Array.from({ length: 400 }, () => ' ')], { intervalMs: 50, deadlineMs: 6000 });
    expect(a.closedAfterMs).not.toBeNull();
    expect(a.closedAfterMs!).toBeLessThan(3000);
    expect(a.status).toBe(408);
    // A response streaming longer than the body deadline is untouched.
    p.sim.account('a').set({ deltaCount: 12, deltaIntervalMs: 100 });
    p.sim.account('b').set({ deltaCount: 12, deltaIntervalMs: 100 });
    const r = await call(p.relay.port, { key: KEY, body: JSON.stringify({ model: 'gpt-5.5', input: 'hi', stream: true }) });
    expect(r.status).toBe(200);
    expect(r.text).toContain('response.completed');
  });

  it('oversize request heads get 431; oversize bodies 413', async () => {
    const p = await setup({ http: { maxBodyBytes: 1024 } });
    const big = `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(80 * 1024)}\r\n\r\n`;
    const a = await rawExchange(p.relay.port, [big], { deadlineMs: 5000 });
    expect(a.status).toBe(431);
    const r = await call(p.relay.port, { key: KEY, body: JSON.stringify({ model: 'gpt-5.5', input: 'x'.repeat(4096) }) });
    expect(r.status).toBe(413);
    expect(JSON.parse(r.text).error.code).toBe('message_too_large');
  });

  it('a WebSocket that never sends its first frame is closed 1008 after firstMessageTimeoutMs', async () => {
    const p = await setup({ websocket: { firstMessageTimeoutMs: 300 } });
    const c = await connect(p.relay.wsUrl, { key: KEY });
    const o = await readOutcome(c, 3000);
    expect(o).toMatchObject({ kind: 'error', code: 'first_message_timeout' });
    expect((await c.closed).code).toBe(1008);
    expect(p.sim.account('a').upgrades + p.sim.account('b').upgrades).toBe(0);
  });
});

describe('upstream URLs come only from config', () => {
  it('Host headers, absolute-URI request lines and body fields never move a request to another host', async () => {
    // A trap listener: any connection to it means a client steered the relay.
    let trapped = 0;
    const trap = net.createServer((s) => {
      trapped++;
      s.destroy();
    });
    await new Promise<void>((r) => trap.listen(0, '127.0.0.1', () => r()));
    extra.push(() => new Promise<void>((r) => trap.close(() => r())));
    const trapHost = `127.0.0.1:${(trap.address() as net.AddressInfo).port}`;
    const p = await setup();
    const body = JSON.stringify({ model: 'gpt-5.5', input: 'hi', base_url: `http://${trapHost}/v1`, url: `http://${trapHost}/v1/responses` });
    const tricks: Array<Record<string, string>> = [
      { host: trapHost },
      { 'x-forwarded-host': trapHost, 'x-forwarded-proto': 'http', forwarded: `host=${trapHost}` },
      { 'x-original-url': `http://${trapHost}/v1/responses`, 'x-rewrite-url': `http://${trapHost}/v1/responses` },
    ];
    for (const headers of tricks) expect((await call(p.relay.port, { key: KEY, headers, body })).status).toBe(200);
    const abs = await call(p.relay.port, { key: KEY, path: `http://${trapHost}/v1/responses`, body });
    expect([200, 404]).toContain(abs.status);
    const absWs = await rawExchange(
      p.relay.port,
      [`GET http://${trapHost}/v1/responses HTTP/1.1\r\nHost: ${trapHost}\r\nAuthorization: Bearer ${KEY}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`],
      { deadlineMs: 1500 },
    );
    expect([101, 404]).toContain(absWs.status);
    const c = await connect(p.relay.wsUrl, { key: KEY, headers: { host: trapHost, 'x-forwarded-host': trapHost } });
    const t = await c.turn({ model: 'gpt-5.5', store: false, input: userMessage('hi'), base_url: `http://${trapHost}/v1` });
    expect(t.terminal.type).toBe('response.completed');
    c.close();
    expect(trapped).toBe(0);
    // Everything that reached an upstream reached a configured account on the sim.
    const reached = p.sim.log.filter((r) => r.kind === 'http_request' || r.kind === 'ws_upgrade');
    expect(reached.length).toBeGreaterThanOrEqual(4);
    expect(reached.every((r) => r.account === 'a' || r.account === 'b')).toBe(true);
    await slotsReleased(p.relay);
  });
});
