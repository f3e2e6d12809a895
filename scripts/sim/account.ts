// One simulated account: its key, its mutable knobs, its counters, its stored (store:true)
// responses and the seeded PRNG that makes `errorRate` deterministic.
import type { SimAccountInit, SimCounters, SimKnobs, SimResponseRecord } from './types.js';

export const DEFAULT_KNOBS: Readonly<SimKnobs> = Object.freeze({
  ttftMs: 0,
  deltaCount: 3,
  deltaIntervalMs: 0,
  text: null,
  errorRate: 0,
  seed: 1,
  rateLimitAfterTurns: null,
  retryAfterSeconds: 7,
  upgradeStatus: null,
  httpStatus: null,
  wsSupported: true,
  closeMidStream: null,
  closeMidStreamCode: null,
  hang: false,
  hangUpgrade: false,
  closeAfterUpgrade: false,
  requireBetaHeader: true,
  maxSocketAgeMs: null,
  toolTrigger: 'use the tool',
  toolName: 'get_goal',
  toolArguments: '{}',
  script: null,
  timestamps: false,
  responseHeaders: {},
  realtimeUpgradeStatus: null,
  realtimeRateLimits: true,
  realtimeAudioDeltas: 2,
});

export const RESPONSES_BETA = 'responses_websockets=2026-02-06';

/** mulberry32: tiny, fast, good enough for reproducible coin flips. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hashName(name: string): number {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** Something the account can abort when a test drops all its sockets. */
export interface Droppable {
  drop(code: number | null): void;
}

export class SimAccount implements SimCounters {
  readonly name: string;
  readonly key: string;
  private knobValues: SimKnobs;
  private rand: () => number;

  upgrades = 0;
  upgradesRefused = 0;
  httpRequests = 0;
  turns = 0;
  warmups = 0;
  inFlight = 0;
  maxConcurrent = 0;
  openSockets = 0;
  realtimeUpgrades = 0;
  openRealtimeSockets = 0;
  realtimeResponses = 0;
  backpressureWaits = 0;

  /** store:true responses, resolvable from any socket or HTTP request of this account. */
  readonly stored = new Map<string, SimResponseRecord>();
  /** Live sockets, so tests can drop them. */
  readonly sockets = new Set<Droppable>();

  constructor(init: SimAccountInit, baseSeed: number, timestamps: boolean) {
    this.name = init.name;
    this.key = init.key ?? `sk-sim-${init.name}`;
    const { name: _name, key: _key, ...knobs } = init;
    this.knobValues = { ...DEFAULT_KNOBS, timestamps, seed: (baseSeed ^ hashName(init.name)) >>> 0, ...knobs };
    this.rand = mulberry32(this.knobValues.seed);
  }

  get knobs(): Readonly<SimKnobs> {
    return this.knobValues;
  }

  /** Changes knobs at run time; they apply from the next decision that reads them. */
  set(patch: Partial<SimKnobs>): this {
    this.knobValues = { ...this.knobValues, ...patch };
    if (patch.seed !== undefined) this.rand = mulberry32(patch.seed);
    return this;
  }

  /** Zeroes the counters (not `inFlight`/open sockets, which describe live state). */
  resetCounters(): this {
    this.upgrades = 0;
    this.upgradesRefused = 0;
    this.httpRequests = 0;
    this.turns = 0;
    this.warmups = 0;
    this.maxConcurrent = this.inFlight;
    this.realtimeUpgrades = 0;
    this.realtimeResponses = 0;
    this.backpressureWaits = 0;
    return this;
  }

  /** Closes every live socket of the account (null = TCP drop, as a dying upstream would). */
  dropSockets(code: number | null = null): void {
    for (const s of [...this.sockets]) s.drop(code);
  }

  rateLimited(): boolean {
    const n = this.knobValues.rateLimitAfterTurns;
    return n !== null && this.turns >= n;
  }

  /** Status to refuse a Responses WS upgrade with, or null to accept it. */
  wsRefusal(): number | null {
    if (this.knobValues.upgradeStatus !== null) return this.knobValues.upgradeStatus;
    if (!this.knobValues.wsSupported) return 426;
    return null;
  }

  realtimeRefusal(): number | null {
    return this.knobValues.realtimeUpgradeStatus ?? this.knobValues.upgradeStatus;
  }

  /** One draw per turn, in turn order: deterministic for a given seed and sequence of turns. */
  shouldFail(): boolean {
    const rate = this.knobValues.errorRate;
    if (rate <= 0) return false;
    return this.rand() < rate;
  }

  turnStarted(warmup: boolean): void {
    if (warmup) this.warmups++;
    else this.turns++;
    this.inFlight++;
    if (this.inFlight > this.maxConcurrent) this.maxConcurrent = this.inFlight;
  }

  turnEnded(): void {
    this.inFlight--;
  }

  /** Headers on the 101 and on HTTP responses, so the relay's pass-through can be checked. */
  responseHeaders(requestId: string, model: string | null): Record<string, string> {
    const h: Record<string, string> = {
      'x-request-id': requestId,
      'x-codex-turn-state': `sim-turn-state-${this.name}`,
      'x-models-etag': `sim-models-etag-${this.name}`,
      // A client's model name is echoed only when it is a valid header value (fuzzed names are not).
      'openai-model': model !== null && /^[\x21-\x7e]{1,200}$/.test(model) ? model : 'gpt-5.5',
      'x-reasoning-included': 'true',
      'openai-processing-ms': '1',
    };
    const limit = this.knobValues.rateLimitAfterTurns;
    if (limit !== null) {
      h['x-ratelimit-limit-requests'] = String(limit);
      h['x-ratelimit-remaining-requests'] = String(Math.max(0, limit - this.turns));
      h['x-ratelimit-reset-requests'] = `${this.knobValues.retryAfterSeconds}s`;
    }
    return { ...h, ...this.knobValues.responseHeaders };
  }
}
