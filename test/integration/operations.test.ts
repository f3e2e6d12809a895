// Issue 6's acceptance: graceful drain on SIGTERM (a real process on a real Redis), reload on
// SIGHUP and under live sessions, and the contract metrics after a scripted run.
import { afterEach, describe, expect, it } from 'vitest';
import { startSimUpstream, type SimUpstream } from '../../scripts/sim/upstream.js';
import { RedisStore } from '../../src/state/redis-store.js';
import { validConfig, startRelay, type TestRelay } from '../helpers/relay.js';
import { startRelayProcess, type RelayProcess } from '../helpers/relay-process.js';
import { redisAvailable, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { connect, userMessage, type TestWsClient } from '../helpers/ws-client.js';
import { parsePrometheusText, sampleValue } from '../helpers/prom-parse.js';

const KEY = 'sk-sy-ops-client';
let sim: SimUpstream | null = null;
let relay: TestRelay | null = null;
let proc: RelayProcess | null = null;
let redis: RedisServer | null = null;
const clients: TestWsClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  await proc?.kill();
  await relay?.stop();
  await sim?.close();
  await redis?.stop();
  proc = relay = sim = redis = null;
});

const accountsFor = (s: SimUpstream, names: string[], extra: Record<string, unknown> = {}) =>
  names.map((n) => ({ id: n, baseUrl: s.baseUrlFor(n), apiKey: `sk-sim-${n}`, concurrency: 8, ...extra }));

describe.runIf(redisAvailable())('graceful drain of a real process', () => {
  it('SIGTERM during 10 in-flight turns: all complete, clients then get 1001, exit 0 within the grace period, 0 slots in the store', async () => {
    redis = await startRedis();
    sim = await startSimUpstream({ accounts: ['a', 'b'].map((name) => ({ name, ttftMs: 300, deltaCount: 10, deltaIntervalMs: 100 })) });
    const keyPrefix = `drain-${Date.now()}:`;
    proc = await startRelayProcess({
      clients: [{ key: KEY }],
      accounts: accountsFor(sim, ['a', 'b']),
      store: { kind: 'redis', url: redis.url, keyPrefix },
      shutdownGraceMs: 15_000,
    });
    for (let i = 0; i < 10; i++) clients.push(await connect(proc.wsUrl, { key: KEY, headers: { 'session-id': `drain-${i}` } }));
    for (const c of clients) c.send({ type: 'response.create', model: 'm', store: false, input: userMessage('long answer') });
    for (const c of clients) expect((await c.next())?.type).toBe('response.created');
    const sigAt = Date.now();
    proc.child.kill('SIGTERM');
    const turns = await Promise.all(clients.map((c) => c.readTurn(20_000)));
    for (const t of turns) expect(t.terminal.type).toBe('response.completed');
    const closes = await Promise.all(clients.map((c) => c.closed));
    for (const cl of closes) expect(cl.code).toBe(1001);
    const exit = await proc.exited;
    expect(exit.code).toBe(0);
    expect(Date.now() - sigAt).toBeLessThan(15_000);
    // While draining, nothing new is admitted (checked after the fact from its log).
    expect(proc.logs.some((r) => r.event === 'draining')).toBe(true);
    const store = new RedisStore({ url: redis.url, keyPrefix });
    try {
      expect(await store.slotCount('a')).toBe(0);
      expect(await store.slotCount('b')).toBe(0);
    } finally {
      await store.close();
    }
  }, 60_000);

  it('SIGHUP re-reads the config: a new account appears; an invalid file is rejected and the old config kept', async () => {
    sim = await startSimUpstream({ accounts: [{ name: 'a' }, { name: 'fresh' }] });
    const base = { clients: [{ key: KEY }], adminKey: 'sk-sy-ops-admin', accounts: accountsFor(sim, ['a']) };
    proc = await startRelayProcess(base);
    const listAccounts = async () =>
      ((await (await fetch(`${proc!.url}/admin/accounts`, { headers: { authorization: 'Bearer sk-sy-ops-admin' } })).json()) as { data: Array<{ id: string }> }).data.map((a) => a.id);
    expect(await listAccounts()).toEqual(['a']);
    proc.writeConfig({ ...base, accounts: accountsFor(sim, ['a', 'fresh']) });
    proc.child.kill('SIGHUP');
    await proc.waitForLog((r) => r.event === 'reloaded');
    expect(await listAccounts()).toEqual(['a', 'fresh']);
    proc.writeConfig({ ...base, accounts: [{ id: 'broken', concurrency: -1 }] });
    proc.child.kill('SIGHUP');
    const rejected = await proc.waitForLog((r) => r.event === 'reload_rejected');
    expect(JSON.stringify(rejected.errors)).toContain('accounts[0].concurrency');
    expect(await listAccounts()).toEqual(['a', 'fresh']);
    expect(proc.child.exitCode).toBeNull();
  }, 60_000);
});

