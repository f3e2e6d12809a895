// `npm run demo`: a simulated upstream with four accounts (two WebSocket-capable, one HTTP/SSE
// only, one flaky), the relay with the in-memory store, and a scripted client running several
// sessions of several turns — Codex-style warm-up + chained turns over WebSocket, a bridged
// session, and HTTP requests. Prints every scheduling decision and a summary. Loopback only.
import { Writable } from 'node:stream';
import { createApp } from '../src/app.js';
import { loadConfigValue } from '../src/config/load.js';
import { createLogger } from '../src/observability/logger.js';
import { MemoryStore } from '../src/state/memory-store.js';
import { startSimUpstream } from './sim/upstream.js';
import { connect, userMessage } from '../test/helpers/ws-client.js';

const CLIENT_KEY = 'sk-sy-demo';

interface TurnLine {
  bridged?: boolean;
  local?: boolean;
  session?: string;
  turn?: number;
  account?: string;
  layer?: string;
  transport?: string;
  ttftMs?: number | null;
  outcome?: string;
  switches?: number;
  reason?: string;
}

async function main(): Promise<void> {
  const sim = await startSimUpstream({
    accounts: [
      { name: 'ws-fast', ttftMs: 5, deltaCount: 4 },
      { name: 'ws-slow', ttftMs: 40, deltaCount: 4 },
      { name: 'sse-only', wsSupported: false, ttftMs: 10 },
      { name: 'flaky', ttftMs: 5, rateLimitAfterTurns: 2, retryAfterSeconds: 30 },
    ],
  });
  const loaded = loadConfigValue(
    {
      listen: { host: '127.0.0.1', port: 0 },
      clients: [{ key: CLIENT_KEY, name: 'demo-team' }],
      accounts: [
        { id: 'ws-fast', baseUrl: sim.baseUrlFor('ws-fast'), apiKey: 'sk-sim-ws-fast', priority: 1, concurrency: 4 },
        { id: 'ws-slow', baseUrl: sim.baseUrlFor('ws-slow'), apiKey: 'sk-sim-ws-slow', priority: 1, concurrency: 4 },
        { id: 'sse-only', baseUrl: sim.baseUrlFor('sse-only'), apiKey: 'sk-sim-sse-only', transport: 'http', priority: 2, concurrency: 4 },
        { id: 'flaky', baseUrl: sim.baseUrlFor('flaky'), apiKey: 'sk-sim-flaky', priority: 0, concurrency: 2 },
      ],
    },
    {},
  );
  if (!loaded.ok) throw new Error(loaded.errors.join('\n'));

  const turns: TurnLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        const rec = JSON.parse(line) as TurnLine & { event?: string };
        if (rec.event === 'turn' || rec.event === 'http_turn' || rec.event === 'bridge_turn') {
          turns.push(rec);
          const ttft = rec.ttftMs === null || rec.ttftMs === undefined ? '   -' : `${Math.round(rec.ttftMs)}ms`.padStart(5);
          const layer = rec.local ? 'bridge (local warm-up)' : (rec.layer ?? '-');
          console.log(
            `  session ${(rec.session ?? 'http').slice(0, 8)}  turn ${String(rec.turn ?? 1).padEnd(2)} layer ${layer.padEnd(22)} account ${String(rec.account ?? '-').padEnd(9)} transport ${String(rec.transport ?? '-').padEnd(4)} ttft ${ttft}  ${rec.outcome}${rec.switches ? ` (switches ${rec.switches})` : ''}`,
          );
        }
      }
      cb();
    },
  });
  const config = loaded.config;
  const app = createApp({ config, store: new MemoryStore({ leaseTtlMs: config.leases.ttlMs }), logger: createLogger('info', sink) });
  const { port } = await app.start();
  const wsUrl = `ws://127.0.0.1:${port}/v1/responses`;
  console.log(`switchyard demo: relay on 127.0.0.1:${port}, simulated upstream on ${sim.url}\n`);

  console.log('1) Codex-style sessions over WebSocket: warm-up, then chained turns on one upstream socket');
  for (let s = 0; s < 4; s++) {
    const c = await connect(wsUrl, { key: CLIENT_KEY, headers: { 'session-id': `demo-session-${s}`, originator: 'demo' } });
    const warm = await c.turn({ model: 'gpt-5.5', generate: false, store: false, input: userMessage('You are a demo agent.') });
    let prev = warm.responseId;
    const history = userMessage('You are a demo agent.');
    for (let t = 0; t < 3; t++) {
      const ask = userMessage(`question ${t + 1}`);
      let r = await c.turn({ model: 'gpt-5.5', store: false, previous_response_id: prev, input: ask });
      const code = (r.terminal.error as { code?: string } | undefined)?.code;
      if (code === 'previous_response_not_found') {
        // What Codex does: replay the whole history without previous_response_id.
        console.log(`    client got previous_response_not_found (its account failed); replaying the full history`);
        r = await c.turn({ model: 'gpt-5.5', store: false, input: [...history, ...ask] });
      }
      history.push(...ask);
      prev = r.terminal.type === 'response.completed' ? r.responseId : null;
    }
    c.close();
  }

  console.log('\n2) The same session-id on a new socket stays on its account (session_hash layer)');
  const again = await connect(wsUrl, { key: CLIENT_KEY, headers: { 'session-id': 'demo-session-0' } });
  await again.turn({ model: 'gpt-5.5', store: false, input: userMessage('resumed with full history') });
  again.close();

  console.log('\n3) HTTP clients: POST /v1/responses, streamed and not');
  for (const stream of [true, false]) {
    const res = await fetch(`http://127.0.0.1:${port}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', 'session-id': `http-${stream}` },
      body: JSON.stringify({ model: 'gpt-5.5', input: 'Say hello', stream }),
    });
    await res.text();
  }

  console.log('\n4) Every WebSocket account taken out: a WebSocket session is bridged over HTTP/SSE');
  for (const id of ['ws-fast', 'ws-slow', 'flaky']) await app.store.setDisabled(id, true);
  const bridged = await connect(wsUrl, { key: CLIENT_KEY, headers: { 'session-id': 'demo-bridged' } });
  const bw = await bridged.turn({ model: 'gpt-5.5', generate: false, store: false, input: userMessage('instructions') });
  await bridged.turn({ model: 'gpt-5.5', store: false, previous_response_id: bw.responseId, input: userMessage('hello over the bridge') });
  bridged.close();
  for (const id of ['ws-fast', 'ws-slow', 'flaky']) await app.store.setDisabled(id, false);

  await new Promise((r) => setTimeout(r, 100));
  printSummary(turns, sim.accounts().map((a) => ({ name: a.name, turns: a.turns, warmups: a.warmups, http: a.httpRequests, upgrades: a.upgrades, refused: a.upgradesRefused })));
  await app.stop();
  await sim.close();
}

function printSummary(turns: TurnLine[], upstream: Array<{ name: string; turns: number; warmups: number; http: number; upgrades: number; refused: number }>): void {
  console.log('\nSummary');
  const byLayer = new Map<string, number>();
  const byOutcome = new Map<string, number>();
  for (const t of turns) {
    const layer = t.local ? 'local' : (t.layer ?? '-');
    byLayer.set(layer, (byLayer.get(layer) ?? 0) + 1);
    byOutcome.set(t.outcome ?? '-', (byOutcome.get(t.outcome ?? '-') ?? 0) + 1);
  }
  console.log(`  turns logged: ${turns.length}; by layer: ${[...byLayer].map(([k, v]) => `${k}=${v}`).join(', ')}`);
  console.log(`  outcomes: ${[...byOutcome].map(([k, v]) => `${k}=${v}`).join(', ')}`);
  console.log('  account    upstream turns  warm-ups  http requests  ws upgrades (refused)');
  for (const a of upstream) {
    console.log(`  ${a.name.padEnd(10)} ${String(a.turns).padStart(14)}  ${String(a.warmups).padStart(8)}  ${String(a.http).padStart(13)}  ${String(a.upgrades).padStart(11)} (${a.refused})`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
