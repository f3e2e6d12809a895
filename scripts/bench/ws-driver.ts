// Client side of the WebSocket benchmarks: K Codex-like sessions (one socket each, turns chained
// with previous_response_id and store:false, so a relay reuses its upstream socket), each
// running T turns back to back. Per event it records the delivery latency from the sim's
// `sim_ts` (CLOCK_MONOTONIC, comparable across processes) to the moment the frame is read here;
// per turn the time to its first event. Frames are never JSON-parsed: the driver must cost the
// same whatever it is connected to.
import WebSocket from 'ws';
import { peekType } from '../../src/session/events.js';
import { hrMs, rotate } from './stats.js';

export interface WsTarget {
  name: string;
  url(session: number): string;
  headers(session: number): Record<string, string>;
}

export interface WsPhaseOptions {
  sessions: number;
  turns: number;
  /** First turns are spread evenly over this long (0 = all at once). */
  staggerMs: number;
  /** The whole phase (connects, turns) must end within this long. */
  timeoutMs: number;
  /** Connects in flight at once (the listen backlog is finite). */
  connectConcurrency?: number;
  /**
   * Request frames of about this many KB shaped like Codex's (a developer message and ten tool
   * schemas re-sent every turn, CLIENTS.md §2.4: ~32 KB); 0 or absent: a one-line input.
   */
  bodyKb?: number;
  /**
   * Run every session's first turn before measuring (it opens Switchyard's upstream socket):
   * counts, latency samples and `afterOpen` then cover the later turns only, a relay's steady
   * state; first turns still give their time to first event.
   */
  warmupTurn?: boolean;
}

export interface WsPhaseHooks {
  /** Every socket is open (and warmed up, with `warmupTurn`); measured turns start when this resolves. */
  afterOpen?(): Promise<void>;
  /** Every turn has ended; sockets close after this resolves. */
  afterTurns?(): Promise<void>;
}

export interface WsPhaseResult {
  target: string;
  events: number;
  turns: number;
  /** From the first turn sent to the last terminal event. */
  elapsedMs: number;
  /** Per-event delivery latency samples (ms). */
  latencies: number[];
  ttfeFirst: number[];
  ttfeLater: number[];
  /** Later turns' TTFE split at the first event's `sim_ts`: request leg (send → sim) and response leg (sim → read). */
  ttfeLaterUp: number[];
  ttfeLaterDown: number[];
  /** Turns that ended with anything but response.completed (type and a head of the frame). */
  errors: string[];
}

const SIM_TS = Buffer.from('"sim_ts":');
/** `turns` of a session driven turn by turn (step()). */
const STEPPED = Number.POSITIVE_INFINITY;
const RESPONSE_ID = /"response":\{"id":"([^"]+)"/;
const TERMINAL = new Set(['response.completed', 'response.failed', 'response.incomplete', 'response.cancelled', 'error']);
const INPUT = 'Say something long enough to stream in many deltas.';
const MAX_ERRORS_KEPT = 20;

/**
 * The part of a Codex-like `response.create` after `model` and `previous_response_id`, about `kb`
 * KB in all: built once, so every turn costs the driver one string concatenation.
 */
export function codexLikeTail(kb: number): string {
  const schema = (name: string) => ({
    type: 'function',
    name,
    description: 'Runs a command in a PTY, returning output or a session ID for ongoing interaction. Use for shell work.',
    strict: false,
    parameters: {
      type: 'object',
      properties: {
        cmd: { type: 'string', description: 'Shell command to execute.' },
        workdir: { type: 'string', description: 'Optional working directory to run the command in; defaults to the turn cwd.' },
        timeout_ms: { type: 'number', description: 'How long to wait for output before yielding.' },
        max_output_tokens: { type: 'number', description: 'Maximum number of tokens to return.' },
      },
      required: ['cmd'],
      additionalProperties: false,
    },
  });
  const names = ['exec_command', 'write_stdin', 'request_user_input', 'apply_patch', 'view_image', 'get_goal', 'create_goal', 'update_goal', 'tool_search', 'list_mcp'];
  const rest = (developer: string) => ({
    stream: true,
    input: [
      { type: 'message', role: 'developer', content: [{ type: 'input_text', text: developer }] },
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: INPUT }] },
    ],
    tools: names.map(schema),
    tool_choice: 'auto',
    parallel_tool_calls: true,
    reasoning: { effort: 'medium' },
    store: false,
    include: ['reasoning.encrypted_content'],
    prompt_cache_key: '01a216e5-0000-4000-8000-000000000000',
    text: { verbosity: 'low' },
    client_metadata: { 'x-codex-turn-metadata': '{"request_kind":"turn","turn_trigger":"exec"}' },
  });
  const bare = JSON.stringify(rest('')).length;
  const sentence = 'You are Codex, a coding agent. Keep edits small and explain them. ';
  const developer = sentence.repeat(Math.max(0, Math.ceil((kb * 1024 - bare) / sentence.length)));
  return `,${JSON.stringify(rest(developer)).slice(1)}`;
}