describe('live reload under load', () => {
  it('during 20 live sessions a reload that adds an account and changes weights drops none; new sessions reach the new account', async () => {
    sim = await startSimUpstream({ accounts: ['a', 'b', 'new'].map((name) => ({ name, deltaCount: 2 })) });
    const s = sim;
    const raw = (names: string[], extra: Record<string, unknown> = {}) => ({
      clients: [{ key: KEY }],
      accounts: names.map((n) => ({ id: n, baseUrl: s.baseUrlFor(n), apiKey: `sk-sim-${n}`, concurrency: 16, priority: n === 'new' ? 0 : 5 })),
      ...extra,
    });
    let next: ReturnType<typeof validConfig> | null = null;
    let invalid = false;
    relay = await startRelay(raw(['a', 'b']), {
      reloadSource: () => (invalid ? { ok: false, errors: ['accounts[0].baseUrl: must be an http(s) URL'] } : { ok: true, config: next! }),
    });
    const live: Array<{ c: TestWsClient; prev: string | null }> = [];
    for (let i = 0; i < 20; i++) {
      const c = await connect(relay.wsUrl, { key: KEY, headers: { 'session-id': `live-${i}` } });
      clients.push(c);
      const r = await c.turn({ model: 'm', store: false, input: userMessage('before') });
      live.push({ c, prev: r.responseId });
    }
    next = validConfig(raw(['a', 'b', 'new'], { scheduler: { topK: 1, weights: { priority: 10 } } }));
    const res = relay.app.reloadFromSource();
    expect(res.ok).toBe(true);
    // Every live session keeps its socket and its chain.
    const after = await Promise.all(live.map(({ c, prev }) => c.turn({ model: 'm', store: false, previous_response_id: prev, input: userMessage('after') })));
    for (const r of after) expect(r.terminal.type).toBe('response.completed');
    for (const { c } of live) expect(c.ws.readyState).toBe(c.ws.OPEN);
    // New sessions go to the new, now strongly preferred account.
    for (let i = 0; i < 5; i++) {
      const c = await connect(relay.wsUrl, { key: KEY, headers: { 'session-id': `new-${i}` } });
      clients.push(c);
      const r = await c.turn({ model: 'm', store: false, input: userMessage('hello') });
      expect(sim.responseOwner(r.responseId!)!.account).toBe('new');
    }
    // An invalid reload changes nothing.
    invalid = true;
    const before = relay.app.config();
    expect(relay.app.reloadFromSource().ok).toBe(false);
    expect(relay.app.config()).toBe(before);
    expect(relay.app.scheduler.accounts().map((a) => a.id)).toEqual(['a', 'b', 'new']);
    expect(relay.logs.some((l) => l.includes('"reload_rejected"'))).toBe(true);
  }, 60_000);
});

