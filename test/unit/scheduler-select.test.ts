import { describe, expect, it } from 'vitest';
import { decisionFor, planBoundFastPath, planSelection } from '../../src/scheduler/select.js';
import { account, loadOf, NOW, selectInput } from './scheduler-fixtures.js';

const three = () => [account('a'), account('b'), account('c')];
const ids = (cs: { account: { id: string } }[]) => cs.map((c) => c.account.id);

describe('layer 1: previous_response_id', () => {
  const base = { accounts: three(), previousResponseAccount: 'b', req: { previousResponseId: 'resp_1', sessionHash: 'h1' } };

  it('the account bound to the previous response is picked, layer previous_response_id', () => {
    const plan = planSelection(selectInput({ ...base, sessionAccount: 'c' }));
    expect(ids(plan.candidates)).toEqual(['b']);
    const d = decisionFor(plan, plan.candidates[0], 0);
    expect(d).toMatchObject({ layer: 'previous_response_id', stickyPreviousHit: true, stickySessionHit: false, selectedAccount: 'b' });
  });

  it('a busy bound account is waited on (stickyWait), never swapped: the response lives there', () => {
    const plan = planSelection(selectInput({ ...base, accounts: [account('a'), account('b', { concurrency: 1 }), account('c')], load: { b: loadOf({ inflight: 1 }) } }));
    expect(plan.candidates).toEqual([]);
    expect(plan.waitPlan?.candidate.account.id).toBe('b');
    expect(plan.waitPlan).toMatchObject({ timeoutMs: 45_000, maxWaiting: 3 });
  });

  const fallsThrough: [string, Parameters<typeof selectInput>[0], string][] = [
    ['excluded', { ...base, req: { ...base.req, excluded: new Set(['b']) } }, 'excluded'],
    ['disabled in config', { ...base, accounts: [account('a'), account('b', { enabled: false }), account('c')] }, 'disabled'],
    ['disabled at run time', { ...base, load: { b: loadOf({ flags: { disabled: true } }) } }, 'disabled'],
    ['model unsupported', { ...base, accounts: [account('a'), account('b', { models: ['other'] }), account('c')] }, 'model_unsupported'],
    [
      'transport incompatible',
      { ...base, accounts: [account('a'), account('b', { transport: 'http' }), account('c')], req: { ...base.req, requiredTransport: 'ws' } },
      'transport_incompatible',
    ],
    ['cooling down', { ...base, load: { b: loadOf({ flags: { cooldownUntilMs: NOW + 1000 } }) } }, 'cooldown'],
    ['not configured any more', { ...base, previousResponseAccount: 'gone' }, 'unknown_account'],
  ];
  for (const [why, input, miss] of fallsThrough) {
    it(`falls through when the bound account is ${why}`, () => {
      const plan = planSelection(selectInput(input));
      expect(plan.previousResponseMiss).toBe(miss);
      expect(ids(plan.candidates)).not.toContain(input.previousResponseAccount);
      expect(plan.candidates.every((c) => c.layer !== 'previous_response_id')).toBe(true);
      expect(decisionFor(plan, plan.candidates[0], 0).layer).not.toBe('previous_response_id');
    });
  }

  it('records no_key and not_bound misses', () => {
    expect(planSelection(selectInput({ accounts: three() })).previousResponseMiss).toBe('no_key');
    expect(planSelection(selectInput({ accounts: three(), req: { previousResponseId: 'resp_x' } })).previousResponseMiss).toBe('not_bound');
  });
});

