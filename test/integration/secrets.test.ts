// Issues 6 and 8, secret grep: a scripted mix of WebSocket turns, HTTP requests, failovers, bad
// keys, throttling, admin calls and reloads (one valid, one invalid) with known secret strings as
// upstream credentials, client keys (plain, env: and keySha256) and the admin key. Then every log
// line, everything the process wrote to stdout/stderr, every byte any client received (frames,
// bodies, headers) and /metrics are searched: no secret may appear anywhere.
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startSimUpstream, type SimScript, type SimUpstream } from '../../scripts/sim/upstream.js';
import { loadConfigValue, type LoadResult } from '../../src/config/load.js';
import { readOutcome } from '../helpers/faults.js';
import { slotsReleased } from '../helpers/pool.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { TestWsClient, userMessage } from '../helpers/ws-client.js';

const UP = {
  a: 'sk-upstream-alpha-SECRET-1f9e2d7c',
  b: 'sk-upstream-bravo-SECRET-8c7b6a5d',
  c: 'sk-upstream-charlie-SECRET-55aa44',
  /** Configured for account d, which the upstream does not accept (401 → failover, disabled). */
  d: 'sk-upstream-delta-WRONG-SECRET-0d0d',
};
const SIM_KEY_D = 'sk-upstream-delta-REAL-SECRET-9e9e';
const CLIENT_PLAIN = 'sk-sy-client-plain-SECRET-7731';
const CLIENT_ENV = 'sk-sy-client-env-SECRET-4242';
const CLIENT_HASHED = 'sk-sy-client-hashed-SECRET-9919';
const ADMIN = 'sy-admin-SECRET-c0ffee-1234';
const BAD_KEYS = ['sk-sy-bad-guess-SECRET-0001', 'sk-sy-bad-guess-SECRET-0002', 'sk-sy-bad-guess-SECRET-0003'];
const IN_BAD_RELOAD = 'sk-upstream-in-bad-reload-SECRET-77';
const SECRETS = [...Object.values(UP), SIM_KEY_D, CLIENT_PLAIN, CLIENT_ENV, CLIENT_HASHED, ADMIN, ...BAD_KEYS, IN_BAD_RELOAD];
const ENV = { SY_CLIENT_KEY: CLIENT_ENV, SY_ADMIN_KEY: ADMIN, SY_UPSTREAM_B: UP.b };

let sim: SimUpstream | null = null;
let relay: TestRelay | null = null;
afterEach(async () => {
  await relay?.stop();
  await sim?.close();
  relay = null;
  sim = null;
});

/** Upstream error messages that quote the account's own credential, as some providers do. */
const echoKey =
  (key: string): SimScript =>
  (ctx) =>
    ctx.lastUserText?.includes('echo') ? { type: 'error', status: 400, code: 'invalid_request', message: `Request rejected for key ${key}` } : undefined;

function rawConfig(s: SimUpstream, withC: boolean): Record<string, unknown> {
  const accounts = [
    { id: 'a', baseUrl: s.baseUrlFor('a'), apiKey: UP.a },
    { id: 'b', baseUrl: s.baseUrlFor('b'), apiKey: 'env:SY_UPSTREAM_B' },
    { id: 'd', baseUrl: s.baseUrlFor('d'), apiKey: UP.d },
    ...(withC ? [{ id: 'c', baseUrl: s.baseUrlFor('c'), apiKey: UP.c }] : []),
  ];
  return {
    listen: { host: '127.0.0.1', port: 0 },
    adminKey: 'env:SY_ADMIN_KEY',
    clients: [
      { key: CLIENT_PLAIN, name: 'plain' },
      { key: 'env:SY_CLIENT_KEY' },
      { keySha256: createHash('sha256').update(CLIENT_HASHED).digest('hex') },
    ],
    accounts,
    auth: { failureLimit: 6, blockMs: 60_000 },
  };
}

