// The Realtime relay end to end (issue 7, SPEC §7): real clients → relay (ws:// and wss:// on
// 127.0.0.1) → simulated Realtime upstream. Covers every acceptance bullet of the issue.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { startSimUpstream, type SimAccountInit, type SimUpstream } from '../../scripts/sim/upstream.js';
import { parsePrometheusText } from '../helpers/prom-parse.js';
import { REALTIME_RESPONSE_EVENTS, refusedUpgrade, RtClient } from '../helpers/realtime-client.js';
import { eventually, heldInStore } from '../helpers/pool.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { makeSelfSignedCert, type TestCert } from '../helpers/tls.js';

const KEY = 'sk-sy-realtime-client';
let sim: SimUpstream | null = null;
let relay: TestRelay | null = null;
let cert: TestCert | null = null;

afterEach(async () => {
  await relay?.stop();
  await sim?.close();
  cert?.cleanup();
  relay = sim = cert = null;
});

type Acct = SimAccountInit & { relay?: Record<string, unknown> };

async function setup(accounts: Acct[], overrides: Record<string, unknown> = {}): Promise<{ sim: SimUpstream; relay: TestRelay; rtUrl: string }> {
  const s = (sim = await startSimUpstream({ accounts: accounts.map(({ relay: _r, ...a }) => a) }));
  relay = await startRelay({
    clients: [{ key: KEY, maxConnections: 0 }],
    accounts: accounts.map((a, i) => ({ id: a.name, baseUrl: s.baseUrlFor(a.name), apiKey: `sk-sim-${a.name}`, priority: i + 1, concurrency: 8, ...a.relay })),
    ...overrides,
  });
  return { sim: s, relay, rtUrl: `ws://127.0.0.1:${relay.port}/v1/realtime?model=gpt-realtime` };
}

