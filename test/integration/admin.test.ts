import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigValue, type LoadResult } from '../../src/config/load.js';
import type { ScheduleRequest } from '../../src/scheduler/types.js';
import type { AccountView } from '../../src/ingress/admin.js';
import { parsePrometheusText, sampleValue } from '../helpers/prom-parse.js';
import { startRelay, validConfig, type TestRelay } from '../helpers/relay.js';

const ADMIN_KEY = 'sy-admin-key-5f2c9e1a7b';
const UPSTREAM_KEY = 'sk-upstream-secret-7c1d0e';
const CLIENT_KEY = 'sk-sy-client-4b8a2f';

function rawConfig(accounts: string[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    adminKey: ADMIN_KEY,
    clients: [{ key: CLIENT_KEY }],
    accounts: accounts.map((id, i) => ({
      id,
      baseUrl: 'http://127.0.0.1:9/v1',
      apiKey: UPSTREAM_KEY,
      priority: i + 1,
      concurrency: 2,
      ...(id.endsWith('-http') ? { transport: 'http' } : {}),
    })),
    ...extra,
  };
}

const relays: TestRelay[] = [];
afterEach(async () => {
  for (const r of relays.splice(0)) await r.stop();
});

async function relayWith(raw: Record<string, unknown>, reloadSource?: () => LoadResult): Promise<TestRelay> {
  const r = await startRelay(raw, { reloadSource });
  relays.push(r);
  return r;
}

interface Answer {
  status: number;
  body: any;
  text: string;
  headers: Headers;
}

async function call(relay: TestRelay, method: string, path: string, key: string | null = ADMIN_KEY): Promise<Answer> {
  const res = await fetch(`${relay.url}${path}`, {
    method,
    headers: key === null ? {} : { authorization: `Bearer ${key}` },
  });
  const text = await res.text();
  return { status: res.status, text, body: text ? JSON.parse(text) : null, headers: res.headers };
}

function expectNoSecrets(text: string): void {
  for (const secret of [ADMIN_KEY, UPSTREAM_KEY, CLIENT_KEY]) expect(text).not.toContain(secret);
}

function expectOpenAIError(a: Answer, status: number, code: string): void {
  expect(a.status).toBe(status);
  expect(a.body.error).toMatchObject({ code, type: expect.any(String), message: expect.any(String) });
  expectNoSecrets(a.text);
}

async function accounts(relay: TestRelay): Promise<AccountView[]> {
  const a = await call(relay, 'GET', '/admin/accounts');
  expect(a.status).toBe(200);
  expect(a.body.object).toBe('list');
  expectNoSecrets(a.text);
  return a.body.data as AccountView[];
}

const request = (sessionHash: string | null): ScheduleRequest => ({
  group: 'default',
  sessionHash,
  previousResponseId: null,
  model: 'gpt-5.1',
  requiredTransport: 'any',
  excluded: new Set(),
});

/** Accounts the scheduler picks over many sessions (slots released right away). */
async function chosenAccounts(relay: TestRelay, n = 30): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const out = await relay.app.scheduler.select(request(`session-${i}-${Math.random()}`));
    if (out.kind === 'acquired') {
      seen.add(out.account.id);
      await out.lease.release();
    }
  }
  return seen;
}

describe('admin API access', () => {
  it('is off (404) when no adminKey is configured', async () => {
    const raw = rawConfig(['acc-1']);
    delete raw.adminKey;
    const relay = await relayWith(raw);
    expectOpenAIError(await call(relay, 'GET', '/admin/accounts'), 404, 'not_found');
    expectOpenAIError(await call(relay, 'POST', '/admin/reload'), 404, 'not_found');
  });

  it('answers 401 to a missing or wrong key, before revealing any route', async () => {
    const relay = await relayWith(rawConfig(['acc-1']));
    expectOpenAIError(await call(relay, 'GET', '/admin/accounts', null), 401, 'invalid_api_key');
    expectOpenAIError(await call(relay, 'GET', '/admin/accounts', 'wrong-key'), 401, 'invalid_api_key');
    expectOpenAIError(await call(relay, 'GET', '/admin/accounts', `${ADMIN_KEY}x`), 401, 'invalid_api_key');
    // A client key is not an admin key.
    expectOpenAIError(await call(relay, 'GET', '/admin/accounts', CLIENT_KEY), 401, 'invalid_api_key');
    expectOpenAIError(await call(relay, 'GET', '/admin/nothing-here', 'wrong-key'), 401, 'invalid_api_key');
    expect(relay.logs.join('\n')).toContain('admin_unauthorized');
    expectNoSecrets(relay.logs.join('\n'));
  });

  it('answers 404 to unknown routes and 405 to wrong methods', async () => {
    const relay = await relayWith(rawConfig(['acc-1']));
    expectOpenAIError(await call(relay, 'GET', '/admin/nothing-here'), 404, 'not_found');
    const put = await call(relay, 'PUT', '/admin/accounts');
    expectOpenAIError(put, 405, 'method_not_allowed');
    expect(put.headers.get('allow')).toBe('GET');
    expectOpenAIError(await call(relay, 'GET', '/admin/reload'), 405, 'method_not_allowed');
    expectOpenAIError(await call(relay, 'GET', '/admin/accounts/acc-1/disable'), 405, 'method_not_allowed');
  });
});