/** `sim_ts` is the last field the sim adds: a backwards search is short. */
function simTs(data: Buffer): number {
  const at = data.lastIndexOf(SIM_TS);
  if (at < 0) return Number.NaN;
  const start = at + SIM_TS.length;
  let end = start;
  while (end < data.length && data[end] !== 0x7d && data[end] !== 0x2c) end++;
  return Number(data.toString('latin1', start, end));
}

class Collector {
  measuring = true;
  events = 0;
  turns = 0;
  firstSentAt = Number.POSITIVE_INFINITY;
  lastEndAt = 0;
  readonly latencies: number[] = [];
  readonly ttfeFirst: number[] = [];
  readonly ttfeLater: number[] = [];
  readonly ttfeLaterUp: number[] = [];
  readonly ttfeLaterDown: number[] = [];
  readonly errors: string[] = [];
  errorCount = 0;
}

class BenchSession {
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  readonly done: Promise<void>;
  /** With a warm-up: resolves when the first turn has ended; the session then waits for resume(). */
  readonly warmed: Promise<void>;
  private finish!: () => void;
  private fail!: (e: Error) => void;
  private onWarmed!: () => void;
  private turn = 0;
  private sentAt = 0;
  private sawFirst = false;
  private prevId: string | null = null;
  private turnId: string | null = null;
  private closed = false;
  /** Stepped sessions (runInterleaved): the end of the turn `step()` started. */
  private stepEnd: (() => void) | null = null;

  constructor(
    url: string,
    headers: Record<string, string>,
    private readonly turns: number,
    private readonly c: Collector,
    private readonly warmup: boolean,
    /** codexLikeTail(), or null for the one-line frame. */
    private readonly tail: string | null,
  ) {
    this.ws = new WebSocket(url, { headers, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => {
        res.resume();
        reject(new Error(`upgrade refused: ${res.statusCode}`));
      });
      this.ws.once('error', reject);
    });
    this.opened.catch(() => undefined);
    this.done = new Promise((resolve, reject) => {
      this.finish = resolve;
      this.fail = reject;
    });
    this.done.catch(() => undefined);
    this.warmed = new Promise((resolve) => (this.onWarmed = resolve));
    this.ws.on('error', () => undefined);
    this.ws.on('close', (code) => {
      const during = this.stepEnd !== null || (this.turns !== STEPPED && this.turn <= this.turns);
      this.closed = true;
      if (during) this.fail(new Error(`socket closed (${code}) during turn ${this.turn}`));
    });
    this.ws.on('message', (data: Buffer) => this.wsOnMessage(data));
  }

  start(): void {
    this.turn = 1;
    this.send();
  }

  /** Next turn after the warm-up barrier. */
  resume(): void {
    this.turn++;
    this.send();
  }

  /** A stepped session (turns = STEPPED) runs one turn per call; resolves when it ends. */
  step(): Promise<void> {
    return new Promise((resolve) => {
      this.stepEnd = resolve;
      this.turn++;
      this.send();
    });
  }

  private send(): void {
    let data: string;
    if (this.tail !== null) {
      data = `{"type":"response.create","model":"gpt-bench"${this.prevId !== null ? `,"previous_response_id":"${this.prevId}"` : ''}${this.tail}`;
    } else {
      const frame: Record<string, unknown> = { type: 'response.create', model: 'gpt-bench', input: INPUT, store: false };
      if (this.prevId !== null) frame.previous_response_id = this.prevId;
      data = JSON.stringify(frame);
    }
    this.sawFirst = false;
    this.turnId = null;
    this.sentAt = hrMs();
    if (this.c.measuring && this.sentAt < this.c.firstSentAt) this.c.firstSentAt = this.sentAt;
    this.ws.send(data);
  }

  private wsOnMessage(data: Buffer): void {
    const now = hrMs();
    const c = this.c;
    this.count(data, now);
    const type = peekType(data) ?? '';
    if (type === 'response.created' && this.turnId === null) {
      this.turnId = RESPONSE_ID.exec(data.toString('latin1', 0, Math.min(data.length, 256)))?.[1] ?? null;
    }
    if (!TERMINAL.has(type)) return;
    if (c.measuring) {
      c.turns++;
      c.lastEndAt = now;
    }
    if (type === 'response.completed') this.prevId = this.turnId;
    else {
      c.errorCount++;
      if (c.errors.length < MAX_ERRORS_KEPT) c.errors.push(data.toString('utf8', 0, Math.min(data.length, 300)));
      // A failed turn breaks the chain: the next one starts a fresh conversation.
      this.prevId = null;
    }
    const stepEnd = this.stepEnd;
    if (stepEnd !== null) {
      this.stepEnd = null;
      stepEnd();
      return;
    }
    if (this.turn >= this.turns) {
      this.turn++;
      this.finish();
      return;
    }
    if (this.turn === 1 && this.warmup) {
      this.onWarmed();
      return;
    }
    this.turn++;
    this.send();
  }

  private count(data: Buffer, now: number): void {
    const c = this.c;
    if (!this.sawFirst) {
      this.sawFirst = true;
      // A first turn is timed even while warming up: it is the one that opens upstream sockets.
      if (this.turn === 1) c.ttfeFirst.push(now - this.sentAt);
      else if (c.measuring) {
        c.ttfeLater.push(now - this.sentAt);
        const ts = simTs(data);
        if (!Number.isNaN(ts)) {
          c.ttfeLaterUp.push(ts - this.sentAt);
          c.ttfeLaterDown.push(now - ts);
        }
      }
    }
    if (!c.measuring) return;
    c.events++;
    const ts = simTs(data);
    if (!Number.isNaN(ts)) c.latencies.push(now - ts);
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.ws.terminate();
        resolve();
      }, 5_000);
      this.ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.ws.close(1000);
    });
  }
}

