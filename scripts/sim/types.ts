// Public shapes of the simulated OpenAI upstream: options, per-account knobs, answers, log records.

/** What a turn answers. The default rules produce `text` or `function_call`; scripts may return any. */
export type SimAnswer =
  | { type: 'text'; text: string }
  | { type: 'function_call'; name: string; arguments?: string; callId?: string }
  /** Terminal `response.failed` after `response.created`/`in_progress` (default code `server_error`). */
  | { type: 'failed'; code?: string; message?: string }
  /** An `error` frame (WS) / HTTP error instead of a response: nothing else is sent for this turn. */
  | { type: 'error'; status: number; code: string; errorType?: string; message?: string; param?: string | null };

/** What a `script` sees for each non-warm-up turn. */
export interface SimTurnContext {
  account: string;
  /** 1-based count of the account's non-warm-up turns, this one included. */
  turn: number;
  transport: 'ws' | 'http';
  socketId: string;
  /** The parsed `response.create` frame or POST body. */
  body: Record<string, unknown>;
  /** `input` normalised to an item array (a string input becomes one user message). */
  input: Record<string, unknown>[];
  /** Text of the last input item when it is a user message, else null. */
  lastUserText: string | null;
  /** `output` of the last input item when it is a `function_call_output`, else null. */
  lastToolOutput: string | null;
}

/** Return undefined to fall through to the default rules. */
export type SimScript = (ctx: SimTurnContext) => SimAnswer | undefined;

/** Per-account behaviour. All knobs can change at run time through `sim.account(name).set({...})`. */
export interface SimKnobs {
  /** Delay between `response.in_progress` and the first output event. Default 0. */
  ttftMs: number;
  /** Number of `output_text.delta` events per text answer (exactly this many; some may be empty). Default 3. */
  deltaCount: number;
  /** Delay between consecutive deltas. Default 0. */
  deltaIntervalMs: number;
  /** Fixed answer text; null = `Hello from <account>! (turn <n>)`. */
  text: string | null;
  /** 0..1: probability that a turn ends with `response.failed` (server_error). Seeded PRNG, deterministic. */
  errorRate: number;
  /** Re-seeds the account's PRNG when set. */
  seed: number;
  /** After this many non-warm-up turns the account is rate limited (429 everywhere). null = never. */
  rateLimitAfterTurns: number | null;
  /** Seconds reported in `retry-after` / `x-ratelimit-reset-requests` on 429s. Default 7. */
  retryAfterSeconds: number;
  /** Answer Responses WS upgrades (and realtime ones unless `realtimeUpgradeStatus` is set) with this status. */
  upgradeStatus: number | null;
  /** Answer HTTP POSTs with this status and an OpenAI-style error body. */
  httpStatus: number | null;
  /** false = shorthand for upgradeStatus 426 on Responses WS (an HTTP/SSE-only account). Default true. */
  wsSupported: boolean;
  /** Drop the WS socket (or destroy the SSE response) after this many deltas. null = never. */
  closeMidStream: number | null;
  /** Close code for `closeMidStream` on WS; null = TCP destroy without a close frame (client sees 1006). */
  closeMidStreamCode: number | null;
  /** Accept the upgrade / HTTP request, then never answer any turn. */
  hang: boolean;
  /** Never answer the WS upgrade itself (exercises connect/handshake timeouts). */
  hangUpgrade: boolean;
  /** Accept the WS upgrade, then close 1011 at once. */
  closeAfterUpgrade: boolean;
  /** Reject Responses WS upgrades without `openai-beta: responses_websockets=2026-02-06` (400). Default true. */
  requireBetaHeader: boolean;
  /** Simulates OpenAI's 60-minute socket cap: error `websocket_connection_limit_reached`, then close 1000. */
  maxSocketAgeMs: number | null;
  /** A user message containing this text (case-insensitive) gets a function_call answer. Default "use the tool". */
  toolTrigger: string;
  /** Function name of the scripted call. Default "get_goal". */
  toolName: string;
  /** Arguments of the scripted call. Default "{}". */
  toolArguments: string;
  /** Per-turn rule evaluated before the defaults. */
  script: SimScript | null;
  /** Adds `sim_ts` (process.hrtime in ms, monotonic system-wide) to every turn event. */
  timestamps: boolean;
  /** Extra/overriding headers on the 101 and on HTTP responses. */
  responseHeaders: Record<string, string>;
  /** Realtime: answer the upgrade with this status (falls back to `upgradeStatus`). */
  realtimeUpgradeStatus: number | null;
  /** Realtime: send `rate_limits.updated` after every `response.done`. Default true. */
  realtimeRateLimits: boolean;
  /** Realtime: `response.output_audio.delta` events per response. Default 2. */
  realtimeAudioDeltas: number;
}