describe('layer 2: session_hash', () => {
  const base = { accounts: three(), sessionAccount: 'b', req: { sessionHash: 'h1' } };

  it('a sticky account with a free slot is tried first, layer session_hash', () => {
    const plan = planSelection(selectInput(base));
    expect(plan.candidates[0].account.id).toBe('b');
    expect(plan.candidates[0].layer).toBe('session_hash');
    const d = decisionFor(plan, plan.candidates[0], 0);
    expect(d).toMatchObject({ layer: 'session_hash', stickySessionHit: true, previousResponseMiss: 'no_key', sessionMiss: null });
    expect(plan.deleteSessionBinding).toBe(false);
  });

  it('the fast path picks a free sticky account from its own snapshot alone', () => {
    const plan = planBoundFastPath(selectInput({ ...base, accounts: three() }));
    expect(plan?.partial).toBe(true);
    expect(ids(plan!.candidates)).toEqual(['b']);
  });

  it('a sticky account that is excluded goes to load balance, binding kept', () => {
    const plan = planSelection(selectInput({ ...base, req: { ...base.req, excluded: new Set(['b']) } }));
    expect(plan.sessionMiss).toBe('excluded');
    expect(plan.deleteSessionBinding).toBe(false);
    expect(ids(plan.candidates)).not.toContain('b');
    expect(plan.candidates.every((c) => c.layer === 'load_balance')).toBe(true);
    expect(planBoundFastPath(selectInput({ ...base, req: { ...base.req, excluded: new Set(['b']) } }))).toBeNull();
  });

  it('a sticky account in cooldown: binding deleted, load balance picks', () => {
    const plan = planSelection(selectInput({ ...base, load: { b: loadOf({ flags: { cooldownUntilMs: NOW + 1 } }) } }));
    expect(plan.sessionMiss).toBe('cooldown');
    expect(plan.deleteSessionBinding).toBe(true);
    expect(ids(plan.candidates)).not.toContain('b');
  });

  it('a sticky account disabled: binding deleted', () => {
    const plan = planSelection(selectInput({ ...base, load: { b: loadOf({ flags: { disabled: true } }) } }));
    expect(plan.sessionMiss).toBe('disabled');
    expect(plan.deleteSessionBinding).toBe(true);
  });

  it('a cooldown that has passed no longer excludes', () => {
    const plan = planSelection(selectInput({ ...base, load: { b: loadOf({ flags: { cooldownUntilMs: NOW } }) } }));
    expect(plan.candidates[0].account.id).toBe('b');
  });

  it('a sticky account that is busy: another account with a free slot first, else wait on the sticky one', () => {
    const accounts = [account('a'), account('b', { concurrency: 1 }), account('c')];
    const plan = planSelection(selectInput({ ...base, accounts, load: { b: loadOf({ inflight: 1, loadRate: 100 }) } }));
    expect(ids(plan.candidates).sort()).toEqual(['a', 'c']);
    expect(plan.waitPlan?.candidate.account.id).toBe('b');
    expect(plan.waitPlan?.candidate.layer).toBe('session_hash');
    expect(decisionFor(plan, plan.candidates[0], 0)).toMatchObject({ layer: 'load_balance', sessionMiss: 'busy' });

    const allBusy = planSelection(
      selectInput({
        ...base,
        accounts: [account('a', { concurrency: 1 }), account('b', { concurrency: 1 }), account('c', { concurrency: 1 })],
        load: { a: loadOf({ inflight: 1 }), b: loadOf({ inflight: 1 }), c: loadOf({ inflight: 1 }) },
      }),
    );
    expect(allBusy.candidates).toEqual([]);
    expect(allBusy.waitPlan?.candidate.account.id).toBe('b');
    expect(allBusy.waitPlan).toMatchObject({ timeoutMs: 45_000, maxWaiting: 3 });
  });
});