describe('no secret in any log line, client answer or metric', () => {
  it('after WS turns, HTTP, failovers, bad keys, throttling, admin calls and reloads', async () => {
    sim = await startSimUpstream({
      accounts: [
        { name: 'a', key: UP.a, script: echoKey(UP.a) },
        { name: 'b', key: UP.b, script: echoKey(UP.b) },
        { name: 'c', key: UP.c, script: echoKey(UP.c) },
        { name: 'd', key: SIM_KEY_D },
      ],
    });
    const s = sim;
    let reloadWith: LoadResult = loadConfigValue(rawConfig(s, true), ENV);
    const written: string[] = [];
    const received: string[] = [];
    const realOut = process.stdout.write.bind(process.stdout);
    const realErr = process.stderr.write.bind(process.stderr);
    const tap =
      (real: typeof process.stdout.write) =>
      (chunk: unknown, ...rest: unknown[]): boolean => {
        written.push(Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk));
        return (real as (...a: unknown[]) => boolean)(chunk, ...rest);
      };
    process.stdout.write = tap(realOut) as typeof process.stdout.write;
    process.stderr.write = tap(realErr) as typeof process.stderr.write;
    try {
      // trace: every log line the relay can write is in scope.
      relay = await startRelay(rawConfig(s, false), { env: ENV, reloadSource: () => reloadWith, logLevel: 'trace' });
      const r = relay;
      const http = async (path: string, key: string | null, init: { method?: string; body?: unknown; protocol?: string } = {}) => {
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (key !== null) headers.authorization = `Bearer ${key}`;
        const res = await fetch(`${r.url}${path}`, { method: init.method ?? 'POST', headers, body: init.body === undefined ? undefined : JSON.stringify(init.body) });
        const text = await res.text();
        received.push(JSON.stringify([...res.headers.entries()]), text);
        return { status: res.status, text };
      };
      const session = async (key: string, opts: { protocol?: boolean; sessionId: string; texts: string[] }) => {
        const c = new TestWsClient(r.wsUrl, opts.protocol ? { protocols: [`openai-insecure-api-key.${key}`], headers: { 'session-id': opts.sessionId } } : { key, headers: { 'session-id': opts.sessionId } });
        c.ws.on('upgrade', (res) => {
          // The one allowed echo: a client that authenticates by subprotocol offered only that
          // protocol, and the handshake must select an offered one. It goes back to the same client.
          const { 'sec-websocket-protocol': chosen, ...rest } = res.headers;
          if (opts.protocol) expect(chosen).toBe(`openai-insecure-api-key.${key}`);
          else expect(chosen).toBeUndefined();
          received.push(JSON.stringify(rest));
        });
        c.ws.on('message', (d) => received.push(d.toString()));
        c.ws.on('close', (code, reason) => received.push(`${code} ${reason.toString()}`));
        await c.opened;
        let prev: string | undefined;
        for (const text of opts.texts) {
          c.send({ type: 'response.create', model: 'gpt-5.5', store: false, previous_response_id: prev, input: userMessage(text) });
          const o = await readOutcome(c, 8000);
          expect(o.kind).not.toBe('lost');
        }
        c.close();
        prev = undefined;
        await c.closed;
      };
      const upgradeWithBadKey = (key: string, protocol: boolean) =>
        new Promise<void>((resolve) => {
          const ws = new WebSocket(r.wsUrl, protocol ? [`openai-insecure-api-key.${key}`] : [], protocol ? {} : { headers: { authorization: `Bearer ${key}` } });
          ws.on('unexpected-response', (_q, res) => {
            const chunks: Buffer[] = [];
            res.on('data', (d: Buffer) => chunks.push(d));
            res.on('end', () => {
              received.push(JSON.stringify(res.headers), Buffer.concat(chunks).toString('utf8'));
              resolve();
            });
          });
          ws.on('error', () => resolve());
        });

      // Failovers: account a answers 503 to upgrades and POSTs; d rejects its credential (401).
      s.account('a').set({ upgradeStatus: 503, httpStatus: 503 });
      for (let i = 0; i < 4; i++) await session(i % 2 ? CLIENT_PLAIN : CLIENT_HASHED, { sessionId: `fo-${i}`, texts: ['hello', 'again'] });
      s.account('a').set({ upgradeStatus: null, httpStatus: null });
      await session(CLIENT_ENV, { protocol: true, sessionId: 'env-proto', texts: ['hi', 'echo this back'] });
      await session(CLIENT_PLAIN, { sessionId: 'echo', texts: ['echo', 'echo'] });

      // HTTP: JSON and SSE, an upstream error that quotes the credential, bad bodies.
      for (const key of [CLIENT_PLAIN, CLIENT_ENV, CLIENT_HASHED]) {
        expect((await http('/v1/responses', key, { body: { model: 'gpt-5.5', input: 'hi' } })).status).toBe(200);
        expect((await http('/v1/responses', key, { body: { model: 'gpt-5.5', input: 'hi', stream: true } })).status).toBe(200);
        expect((await http('/v1/responses', key, { body: { model: 'gpt-5.5', input: 'echo please' } })).status).toBe(400);
      }
      expect((await http('/v1/responses', CLIENT_PLAIN, { body: { input: 'no model' } })).status).toBe(400);

      // Admin: reads, actions, and a reload that adds account c.
      expect((await http('/admin/accounts', ADMIN, { method: 'GET' })).status).toBe(200);
      expect((await http('/admin/accounts/d/enable', ADMIN)).status).toBe(200);
      expect((await http('/admin/reload', ADMIN)).status).toBe(200);
      await session(CLIENT_PLAIN, { sessionId: 'after-reload', texts: ['hi'] });
      // An invalid reload with a secret in it: rejected, errors logged, nothing leaks.
      reloadWith = loadConfigValue(
        { ...rawConfig(s, true), accounts: [{ id: 'x', baseUrl: 'nope', apiKey: IN_BAD_RELOAD, concurrency: -1 }], adminKey: 'env:SY_MISSING' },
        ENV,
      );
      expect(reloadWith.ok).toBe(false);
      expect((await http('/admin/reload', ADMIN)).status).toBe(400);
      expect(r.logs.some((l) => l.includes('reload_rejected'))).toBe(true);

      // Bad keys everywhere, until the address is throttled.
      for (const bad of BAD_KEYS) {
        await http('/v1/responses', bad, { body: { model: 'gpt-5.5', input: 'hi' } });
        await upgradeWithBadKey(bad, false);
        await upgradeWithBadKey(bad, true);
        await http('/admin/accounts', bad, { method: 'GET' });
      }
      expect(r.logs.some((l) => l.includes('"event":"auth_throttled"'))).toBe(true);
      expect((await http('/v1/responses', CLIENT_PLAIN, { body: { model: 'gpt-5.5', input: 'hi' } })).status).toBe(429);

      const metrics = await fetch(`${r.url}/metrics`).then((res) => res.text());
      expect(metrics).toContain('switchyard_scheduler_account_switch_total');
      received.push(metrics);
      await slotsReleased(r);
      await r.stop();
      relay = null;

      // The run did what it claims: failovers happened and sessions were served.
      expect(r.logs.some((l) => /"switches":[1-9]/.test(l))).toBe(true);
      expect(r.logs.filter((l) => l.includes('"outcome":"completed"')).length).toBeGreaterThan(10);
      expect(received.some((t) => t.includes('Request rejected for key'))).toBe(true);

      const haystacks: Array<[string, string[]]> = [
        ['log line', r.logs],
        ['stdout/stderr', written],
        ['client answer', received],
      ];
      const hits: string[] = [];
      for (const [where, texts] of haystacks) {
        for (const t of texts) for (const secret of SECRETS) if (t.includes(secret)) hits.push(`${where}: ${secret} in ${t.slice(0, 300)}`);
      }
      expect(hits).toEqual([]);
      expect(r.logs.length).toBeGreaterThan(40);
    } finally {
      process.stdout.write = realOut;
      process.stderr.write = realErr;
    }
  }, 60_000);
});