export interface SimAccountInit extends Partial<SimKnobs> {
  name: string;
  /** API key that selects this account; default `sk-sim-<name>`. */
  key?: string;
}

export interface SimOptions {
  accounts: SimAccountInit[];
  /** Default 0 (any free port). Always bound to 127.0.0.1. */
  port?: number;
  /** Serve https/wss (realtime SDK clients always use wss). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Default for every account's `timestamps` knob. */
  timestamps?: boolean;
  /** Base seed of the per-account PRNGs (mixed with the account name). Default 1. */
  seed?: number;
  /** Keep `sim.log` (default true). Benchmarks may turn it off. */
  recordLog?: boolean;
  /** Keep every response's owner for `responseOwner` (default true). Long soaks turn it off so the sim's memory stays flat. */
  rememberResponses?: boolean;
  /** Also log frames the sim sends (direction 'out'). Default false. */
  logOutgoing?: boolean;
  /** Negotiate permessage-deflate on accepted upgrades. Default false. */
  perMessageDeflate?: boolean;
}

export type SimLogKind =
  | 'ws_upgrade'
  | 'ws_frame'
  | 'ws_close'
  | 'http_request'
  | 'realtime_upgrade'
  | 'realtime_frame'
  | 'realtime_close';

export interface SimLogRecord {
  /** Position in the log, from 0. */
  seq: number;
  /** null when no account could be resolved (bad key, unknown path). */
  account: string | null;
  kind: SimLogKind;
  /** `ws-<n>` / `rt-<n>` per socket, `http-<n>` per HTTP request. */
  socketId: string;
  /** Request path and query. */
  url: string;
  /** Request (or upgrade) headers, lowercased names, arrays joined with ", ". */
  headers: Record<string, string>;
  /** 'in' = sent by the client to the sim; 'out' only with `logOutgoing`. */
  direction: 'in' | 'out';
  /** Upgrades: the status answered (101 or the refusal). HTTP: the response status. */
  status?: number;
  /** HTTP request body (parsed JSON, or the raw string when it is not JSON). */
  body?: unknown;
  /** WS text frame (parsed JSON, or the raw string when it is not JSON). */
  frame?: unknown;
  /** WS binary frame size. */
  binaryBytes?: number;
  /** Close records. */
  code?: number;
  reason?: string;
  /** Date.now() */
  at: number;
}

/** Counters per account; read them as properties of `sim.account(name)`. */
export interface SimCounters {
  /** Responses WS upgrade attempts that reached this account (refused ones included). */
  upgrades: number;
  upgradesRefused: number;
  httpRequests: number;
  /** Non-warm-up responses started (WS and HTTP). */
  turns: number;
  warmups: number;
  /** Responses currently in flight (warm-ups included: the relay holds a slot for them too). */
  inFlight: number;
  /** Highest `inFlight` ever observed. */
  maxConcurrent: number;
  /** Open Responses WS sockets. */
  openSockets: number;
  realtimeUpgrades: number;
  openRealtimeSockets: number;
  realtimeResponses: number;
  /** Times a sender paused because the peer was not reading (bufferedAmount / write() false). */
  backpressureWaits: number;
}

export interface SimResponseRecord {
  id: string;
  account: string;
  /** The socket that produced it (`http-<n>` for HTTP). */
  socketId: string;
  transport: 'ws' | 'http';
  store: boolean;
  status: 'completed' | 'failed' | 'cancelled' | 'incomplete';
  warmup: boolean;
}
