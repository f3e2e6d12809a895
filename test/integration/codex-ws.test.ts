// The real Codex CLI 0.169 in WebSocket mode through the relay (issue 4's first acceptance line).
import { afterEach, describe, expect, it } from 'vitest';
import { startSimUpstream, type SimUpstream } from '../../scripts/sim/upstream.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { codexAvailable, DEFAULT_CODEX_KEY, runCodex } from '../helpers/codex.js';

let sim: SimUpstream | null = null;
let relay: TestRelay | null = null;
afterEach(async () => {
  await relay?.stop();
  await sim?.close();
});

async function setup(): Promise<{ sim: SimUpstream; relay: TestRelay }> {
  sim = await startSimUpstream({
    accounts: ['a', 'b'].map((name) => ({ name, toolName: 'exec_command', toolArguments: JSON.stringify({ cmd: 'echo relay-ws-tool-ok' }) })),
  });
  const s = sim;
  relay = await startRelay({
    clients: [{ key: DEFAULT_CODEX_KEY }],
    accounts: ['a', 'b'].map((n) => ({ id: n, baseUrl: s.baseUrlFor(n), apiKey: `sk-sim-${n}` })),
  });
  return { sim: s, relay };
}

type Frame = { generate?: boolean; previous_response_id?: string; input?: Array<Record<string, unknown>> };

describe.runIf(codexAvailable())('Codex CLI over WebSocket through the relay', () => {
  it('prints the simulated answer; warm-up and chained turn went over one upstream socket of one account', async () => {
    const { sim, relay } = await setup();
    const run = await runCodex({ port: relay.port, prompt: 'Say hello', supportsWebsockets: true });
    expect(run.timedOut).toBe(false);
    expect(run.code, run.stderr.slice(-2000)).toBe(0);
    expect(run.stdout).toMatch(/Hello from [ab]! \(turn 1\)/);
    const upgrades = sim.log.filter((r) => r.kind === 'ws_upgrade');
    expect(upgrades).toHaveLength(1);
    expect(upgrades[0].status).toBe(101);
    const frames = sim.framesBySocket().get(upgrades[0].socketId) as Frame[];
    expect(frames).toHaveLength(2);
    expect(frames[0].generate).toBe(false);
    const warmupId = frames[1].previous_response_id;
    expect(warmupId).toMatch(/^resp_/);
    expect(sim.responseOwner(warmupId!)).toMatchObject({ socketId: upgrades[0].socketId, warmup: true });
    // Codex's identifying headers reached the upstream; its relay key did not.
    expect(upgrades[0].headers['session-id']).toBeTruthy();
    expect(upgrades[0].headers.originator).toBe('codex_exec');
    expect(upgrades[0].headers.authorization).toBe(`Bearer sk-sim-${upgrades[0].account}`);
    expect(JSON.stringify(sim.log)).not.toContain(DEFAULT_CODEX_KEY);
    const inflight = await relay.app.store.snapshot(['a', 'b'].map((id) => ({ id, max: 4 })));
    expect(inflight.every((s) => s.inflight === 0)).toBe(true);
  }, 120_000);

  it('completes a tool-call round trip on the same upstream socket', async () => {
    const { sim, relay } = await setup();
    const run = await runCodex({ port: relay.port, prompt: 'Please use the tool to check the relay.', supportsWebsockets: true });
    expect(run.code, run.stderr.slice(-2000)).toBe(0);
    expect(run.stdout).toContain('Tool said:');
    expect(run.stdout).toContain('relay-ws-tool-ok');
    const sockets = [...sim.framesBySocket().entries()];
    expect(sockets).toHaveLength(1);
    const frames = sockets[0][1] as Frame[];
    // warm-up, the user turn (answered with a function_call), the function_call_output follow-up.
    expect(frames.length).toBeGreaterThanOrEqual(3);
    const followUp = frames.find((f) => f.input?.some((i) => i.type === 'function_call_output'));
    expect(followUp?.previous_response_id).toMatch(/^resp_/);
    expect(JSON.stringify(followUp?.input)).toContain('relay-ws-tool-ok');
  }, 120_000);
});