async function metric(r: TestRelay, name: string, labels: Record<string, string> = {}): Promise<number> {
  const fam = parsePrometheusText((await r.app.metrics.render()).body).get(name);
  const s = fam?.samples.find((x) => Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s?.value ?? 0;
}

const upgrades = (s: SimUpstream) => s.log.filter((r) => r.kind === 'realtime_upgrade').map((r) => ({ account: r.account, status: r.status }));

/** Runs the SDK driver in a child process that trusts `certPath` through NODE_EXTRA_CA_CERTS. */
function runSdkClient(baseUrl: string, certPath: string): Promise<{ code: number | null; lines: Record<string, unknown>[]; stderr: string }> {
  const script = fileURLToPath(new URL('../helpers/realtime-sdk-client.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    // `--import tsx` resolves from the project root's node_modules.
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    env: { ...process.env, NODE_EXTRA_CA_CERTS: certPath, RT_BASE_URL: baseUrl, RT_API_KEY: KEY, RT_MODEL: 'gpt-realtime' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
  return new Promise((done) => {
    child.on('close', (code) => done({ code, stderr: err, lines: out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) }));
  });
}

describe('Realtime relay: the openai SDK over wss://', () => {
  it('OpenAIRealtimeWS connects with a self-signed cert via NODE_EXTRA_CA_CERTS and gets every event in order', async () => {
    cert = makeSelfSignedCert();
    const { sim: s, relay: r } = await setup([{ name: 'a' }], { listen: { host: '127.0.0.1', port: 0, tls: { cert: cert.certPath, key: cert.keyPath } } });
    const res = await runSdkClient(`https://127.0.0.1:${r.port}/v1`, cert.certPath);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.lines[0]).toMatchObject({ open: true, url: `wss://127.0.0.1:${r.port}/v1/realtime?model=gpt-realtime` });
    const types = res.lines.filter((l) => typeof l.type === 'string').map((l) => l.type);
    // The driver closes on response.done; a rate_limits.updated right behind it may or may not land.
    expect(types.slice(0, types.indexOf('response.done') + 1)).toEqual([
      'session.created',
      'session.updated',
      'conversation.item.created',
      ...REALTIME_RESPONSE_EVENTS,
    ]);
    expect(res.lines.at(-1)).toEqual({ closed: 1000 });
    // Upstream: same path and query, the account's bearer, never the client's key.
    const up = s.log.find((x) => x.kind === 'realtime_upgrade')!;
    expect(up.url).toBe('/acct/a/v1/realtime?model=gpt-realtime');
    expect(up.headers.authorization).toBe('Bearer sk-sim-a');
    expect(JSON.stringify(s.log)).not.toContain(KEY);
    expect(s.framesBySocket({ realtime: true }).get(up.socketId)!.map((f) => (f as { type: string }).type)).toEqual([
      'session.update',
      'conversation.item.create',
      'response.create',
    ]);
    await eventually(async () => (await heldInStore(r)).slots === 0);
    await eventually(async () => (await metric(r, 'switchyard_realtime_sessions_active')) === 0);
    expect(await metric(r, 'switchyard_realtime_frames_total', { direction: 'client_in' })).toBe(3);
    expect(await metric(r, 'switchyard_realtime_frames_total', { direction: 'client_out' })).toBeGreaterThanOrEqual(14);
    expect(await metric(r, 'switchyard_realtime_bytes_total', { direction: 'client_out' })).toBeGreaterThan(1000);
    const events = r.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => String(l.event).startsWith('realtime_session'));
    expect(events.map((e) => e.event)).toEqual(['realtime_session_start', 'realtime_session_end']);
    expect(events[1]).toMatchObject({ account: 'a', layer: 'load_balance', closedBy: 'client', framesIn: 3 });
    expect(r.logs.join('\n')).not.toMatch(new RegExp(`${KEY}|sk-sim-a`));
  });
});

describe('Realtime relay: splice under load', () => {
  it('100 concurrent sessions × 20 round trips of 64 KB binary frames: nothing lost or reordered, slots back to 0', async () => {
    const { sim: s, relay: r, rtUrl } = await setup([
      { name: 'a', relay: { concurrency: 60 } },
      { name: 'b', relay: { concurrency: 60 } },
    ]);
    const SESSIONS = 100;
    const ROUNDS = 20;
    const WINDOW = 4;
    const frameFor = (session: number, seq: number): Buffer => {
      const b = Buffer.alloc(64 * 1024, (session * 31 + seq) & 0xff);
      b.writeUInt32BE(session, 0);
      b.writeUInt32BE(seq, 4);
      return b;
    };
    const runSession = async (idx: number): Promise<number> => {
      const c = await RtClient.open(rtUrl, { key: KEY });
      expect((await c.event()).type).toBe('session.created');
      let sent = 0;
      const pump = () => {
        while (sent < ROUNDS && sent - received < WINDOW) c.ws.send(frameFor(idx, sent++));
      };
      let received = 0;
      pump();
      while (received < ROUNDS) {
        const f = await c.next(20_000);
        if (f.kind !== 'binary') throw new Error(`session ${idx}: unexpected text event ${f.ev.type}`);
        expect(f.data.readUInt32BE(0)).toBe(idx);
        expect(f.data.readUInt32BE(4)).toBe(received);
        expect(f.data.equals(frameFor(idx, received))).toBe(true);
        received++;
        pump();
      }
      c.ws.close(1000);
      await c.closed;
      return received;
    };
    const results = await Promise.all(Array.from({ length: SESSIONS }, (_, i) => runSession(i)));
    expect(results).toEqual(Array(SESSIONS).fill(ROUNDS));
    expect(upgrades(s)).toHaveLength(SESSIONS);
    expect(s.log.filter((x) => x.kind === 'realtime_frame' && x.binaryBytes === 64 * 1024)).toHaveLength(SESSIONS * ROUNDS);
    await eventually(async () => (await heldInStore(r)).slots === 0);
    await eventually(() => s.liveSockets().length === 0);
    expect(await metric(r, 'switchyard_realtime_sessions_active')).toBe(0);
    expect(await metric(r, 'switchyard_realtime_frames_total', { direction: 'client_in' })).toBe(SESSIONS * ROUNDS);
    expect(await metric(r, 'switchyard_realtime_bytes_total', { direction: 'client_in' })).toBe(SESSIONS * ROUNDS * 64 * 1024);
  }, 120_000);

  it('a client that stops reading pauses the upstream (bounded buffer) and still gets every frame in order', async () => {
    const { relay: r, rtUrl } = await setup([{ name: 'a' }], { websocket: { maxBufferedBytes: 128 * 1024 } });
    const c = await RtClient.open(rtUrl, { key: KEY });
    expect((await c.event()).type).toBe('session.created');
    c.ws.pause();
    const N = 160;
    for (let i = 0; i < N; i++) c.ws.send(Buffer.alloc(64 * 1024, i & 0xff));
    await new Promise((res) => setTimeout(res, 500));
    c.ws.resume();
    for (let i = 0; i < N; i++) {
      const f = await c.next(20_000);
      expect(f.kind === 'binary' && f.data.length === 64 * 1024 && f.data[0] === (i & 0xff) && f.data.at(-1) === (i & 0xff)).toBe(true);
    }
    c.ws.close(1000);
    await c.closed;
    await eventually(() => r.logs.some((l) => l.includes('"realtime_session_end"')));
    const end = JSON.parse(r.logs.find((l) => l.includes('"realtime_session_end"'))!) as { upstreamPauses: number; framesOut: number };
    expect(end.upstreamPauses).toBeGreaterThan(0);
    expect(end.framesOut).toBe(N + 1);
  }, 60_000);
});

describe('Realtime relay: connect-time failover and auth', () => {
  it('first account answers the handshake 429 → the second serves, and the client sees only success', async () => {
    const { sim: s, relay: r, rtUrl } = await setup([{ name: 'a', realtimeUpgradeStatus: 429, retryAfterSeconds: 30 }, { name: 'b' }], { scheduler: { topK: 1 } });
    const c = await RtClient.open(rtUrl, { key: KEY });
    const first = await c.event();
    expect(first.type).toBe('session.created');
    expect(upgrades(s)).toEqual([
      { account: 'a', status: 429 },
      { account: 'b', status: 101 },
    ]);
    c.send({ type: 'response.create' });
    const evs = await c.until('response.done');
    expect(evs.find((e) => e.type === 'response.output_text.delta')).toBeDefined();
    const flags = await r.app.store.getFlags('a');
    expect(flags.cooldownUntilMs).toBeGreaterThan(Date.now() + 20_000);
    expect(await metric(r, 'switchyard_scheduler_account_switch_total')).toBe(1);
    c.ws.close(1000);
    await c.closed;
    await eventually(async () => (await heldInStore(r)).slots === 0);
  });

  it('an upstream that never answers the handshake times out and the next account serves', async () => {
    const { sim: s, rtUrl } = await setup([{ name: 'a', hangUpgrade: true }, { name: 'b' }], { scheduler: { topK: 1 }, websocket: { upstreamConnectTimeoutMs: 300 } });
    const c = await RtClient.open(rtUrl, { key: KEY });
    expect((await c.event()).type).toBe('session.created');
    expect(upgrades(s).map((u) => u.account)).toEqual(['a', 'b']);
    c.ws.close(1000);
  });

  it('every account rate limited on the handshake → HTTP 429 with Retry-After, no upgrade', async () => {
    const { rtUrl } = await setup([{ name: 'a', realtimeUpgradeStatus: 429 }, { name: 'b', realtimeUpgradeStatus: 429 }]);
    const res = await refusedUpgrade(rtUrl, { key: KEY });
    expect(res.status).toBe(429);
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(res.body.error?.code).toBe('rate_limit_exceeded');
  });

  it('browser-style subprotocol auth works, `realtime` is the accepted subprotocol, and the key never goes upstream', async () => {
    const { sim: s, rtUrl } = await setup([{ name: 'a' }]);
    const c = await RtClient.open(rtUrl, { protocols: ['realtime', `openai-insecure-api-key.${KEY}`], headers: { 'openai-beta': 'realtime=v1' } });
    expect(c.ws.protocol).toBe('realtime');
    expect((await c.event()).type).toBe('session.created');
    const up = s.log.find((x) => x.kind === 'realtime_upgrade')!;
    expect(up.headers.authorization).toBe('Bearer sk-sim-a');
    expect(up.headers['sec-websocket-protocol']).toBe('realtime');
    expect(up.headers['openai-beta']).toBe('realtime=v1');
    expect(JSON.stringify(s.log)).not.toContain(KEY);
    c.ws.close(1000);
  });

  it('a bad key gets 401 before any upgrade; a missing model gets 400', async () => {
    const { sim: s, rtUrl } = await setup([{ name: 'a' }]);
    const bad = await refusedUpgrade(rtUrl, { key: 'sk-sy-wrong' });
    expect(bad.status).toBe(401);
    expect(bad.body.error?.code).toBe('invalid_api_key');
    const badProto = await refusedUpgrade(rtUrl, { protocols: ['realtime', 'openai-insecure-api-key.sk-sy-wrong'] });
    expect(badProto.status).toBe(401);
    const noModel = await refusedUpgrade(rtUrl.replace('?model=gpt-realtime', ''), { key: KEY });
    expect(noModel.status).toBe(400);
    expect(upgrades(s)).toEqual([]);
    const tr = await RtClient.open(rtUrl.replace('model=gpt-realtime', 'intent=transcription'), { key: KEY });
    expect((await tr.event()).session).toMatchObject({ type: 'transcription' });
    tr.ws.close(1000);
  });
});

describe('Realtime relay: closing and account health', () => {
  it('upstream drops TCP → the client gets 1011 (never 1006); a coded upstream close passes through; slots released', async () => {
    const { sim: s, relay: r, rtUrl } = await setup([{ name: 'a' }]);
    const c1 = await RtClient.open(rtUrl, { key: KEY });
    await c1.event();
    s.dropSocket(s.liveSockets('a')[0], null);
    expect((await c1.closed).code).toBe(1011);
    const c2 = await RtClient.open(rtUrl, { key: KEY });
    await c2.event();
    s.dropSocket(s.liveSockets('a')[0], 4001);
    expect(await c2.closed).toEqual({ code: 4001, reason: 'simulated close' });
    await eventually(async () => (await heldInStore(r)).slots === 0);
    expect(await metric(r, 'switchyard_realtime_sessions_active')).toBe(0);
  });

  it('client drops TCP without a close frame → the upstream socket is closed and the slot released', async () => {
    const { sim: s, relay: r, rtUrl } = await setup([{ name: 'a' }]);
    const c = await RtClient.open(rtUrl, { key: KEY });
    await c.event();
    expect((await heldInStore(r)).slots).toBe(1);
    const socketId = s.liveSockets('a')[0];
    c.ws.terminate();
    const closed = await s.waitForLog((x) => x.kind === 'realtime_close' && x.socketId === socketId);
    expect(closed.code).toBe(1000);
    await eventually(async () => (await heldInStore(r)).slots === 0);
    await eventually(async () => (await metric(r, 'switchyard_realtime_sessions_active')) === 0);
  });

  it('rate_limits.updated at remaining 0 and rate-limit error events put the account in cooldown; the session stays up', async () => {
    const { sim: s, relay: r, rtUrl } = await setup([{ name: 'a', rateLimitAfterTurns: 1, retryAfterSeconds: 40 }, { name: 'b' }], { scheduler: { topK: 1 } });
    const c = await RtClient.open(rtUrl, { key: KEY });
    await c.event();
    c.send({ type: 'response.create' });
    await c.until('rate_limits.updated');
    await eventually(async () => (await r.app.store.getFlags('a')).cooldownUntilMs > Date.now() + 30_000);
    // The next session avoids the cooling account.
    const c2 = await RtClient.open(rtUrl, { key: KEY });
    await c2.event();
    expect(upgrades(s).map((u) => u.account)).toEqual(['a', 'b']);
    s.inject(s.liveSockets('b')[0], { type: 'error', error: { type: 'rate_limit_error', code: 'rate_limit_exceeded', message: 'slow down' } });
    expect(await c2.event()).toMatchObject({ type: 'error', error: { code: 'rate_limit_exceeded' } });
    await eventually(async () => (await r.app.store.getFlags('b')).cooldownUntilMs > Date.now());
    expect(c2.ws.readyState).toBe(WebSocket.OPEN);
    // Errors and completed responses feed the account's error-rate EWMA (α = 0.2).
    expect(r.app.scheduler.stats('b').errorRate).toBeCloseTo(0.2);
    c2.send({ type: 'response.create' });
    await c2.until('response.done');
    // 0.8 × 0.2, give or take the decay toward neutral since the samples (statsHalfLifeMs).
    await eventually(() => Math.abs(r.app.scheduler.stats('b').errorRate - 0.16) < 0.002);
    c.ws.close(1000);
    c2.ws.close(1000);
  });

  it('an upstream error event that quotes the account key reaches the client with the key masked', async () => {
    const { sim: s, rtUrl } = await setup([{ name: 'a' }]);
    const c = await RtClient.open(rtUrl, { key: KEY });
    await c.event();
    const message = 'Incorrect API key provided: sk-sim-a. You can find your API key at https://platform.openai.com.';
    s.inject(s.liveSockets('a')[0], { type: 'error', error: { type: 'invalid_request_error', code: 'invalid_api_key', message } });
    const ev = (await c.event()) as { type: string; error: { code: string; message: string } };
    expect(ev).toMatchObject({ type: 'error', error: { code: 'invalid_api_key' } });
    expect(ev.error.message).not.toContain('sk-sim-a');
    expect(ev.error.message).toContain('[redacted]');
    // The session carries on.
    c.send({ type: 'response.create' });
    expect((await c.until('response.done')).at(-1)).toMatchObject({ type: 'response.done' });
    c.ws.close(1000);
  });

  it('shutdown closes live realtime sessions with 1001 on both sides and releases their slots', async () => {
    const { sim: s, relay: r, rtUrl } = await setup([{ name: 'a' }]);
    const c = await RtClient.open(rtUrl, { key: KEY });
    await c.event();
    const socketId = s.liveSockets('a')[0];
    // The session's own release must happen before the relay's final sweep of its leases.
    const store = r.app.store;
    const releaseSlot = store.releaseSlot.bind(store);
    const releaseAll = store.releaseAllOwnLeases.bind(store);
    const order: string[] = [];
    store.releaseSlot = async (id, lease) => {
      order.push('slot');
      return releaseSlot(id, lease);
    };
    store.releaseAllOwnLeases = async () => {
      order.push(`sweep(inflight=${(await heldInStore(r)).slots})`);
      return releaseAll();
    };
    await r.stop();
    expect((await c.closed).code).toBe(1001);
    expect((await s.waitForLog((x) => x.kind === 'realtime_close' && x.socketId === socketId)).code).toBe(1001);
    expect(order).toEqual(['slot', 'sweep(inflight=0)']);
    const end = JSON.parse(r.logs.find((l) => l.includes('"realtime_session_end"'))!) as Record<string, unknown>;
    expect(end).toMatchObject({ closedBy: 'relay', code: 1001 });
  });

  it('shutdown while an upgrade still waits on the upstream handshake answers it 503', async () => {
    const { sim: s, relay: r, rtUrl } = await setup([{ name: 'a', hangUpgrade: true }], { websocket: { upstreamConnectTimeoutMs: 400 } });
    const refused = refusedUpgrade(rtUrl, { key: KEY });
    await s.waitForLog((x) => x.kind === 'realtime_upgrade');
    await r.stop();
    const res = await refused;
    expect(res.status).toBe(503);
    expect(res.body.error?.code).toBe('shutting_down');
  });
});