describe('metrics after a scripted run', () => {
  it('every contract metric has its expected sample after sticky hits, a failover and a bridged turn', async () => {
    sim = await startSimUpstream({ accounts: [{ name: 'bad', upgradeStatus: 503 }, { name: 'good' }, { name: 'sse', wsSupported: false }] });
    const s = sim;
    relay = await startRelay({
      clients: [{ key: KEY }],
      accounts: [
        { id: 'bad', baseUrl: s.baseUrlFor('bad'), apiKey: 'sk-sim-bad', priority: 0 },
        { id: 'good', baseUrl: s.baseUrlFor('good'), apiKey: 'sk-sim-good', priority: 1 },
        { id: 'sse', baseUrl: s.baseUrlFor('sse'), apiKey: 'sk-sim-sse', transport: 'http', priority: 2 },
      ],
      scheduler: { topK: 1 },
    });
    // A failover (bad → good), then sticky hits by session and by previous response.
    const c = await connect(relay.wsUrl, { key: KEY, headers: { 'session-id': 'metrics-1' } });
    clients.push(c);
    const r1 = await c.turn({ model: 'm', store: false, input: userMessage('one') });
    await c.turn({ model: 'm', store: false, previous_response_id: r1.responseId, input: userMessage('two') });
    const c2 = await connect(relay.wsUrl, { key: KEY, headers: { 'session-id': 'metrics-1' } });
    clients.push(c2);
    await c2.turn({ model: 'm', store: false, input: userMessage('three') });
    // A bridged turn: no ws account left.
    await relay.app.scheduler.setAccountEnabled('good', false);
    const c3 = await connect(relay.wsUrl, { key: KEY, headers: { 'session-id': 'metrics-bridge' } });
    clients.push(c3);
    expect((await c3.turn({ model: 'm', store: false, input: userMessage('bridged') })).terminal.type).toBe('response.completed');
    c.close();
    c2.close();
    c3.close();
    await new Promise((r) => setTimeout(r, 100));

    const text = await (await fetch(`${relay.url}/metrics`)).text();
    const m = parsePrometheusText(text);
    const positive = (name: string, labels: Record<string, string> = {}) => {
      const v = sampleValue(m, name, labels);
      expect(v, `${name} ${JSON.stringify(labels)}`).toBeGreaterThan(0);
    };
    positive('switchyard_scheduler_select_total', { layer: 'load_balance', result: 'acquired' });
    positive('switchyard_scheduler_select_total', { layer: 'previous_response_id', result: 'acquired' });
    positive('switchyard_scheduler_select_total', { layer: 'session_hash', result: 'acquired' });
    positive('switchyard_scheduler_sticky_hit_total', { kind: 'previous_response' });
    positive('switchyard_scheduler_sticky_hit_total', { kind: 'session' });
    positive('switchyard_scheduler_account_switch_total');
    positive('switchyard_scheduler_select_duration_seconds_count', { layer: 'load_balance' });
    positive('switchyard_scheduler_load_skew_count');
    positive('switchyard_scheduler_candidates_count');
    positive('switchyard_transport_fallback_total', { reason: 'no_ws_account' });
    positive('switchyard_upstream_turns_total', { account: 'good', transport: 'ws', outcome: 'completed' });
    positive('switchyard_upstream_turns_total', { account: 'sse', transport: 'http', outcome: 'completed' });
    positive('switchyard_upstream_ttft_seconds_count', { transport: 'ws' });
    positive('switchyard_ws_messages_total', { direction: 'client_in' });
    positive('switchyard_ws_messages_total', { direction: 'client_out' });
    positive('switchyard_account_error_rate_ewma', { account: 'bad' });
    positive('switchyard_account_ttft_ewma_seconds', { account: 'good' });
    positive('switchyard_account_cooldown', { account: 'bad', reason: 'server_error' });
    positive('process_cpu_user_seconds_total');
    for (const name of ['switchyard_account_inflight', 'switchyard_account_waiting', 'switchyard_ws_sessions_active', 'switchyard_upstream_ws_connections']) {
      expect(m.has(name), name).toBe(true);
    }
    expect(text).not.toContain('sk-sim-');
    expect(text).not.toContain(KEY);
  }, 60_000);
});