describe('GET /admin/accounts', () => {
  it('lists every account with its transport decision, load, EWMAs and cooldown, and no credential', async () => {
    const relay = await relayWith(rawConfig(['acc-1', 'acc-2-http', 'acc-3']));
    await relay.app.scheduler.markRateLimited('acc-3', null);
    relay.app.scheduler.reportResult('acc-1', true, 420);
    const held = await relay.app.scheduler.select({ ...request(null), requiredTransport: 'ws' });
    expect(held.kind).toBe('acquired');

    const list = await accounts(relay);
    expect(list.map((a) => a.id)).toEqual(['acc-1', 'acc-2-http', 'acc-3']);
    const byId = new Map(list.map((a) => [a.id, a]));
    expect(byId.get('acc-1')).toMatchObject({
      group: 'default',
      priority: 1,
      concurrency: 2,
      enabled: true,
      disabled: false,
      transport: 'ws',
      transportReason: 'ws_enabled',
      errorRateEwma: 0,
      ttftEwmaMs: 420,
      cooldownUntil: null,
      cooldownReason: null,
      wsUnsupportedUntil: null,
    });
    expect(byId.get('acc-2-http')).toMatchObject({ transport: 'http', transportReason: 'account_force_http', ttftEwmaMs: null });
    const cooling = byId.get('acc-3')!;
    expect(cooling.cooldownReason).toBe('rate_limited');
    expect(Date.parse(cooling.cooldownUntil!)).toBeGreaterThan(Date.now());
    const inflight = list.reduce((n, a) => n + a.inflight, 0);
    expect(inflight).toBe(1);
    for (const a of list) expect(Object.keys(a)).not.toContain('apiKey');
    if (held.kind === 'acquired') await held.lease.release();
  });
});

describe('enable / disable', () => {
  it('disable stops the scheduler choosing the account; enable brings it back and clears its cooldown', async () => {
    const relay = await relayWith(rawConfig(['acc-1', 'acc-2']));
    expect(await chosenAccounts(relay)).toEqual(new Set(['acc-1', 'acc-2']));

    const off = await call(relay, 'POST', '/admin/accounts/acc-1/disable');
    expect(off.status).toBe(200);
    expect(off.body).toMatchObject({ id: 'acc-1', disabled: true, transport: null, transportReason: 'account_disabled' });
    expect(await chosenAccounts(relay)).toEqual(new Set(['acc-2']));
    expect(relay.logs.some((l) => l.includes('"admin_action"') && l.includes('"disable"') && l.includes('acc-1'))).toBe(true);

    await relay.app.scheduler.markServerError('acc-1');
    const on = await call(relay, 'POST', '/admin/accounts/acc-1/enable');
    expect(on.status).toBe(200);
    expect(on.body).toMatchObject({ id: 'acc-1', disabled: false, transport: 'ws', cooldownUntil: null, cooldownReason: null });
    expect(await chosenAccounts(relay)).toContain('acc-1');
  });

  it('shows an operator disable on /metrics as a disabled cooldown series of the account', async () => {
    const relay = await relayWith(rawConfig(['acc-1', 'acc-2']));
    expect((await call(relay, 'POST', '/admin/accounts/acc-2/disable')).status).toBe(200);
    const res = await fetch(`${relay.url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expectNoSecrets(text);
    const fams = parsePrometheusText(text);
    expect(sampleValue(fams, 'switchyard_account_cooldown', { account: 'acc-2', reason: 'disabled' })).toBe(1);
    expect(sampleValue(fams, 'switchyard_account_cooldown', { account: 'acc-1', reason: 'disabled' })).toBe(0);
    expect(sampleValue(fams, 'switchyard_account_inflight', { account: 'acc-1' })).toBe(0);
  });

  it('answers 404 for an unknown account id', async () => {
    const relay = await relayWith(rawConfig(['acc-1']));
    expectOpenAIError(await call(relay, 'POST', '/admin/accounts/nope/disable'), 404, 'not_found');
    expectOpenAIError(await call(relay, 'POST', '/admin/accounts/%E0%A4%A/enable'), 404, 'not_found');
  });
});

describe('POST /admin/reload', () => {
  it('applies a new config from the reload source: an added account is listed and scheduled', async () => {
    let source: LoadResult = { ok: true, config: validConfig(rawConfig(['acc-1'])) };
    const relay = await relayWith(rawConfig(['acc-1']), () => source);
    source = { ok: true, config: validConfig(rawConfig(['acc-1', 'acc-2'])) };
    const r = await call(relay, 'POST', '/admin/reload');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ ok: true, accounts: 2 });
    expect((await accounts(relay)).map((a) => a.id)).toEqual(['acc-1', 'acc-2']);
    expect(await chosenAccounts(relay)).toContain('acc-2');
  });

  it('rejects an invalid config with its errors and keeps the running one', async () => {
    let source: LoadResult = { ok: true, config: validConfig(rawConfig(['acc-1', 'acc-2'])) };
    const relay = await relayWith(rawConfig(['acc-1', 'acc-2']), () => source);
    const bad = rawConfig(['acc-1', 'acc-3']);
    (bad.accounts as Record<string, unknown>[])[1].concurrency = -1;
    source = loadConfigValue({ listen: { host: '127.0.0.1', port: 0 }, ...bad }, {});
    expect(source.ok).toBe(false);

    const r = await call(relay, 'POST', '/admin/reload');
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: 'invalid_config', type: 'invalid_request_error' });
    expect(r.body.errors).toEqual(expect.arrayContaining([expect.stringMatching(/^accounts\[1\]\.concurrency: /)]));
    expectNoSecrets(r.text);
    expect((await accounts(relay)).map((a) => a.id)).toEqual(['acc-1', 'acc-2']);
    expect(relay.app.config().accounts.map((a) => a.id)).toEqual(['acc-1', 'acc-2']);
    expect(relay.logs.join('\n')).toContain('reload_rejected');
    expectNoSecrets(relay.logs.join('\n'));
  });
});