describe('sticky escape (strict >)', () => {
  const base = { accounts: three(), sessionAccount: 'b', req: { sessionHash: 'h1' } };
  const layerFor = (stats: { errorRate: number; ttftMs: number | null }) => {
    const plan = planSelection(selectInput({ ...base, stats: { b: stats } }));
    return { first: plan.candidates[0], miss: plan.sessionMiss, plan };
  };

  it('error EWMA 0.51 escapes, 0.5 does not', () => {
    const escaped = layerFor({ errorRate: 0.51, ttftMs: null });
    expect(escaped.first.layer).toBe('load_balance');
    expect(escaped.miss).toBe('escaped');
    expect(escaped.plan.deleteSessionBinding).toBe(false);
    expect(layerFor({ errorRate: 0.5, ttftMs: null }).first.layer).toBe('session_hash');
  });

  it('TTFT 15,001 ms escapes, 15,000 ms does not', () => {
    expect(layerFor({ errorRate: 0, ttftMs: 15_001 }).miss).toBe('escaped');
    expect(layerFor({ errorRate: 0, ttftMs: 15_000 }).first.layer).toBe('session_hash');
  });

  it('the fast path leaves an escape to the full plan', () => {
    expect(planBoundFastPath(selectInput({ ...base, stats: { b: { errorRate: 0.9, ttftMs: null } } }))).toBeNull();
  });
});