/** Runs `tasks` with at most `limit` in flight. */
async function inBatches<T>(items: T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await task(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function deadline(ms: number, what: () => string): { promise: Promise<never>; clear(): void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<never>((_r, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what()}`)), ms);
  });
  promise.catch(() => undefined);
  return { promise, clear: () => clearTimeout(timer) };
}

/**
 * Opens `count` sessions on `target` (at most `concurrency` connects in flight), each pushed to
 * `into` as it is created, so the caller closes every one even when the deadline wins.
 */
async function openSessions(
  target: WsTarget,
  count: number,
  concurrency: number,
  into: BenchSession[],
  limit: Promise<never>,
  make: (url: string, headers: Record<string, string>) => BenchSession,
): Promise<void> {
  const indexes = Array.from({ length: count }, (_, i) => i);
  await Promise.race([
    limit,
    inBatches(indexes, concurrency, async (i) => {
      const s = make(target.url(i), target.headers(i));
      into.push(s);
      await s.opened;
    }),
  ]);
}

/**
 * Calls `go` on each session, the i-th `i × staggerMs / n` ms after the first (its timer pushed
 * to `timers`, which the caller clears); resolves with what every call resolved to.
 */
function staggered<T>(sessions: BenchSession[], staggerMs: number, timers: NodeJS.Timeout[], go: (s: BenchSession) => T | Promise<T>): Promise<T[]> {
  return Promise.all(
    sessions.map((s, i) => {
      const delay = staggerMs > 0 ? (i * staggerMs) / sessions.length : 0;
      if (delay === 0) return go(s);
      return new Promise<T>((resolve, reject) => timers.push(setTimeout(() => Promise.resolve(go(s)).then(resolve, reject), delay)));
    }),
  );
}

/** A target's figures from its collector; failed turns are reported on stderr. */
function phaseResult(target: WsTarget, c: Collector, elapsedMs: number): WsPhaseResult {
  if (c.errorCount > 0) {
    process.stderr.write(`[${target.name}] ${c.errorCount} turns did not complete; first: ${c.errors[0]}\n`);
  }
  return {
    target: target.name,
    events: c.events,
    turns: c.turns,
    elapsedMs,
    latencies: c.latencies,
    ttfeFirst: c.ttfeFirst,
    ttfeLater: c.ttfeLater,
    ttfeLaterUp: c.ttfeLaterUp,
    ttfeLaterDown: c.ttfeLaterDown,
    errors: c.errors,
  };
}

/** One phase against one target: open K sockets, run the turns, close everything. */
export async function runWsPhase(target: WsTarget, o: WsPhaseOptions, hooks: WsPhaseHooks = {}): Promise<WsPhaseResult> {
  const c = new Collector();
  const sessions: BenchSession[] = [];
  const limit = deadline(o.timeoutMs, () => `${target.name}: ${sessions.length}/${o.sessions} sockets, ${c.turns}/${o.sessions * o.turns} turns`);
  const timers: NodeJS.Timeout[] = [];
  const tail = o.bodyKb ? codexLikeTail(o.bodyKb) : null;
  try {
    const warm = o.warmupTurn === true && o.turns > 1;
    await openSessions(target, o.sessions, o.connectConcurrency ?? 100, sessions, limit.promise, (url, headers) => new BenchSession(url, headers, o.turns, c, warm, tail));
    const stagger = (go: (s: BenchSession) => void) => void staggered(sessions, o.staggerMs, timers, go);
    if (warm) {
      c.measuring = false;
      stagger((s) => s.start());
      // A session that fails while warming up rejects `done`, ending the phase at once.
      await Promise.race([limit.promise, Promise.all(sessions.map((s) => Promise.race([s.warmed, s.done])))]);
      c.measuring = true;
    }
    await hooks.afterOpen?.();
    stagger((s) => (warm ? s.resume() : s.start()));
    await Promise.race([limit.promise, Promise.all(sessions.map((s) => s.done))]);
    await hooks.afterTurns?.();
  } finally {
    limit.clear();
    for (const t of timers) clearTimeout(t);
    await Promise.all(sessions.map((s) => s.close()));
  }
  return phaseResult(target, c, c.lastEndAt - c.firstSentAt);
}

export interface InterleavedOptions {
  sessions: number;
  /** Measured turns per session and target (after one warm-up turn each). */
  rounds: number;
  /** A round's turns start spread evenly over this long (0 = all at once). */
  staggerMs: number;
  timeoutMs: number;
  connectConcurrency?: number;
  bodyKb?: number;
}

export interface InterleavedHooks {
  /** Around each target's measured round: e.g. the relay's CPU counter. */
  beforeRound?(target: string): Promise<void>;
  afterRound?(target: string): Promise<void>;
}

/**
 * The latency phase with the targets interleaved: K sessions open on every target at once, each
 * warmed up by one turn, then `rounds` rounds in which every target in turn (the order rotating)
 * runs one turn on each of its sessions while the others idle. Every target is so measured across
 * the same stretch of time, in slices of one turn, instead of one after the other: the machine's
 * drift from second to second, which moves the back-to-back phases apart, falls on all of them.
 */
export async function runInterleaved(targets: WsTarget[], o: InterleavedOptions, hooks: InterleavedHooks = {}): Promise<WsPhaseResult[]> {
  const tail = o.bodyKb ? codexLikeTail(o.bodyKb) : null;
  const all = targets.map((target) => ({ target, c: new Collector(), sessions: [] as BenchSession[] }));
  const limit = deadline(o.timeoutMs, () => `interleaved: ${all.map((t) => `${t.target.name} ${t.c.turns} turns`).join(', ')}`);
  const timers: NodeJS.Timeout[] = [];
  // A session that fails rejects `done`: any round waiting on it ends the run at once.
  const round = (t: (typeof all)[number], go: (s: BenchSession) => Promise<void>) =>
    Promise.race([limit.promise, staggered(t.sessions, o.staggerMs, timers, (s) => Promise.race([go(s), s.done]))]);
  try {
    for (const t of all) {
      await openSessions(t.target, o.sessions, o.connectConcurrency ?? 100, t.sessions, limit.promise, (url, headers) => new BenchSession(url, headers, STEPPED, t.c, false, tail));
      t.c.measuring = false;
      await round(t, (s) => s.step());
      t.c.measuring = true;
    }
    for (let r = 0; r < o.rounds; r++) {
      for (const t of rotate(all, r)) {
        await hooks.beforeRound?.(t.target.name);
        await round(t, (s) => s.step());
        await hooks.afterRound?.(t.target.name);
      }
    }
  } finally {
    limit.clear();
    for (const timer of timers) clearTimeout(timer);
    await Promise.all(all.flatMap((t) => t.sessions.map((s) => s.close())));
  }
  // Rounds of different targets interleave: a target's elapsed time is not one span.
  return all.map(({ target, c }) => phaseResult(target, c, Number.NaN));
}
