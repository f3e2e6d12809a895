// The simulated Realtime upstream: the server speaks first, answers response.create with text
// and audio deltas, echoes binary frames in order, refuses handshakes on demand, and serves wss.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startSimUpstream, type SimUpstream } from '../../scripts/sim/upstream.js';
import { REALTIME_RESPONSE_EVENTS } from '../helpers/realtime-client.js';
import { refusedUpgrade, types, until, WsProbe, type Ev } from './sim-upstream-helpers.js';

let sim: SimUpstream;
const rtUrl = (): string => `${sim.url.replace('http', 'ws')}/v1/realtime?model=gpt-realtime`;
const open = (): Promise<WsProbe> => WsProbe.open(rtUrl(), { authorization: 'Bearer sk-sim-a' });

beforeEach(async () => {
  sim = await startSimUpstream({ accounts: [{ name: 'a' }, { name: 'b' }] });
});
afterEach(async () => {
  await sim.close();
});

describe('Realtime sim', () => {
  it('sends session.created before the client says anything, then answers the session and item events', async () => {
    const c = await open();
    const created = await c.next();
    expect(created.type).toBe('session.created');
    expect(created.session).toMatchObject({ type: 'realtime', model: 'gpt-realtime' });
    expect(sim.log.filter((r) => r.kind === 'realtime_frame')).toEqual([]);

    c.send({ type: 'session.update', session: { type: 'realtime', instructions: 'Be brief.' } });
    expect(await c.next()).toMatchObject({ type: 'session.updated', session: { instructions: 'Be brief.' } });
    c.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] } });
    const item = await c.next();
    expect(item).toMatchObject({ type: 'conversation.item.created', previous_item_id: null, item: { role: 'user' } });
    expect(item.event_id).toMatch(/^event_/);
    c.close();
  });

  it('answers response.create with text and audio deltas, response.done and rate_limits.updated', async () => {
    const c = await open();
    await c.next();
    c.send({ type: 'response.create' });
    await c.next((e) => e.type === 'rate_limits.updated');
    const evs = c.events.slice(1);
    expect(types(evs)).toEqual([...REALTIME_RESPONSE_EVENTS, 'rate_limits.updated']);
    const audio = evs.find((e) => e.type === 'response.output_audio.delta')!;
    expect(Buffer.from(audio.delta as string, 'base64')).toHaveLength(480);
    expect(evs.find((e) => e.type === 'response.done')!.response.status).toBe('completed');
    expect(sim.account('a').realtimeResponses).toBe(1);
    c.close();
  });

  it('echoes 64 KB binary frames unchanged and in order', async () => {
    const c = await open();
    const sent = Array.from({ length: 20 }, (_, i) => Buffer.alloc(64 * 1024, i));
    for (const b of sent) c.ws.send(b);
    await until(() => c.binaries.length === sent.length);
    expect(c.binaries.map((b) => b[0])).toEqual(sent.map((_, i) => i));
    expect(c.binaries.every((b, i) => b.equals(sent[i]))).toBe(true);
    expect(sim.log.filter((r) => r.kind === 'realtime_frame').map((r) => r.binaryBytes)).toEqual(sent.map(() => 65536));
    c.close();
  });

  it('accepts the browser-style key subprotocol and echoes the realtime protocol', async () => {
    const c = await WsProbe.open(`${sim.baseUrlFor('b').replace('http', 'ws')}/realtime?model=m`, {}, [
      'realtime',
      'openai-insecure-api-key.sk-sim-b',
    ]);
    expect(c.ws.protocol).toBe('realtime');
    expect((await c.next()).type).toBe('session.created');
    expect(sim.log.find((r) => r.kind === 'realtime_upgrade')).toMatchObject({ account: 'b', status: 101 });
    c.close();
  });

  it('refuses the handshake with realtimeUpgradeStatus (429 with reset headers) and bad keys with 401', async () => {
    sim.account('a').set({ realtimeUpgradeStatus: 429, retryAfterSeconds: 3 });
    const r = await refusedUpgrade(rtUrl(), { authorization: 'Bearer sk-sim-a' });
    expect(r.status).toBe(429);
    expect(r.headers['retry-after']).toBe('3');
    expect(r.body.error.code).toBe('rate_limit_exceeded');
    expect((await refusedUpgrade(rtUrl(), { authorization: 'Bearer bad' })).status).toBe(401);
    expect(sim.account('a').realtimeUpgrades).toBe(1);
  });

  it('lets tests inject server events such as rate-limit errors', async () => {
    const c = await open();
    await c.next();
    const [id] = sim.liveSockets('a');
    sim.inject(id, { type: 'error', error: { type: 'rate_limit_error', code: 'rate_limit_exceeded', message: 'slow down' } });
    expect(await c.next()).toMatchObject({ type: 'error', error: { code: 'rate_limit_exceeded' } });
    c.close();
  });
});

describe('TLS', () => {
  let dir: string;
  let tlsSim: SimUpstream;
  let cert: Buffer;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sim-tls-'));
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    cert = readFileSync(join(dir, 'cert.pem'));
    tlsSim = await startSimUpstream({ tls: { cert, key: readFileSync(join(dir, 'key.pem')) }, accounts: [{ name: 'a' }] });
  });
  afterEach(async () => {
    await tlsSim.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the openai SDK OpenAIRealtimeWS over wss end to end', async () => {
    expect(tlsSim.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const client = new OpenAI({ apiKey: 'sk-sim-a', baseURL: `${tlsSim.url}/v1` });
    const rt = new OpenAIRealtimeWS({ model: 'gpt-realtime', options: { ca: cert } }, client);
    const seen: Ev[] = [];
    const done = new Promise<void>((resolve, reject) => {
      rt.on('event', (e) => {
        seen.push(e as Ev);
        if (e.type === 'response.done') resolve();
      });
      rt.on('error', reject);
    });
    rt.socket.on('open', () => {
      rt.send({ type: 'session.update', session: { type: 'realtime' } });
      rt.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] } });
      rt.send({ type: 'response.create' });
    });
    await done;
    rt.close();
    const t = types(seen);
    expect(t[0]).toBe('session.created');
    expect(t.indexOf('session.updated')).toBeLessThan(t.indexOf('conversation.item.created'));
    expect(t.indexOf('conversation.item.created')).toBeLessThan(t.indexOf('response.created'));
    expect(t).toContain('response.output_audio.delta');
    expect(tlsSim.log.find((r) => r.kind === 'realtime_upgrade')!.url).toBe('/v1/realtime?model=gpt-realtime');
  });
});