describe('layer 3: load balance', () => {
  it('top-K = 2 over 3 candidates → candidateCount 3, topK 2, loadSkew > 0', () => {
    const plan = planSelection(
      selectInput({ accounts: three(), scheduler: { topK: 2 }, load: { a: loadOf({ loadRate: 0 }), b: loadOf({ loadRate: 50 }), c: loadOf({ loadRate: 75 }) } }),
    );
    const d = decisionFor(plan, plan.candidates[0], 0);
    expect(d).toMatchObject({ layer: 'load_balance', candidateCount: 3, topK: 2 });
    expect(d.loadSkew).toBeGreaterThan(0);
    expect(ids(plan.candidates).sort()).toEqual(['a', 'b']);
  });

  it('the best-scored free account wins when all have slots and scores differ strongly', () => {
    let bestFirst = 0;
    for (let i = 0; i < 50; i++) {
      const plan = planSelection(
        selectInput({
          accounts: three(),
          req: { sessionHash: `s${i}` },
          scheduler: { weights: { load: 1000 } },
          load: { a: loadOf({ loadRate: 90 }), b: loadOf({ loadRate: 0 }), c: loadOf({ loadRate: 95 }) },
        }),
      );
      if (plan.candidates[0].account.id === 'b') bestFirst++;
    }
    expect(bestFirst).toBeGreaterThanOrEqual(45);
  });

  it('60 sessions over 3 equal accounts spread over at least 2 accounts', () => {
    const firsts = new Set<string>();
    for (let i = 0; i < 60; i++) {
      firsts.add(planSelection(selectInput({ accounts: three(), req: { sessionHash: `session-${i}` } })).candidates[0].account.id);
    }
    expect(firsts.size).toBeGreaterThanOrEqual(2);
  });

  it('the same session key always yields the same order, whatever the entropy', () => {
    const order = (entropy: bigint) =>
      ids(planSelection(selectInput({ accounts: three(), req: { sessionHash: 'stable' }, entropy })).candidates);
    expect(order(1n)).toEqual(order(2n));
    expect(order(0n)).toEqual(order(99n));
  });

  it('requests without a session key are spread by the entropy', () => {
    const firsts = new Set<string>();
    for (let i = 0; i < 30; i++) {
      firsts.add(planSelection(selectInput({ accounts: three(), entropy: BigInt(i) * 0x9e3779b1n })).candidates[0].account.id);
    }
    expect(firsts.size).toBeGreaterThanOrEqual(2);
  });

  it('a lower priority number wins among otherwise equal accounts', () => {
    const accounts = [account('a', { priority: 2 }), account('b', { priority: 1 }), account('c', { priority: 2 })];
    const plan = planSelection(selectInput({ accounts, scheduler: { topK: 1 } }));
    expect(ids(plan.candidates)).toEqual(['b']);
  });

  it('a WS-required request never gets an http-resolved account', () => {
    const accounts = [account('a', { transport: 'http' }), account('b'), account('c', { transport: 'http' })];
    for (let i = 0; i < 20; i++) {
      const plan = planSelection(selectInput({ accounts, req: { requiredTransport: 'ws', sessionHash: `s${i}` } }));
      expect(ids(plan.candidates)).toEqual(['b']);
      expect(plan.candidates[0]).toMatchObject({ transport: 'ws', transportReason: 'ws_enabled' });
      expect(plan.candidateCount).toBe(1);
    }
    const wsUnsupported = planSelection(
      selectInput({ accounts: [account('a')], load: { a: loadOf({ flags: { wsUnsupportedUntilMs: NOW + 1 } }) }, req: { requiredTransport: 'ws' } }),
    );
    expect(wsUnsupported.refusal?.reason).toBe('no_compatible_account');
  });

  it('with no compatible account the plan refuses and says so', () => {
    const plan = planSelection(selectInput({ accounts: [account('a', { transport: 'http' })], req: { requiredTransport: 'ws' } }));
    expect(plan.refusal?.reason).toBe('no_compatible_account');
    expect(plan.candidates).toEqual([]);
    expect(plan.waitPlan).toBeNull();
    expect(decisionFor(plan, null, 0)).toMatchObject({ layer: 'load_balance', candidateCount: 0, selectedAccount: null });
  });

  it('a refusal caused by cooldowns suggests retrying when the first one ends', () => {
    const plan = planSelection(
      selectInput({ accounts: [account('a'), account('b')], load: { a: loadOf({ flags: { cooldownUntilMs: NOW + 7000 } }), b: loadOf({ flags: { cooldownUntilMs: NOW + 3000 } }) } }),
    );
    expect(plan.refusal?.retryAfterMs).toBe(3000);
    expect(plan.refusal?.rateLimited).toBe(false);
  });

  it('a refusal is rate-limited only when every account held back by a cooldown cools down after a 429', () => {
    const rl = (ms: number) => loadOf({ flags: { cooldownUntilMs: NOW + ms, cooldownReason: 'rate_limited' } });
    const accounts = [account('a'), account('b'), account('c', { transport: 'http' })];
    // c cannot serve a WS request at all: it does not count either way.
    const all = planSelection(selectInput({ accounts, req: { requiredTransport: 'ws' }, load: { a: rl(9000), b: rl(4000) } }));
    expect(all.refusal).toMatchObject({ reason: 'no_compatible_account', retryAfterMs: 4000, rateLimited: true });
    const mixed = planSelection(
      selectInput({ accounts, req: { requiredTransport: 'ws' }, load: { a: rl(9000), b: loadOf({ flags: { cooldownUntilMs: NOW + 4000, cooldownReason: 'server_error' } }) } }),
    );
    expect(mixed.refusal?.rateLimited).toBe(false);
    const none = planSelection(selectInput({ accounts: [account('a', { transport: 'http' })], req: { requiredTransport: 'ws' } }));
    expect(none.refusal?.rateLimited).toBe(false);
  });

  it('all busy: nothing to try, a wait plan on the first of the order (fallbackWait), not a refusal', () => {
    const accounts = [account('a', { concurrency: 1 }), account('b', { concurrency: 1 })];
    const plan = planSelection(selectInput({ accounts, load: { a: loadOf({ inflight: 1 }), b: loadOf({ inflight: 1 }) } }));
    expect(plan.refusal).toBeNull();
    expect(plan.candidates).toEqual([]);
    expect(plan.waitPlan).toMatchObject({ timeoutMs: 30_000, maxWaiting: 100 });
  });

  it('a free account outside the top-K is tried before waiting', () => {
    const accounts = [account('a', { priority: 1, concurrency: 1 }), account('b', { priority: 9 })];
    const plan = planSelection(selectInput({ accounts, scheduler: { topK: 1, weights: { priority: 100 } }, load: { a: loadOf({ inflight: 1 }) } }));
    expect(ids(plan.candidates)).toEqual(['b']);
    expect(plan.waitPlan?.candidate.account.id).toBe('a');
  });

  it('only accounts of the request group are candidates', () => {
    const accounts = [account('a', { group: 'other' }), account('b')];
    const plan = planSelection(selectInput({ accounts }));
    expect(ids(plan.candidates)).toEqual(['b']);
    expect(plan.candidateCount).toBe(1);
  });
});
