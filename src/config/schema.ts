// The one config schema: every option, its default and its bound live here (SPEC §2).
// Pure data: nothing in this file reads the environment or the file system.
// Every field carries a `.describe()` text: docs/CONFIG.md is generated from them
// (scripts/gen-config-doc.ts), and a test fails when the doc is out of date.
// Every schema states its own error message, so no library wording reaches operators.
// `typeLabel` metadata names a type in the doc where the JSON Schema form would be cryptic.
import { z } from 'zod';

const positiveInt = (what = 'a positive integer') =>
  z.number({ error: `must be ${what}` }).int({ error: `must be ${what}` }).positive({ error: `must be ${what}` });
const nonNegativeInt = () =>
  z.number({ error: 'must be a non-negative integer' })
    .int({ error: 'must be a non-negative integer' })
    .min(0, { error: 'must be a non-negative integer' });
const timeoutMs = (def: number) => positiveInt('a positive number of milliseconds').default(def);
const weight = (def: number) =>
  z.number({ error: 'must be a finite number >= 0' })
    .min(0, { error: 'must be a finite number >= 0' })
    .refine(Number.isFinite, { error: 'must be a finite number >= 0' })
    .default(def);
const nonEmpty = (what: string) => z.string({ error: `must be ${what}` }).min(1, { error: `must be ${what}` });
const bool = () => z.boolean({ error: 'must be true or false' });
const mapping = <S extends z.core.$ZodLooseShape>(shape: S) => z.strictObject(shape, { error: 'must be a mapping' });

const httpUrl = z
  .string({ error: 'must be an http(s) URL' })
  .refine((s) => {
    try {
      const u = new URL(s);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  }, { error: 'must be an http(s) URL' })
  .meta({ typeLabel: 'http(s) URL' });

export const waitSchema = (timeout: number, maxWaiting: number) =>
  mapping({
    timeoutMs: timeoutMs(timeout).describe('How long a turn may queue for a slot before it is refused (HTTP 429 / WS close 1013).'),
    maxWaiting: nonNegativeInt().default(maxWaiting).describe('Waiters allowed per account; a full queue refuses at once.'),
  }).prefault({});

export const accountSchema = mapping({
  id: nonEmpty('a non-empty string').describe('Stable account id, unique across accounts; used in metrics, logs and the admin API.'),
  group: nonEmpty('a non-empty string').default('default').describe('Pool this account serves; clients of the same group are scheduled on it.'),
  kind: z.enum(['apikey', 'oauth'], { error: 'must be one of apikey, oauth' }).default('apikey').describe('Kind of upstream credential.'),
  baseUrl: httpUrl.describe('Upstream API base, http(s). The WebSocket URL is derived: https->wss, http->ws, plus /responses.'),
  /** Bearer credential sent upstream. `env:NAME` is resolved by the loader before validation. */
  apiKey: nonEmpty('a non-empty string (or env:NAME)').describe('Bearer credential sent upstream; never logged. Secret: `env:NAME` allowed.'),
  priority: z.number({ error: 'must be an integer' }).int({ error: 'must be an integer' }).default(1).describe('Lower number = preferred by the load-balance score.'),
  concurrency: positiveInt().default(4).describe('Turns in flight at once on this account (slots).'),
  models: z.array(nonEmpty('a non-empty string'), { error: 'must be a list of model names' })
    .min(1, { error: 'must list at least one model (or be omitted)' })
    .optional()
    .describe('Models this account serves; absent = all models.'),
  transport: z.enum(['auto', 'http'], { error: 'must be one of auto, http' }).default('auto')
    .describe('`auto`: WebSocket upstream unless found unsupported at run time; `http`: always HTTP/SSE.'),
  enabled: bool().default(true).describe('false: never scheduled (the admin API can enable it at run time).'),
});

export const clientSchema = z
  .strictObject({
    /** Plain gateway key (`env:NAME` allowed). Either key or keySha256 is required. */
    key: nonEmpty('a non-empty string (or env:NAME)').optional()
      .describe('Gateway API key clients present as `Authorization: Bearer <key>`. Secret: `env:NAME` allowed. Exactly one of key, keySha256.'),
    /** Hex SHA-256 of the key, so the config need not hold the key itself. */
    keySha256: z.string({ error: 'must be 64 hex characters' }).regex(/^[0-9a-fA-F]{64}$/, { error: 'must be 64 hex characters' })
      .meta({ typeLabel: '64 hex characters' })
      .optional()
      .describe('Hex SHA-256 of the key, so the config need not hold the key itself. Exactly one of key, keySha256.'),
    name: z.string({ error: 'must be a string' }).optional().describe('Label for logs and the admin API.'),
    group: nonEmpty('a non-empty string').default('default').describe('Account group this key is scheduled on; at least one account must be in it.'),
    maxConnections: nonNegativeInt().default(64).describe('Live WebSocket sessions allowed for this key (0 = unlimited).'),
  }, { error: 'must be a mapping' })
  // Runs even when another field of the client is invalid, so every problem is reported at once.
  .refine((c) => (c.key === undefined) !== (c.keySha256 === undefined), {
    error: (iss) => {
      const c = iss.input as { key?: unknown; keySha256?: unknown };
      return c.key !== undefined ? 'give only one of key, keySha256' : 'one of key, keySha256 is required';
    },
    when: (payload) => typeof payload.value === 'object' && payload.value !== null,
  });

export const weightsSchema = mapping({
  priority: weight(1.0).describe('Weight of the account priority term.'),
  load: weight(1.0).describe('Weight of the free-slots term (1 - loadRate/100).'),
  queue: weight(0.7).describe('Weight of the short-queue term (1 - waiting/maxWaiting).'),
  errorRate: weight(0.8).describe('Weight of the error-rate term (1 - error EWMA).'),
  ttft: weight(0.5).describe('Weight of the time-to-first-token term.'),
}).prefault({});

export const schedulerSchema = mapping({
  topK: positiveInt().default(7).describe('Load balance keeps this many best-scored accounts, then picks among them by weighted random.'),
  weights: weightsSchema.describe('Load-balance score weights; finite, >= 0, with a positive sum.'),
  stickySessionTtlSeconds: positiveInt().default(3600).describe('Lifetime of a session -> account binding; every hit refreshes it.'),
  responseBindingTtlSeconds: positiveInt().default(3600).describe('Lifetime of a response id -> account binding (previous_response_id routing). Only responses of store:true requests are bound: a store:false one can be chained on its own upstream socket alone.'),
  stickyWait: waitSchema(45_000, 3).describe('Queueing on a busy sticky account.'),
  fallbackWait: waitSchema(30_000, 100).describe('Queueing on the load-balance pick when no account has a free slot.'),
  stickyEscape: mapping({
    errorRate: z.number({ error: 'must be a number in [0,1]' }).min(0).max(1, { error: 'must be a number in [0,1]' }).default(0.5)
      .describe('A sticky account whose error-rate EWMA is above this is escaped.'),
    ttftMs: positiveInt('a positive number of milliseconds').default(15_000)
      .describe('A sticky account whose TTFT EWMA (ms) is above this is escaped.'),
  }).prefault({}).describe('When a sticky account is unhealthy enough to leave it for the load-balance pick.'),
  maxAccountSwitches: nonNegativeInt().default(3).describe('Failovers to another account allowed per turn before it fails.'),
  /** Runtime stats of an account with no samples for this long decay halfway to neutral. */
  statsHalfLifeMs: timeoutMs(600_000).describe('Runtime stats of an account with no samples for this long decay halfway to neutral.'),
  cooldown: mapping({
    /** 429 without a usable reset header. */
    rateLimitMs: timeoutMs(60_000).describe('Cooldown after a 429 without a usable reset header.'),
    /** 5xx, connect errors, server error events. */
    serverErrorMs: timeoutMs(10_000).describe('Cooldown after a 5xx, a connect error or a server error event.'),
    /** Upgrade answered 426/404/405 or websocket_not_supported: resolve to http this long. */
    wsUnsupportedMs: timeoutMs(600_000).describe('After an upstream refuses WebSocket (426/404/405, websocket_not_supported) the account resolves to http this long.'),
  }).prefault({}).describe('How long a failing account is left out.'),
}).prefault({});

export const websocketSchema = mapping({
  enabled: bool().default(true).describe('false: every account resolves to HTTP/SSE and client upgrades are answered 426.'),
  httpFallback: bool().default(true).describe('WebSocket clients may be served over HTTP/SSE upstream (bridged) when no WebSocket account can serve them.'),
  firstMessageTimeoutMs: timeoutMs(30_000).describe('The first client frame must arrive within this long.'),
  idleTimeoutMs: timeoutMs(300_000).describe('A session with no traffic for this long is closed with 1000. A realtime session is checked in eighths of it: closed 1–1⅛ × this after its last frame either way.'),
  maxMessageBytes: positiveInt().default(16 * 1024 * 1024).describe('Largest client frame accepted; larger closes with 1009.'),
  /** Upstream WebSocket connect + handshake deadline. */
  upstreamConnectTimeoutMs: timeoutMs(15_000).describe('Upstream WebSocket connect + handshake deadline.'),
  /** Bytes buffered towards a slow client before the upstream socket is paused. */
  maxBufferedBytes: positiveInt().default(4 * 1024 * 1024).describe('Bytes buffered towards a slow client before the upstream socket is paused.'),
  /** Bridge transcript bound per session (bytes of JSON); older items are dropped past it. */
  maxTranscriptBytes: positiveInt().default(32 * 1024 * 1024).describe('HTTP bridge transcript bound per session (bytes of JSON); older items are dropped past it.'),
  /** Codex's stream_idle_timeout: a hung upstream must not hold a session and a slot forever. */
  upstreamIdleTimeoutMs: timeoutMs(300_000).describe('A WebSocket turn whose upstream sends nothing for this long ends with an `upstream_timeout` error frame; the upstream socket is closed and the slot released. Checked in eighths of it: the cut comes between 1 and 1⅛ × this after the last upstream event.'),
}).prefault({});

export const httpSchema = mapping({
  maxBodyBytes: positiveInt().default(16 * 1024 * 1024).describe('Largest HTTP request body accepted (413 above).'),
  /** Deadline for upstream response headers. */
  upstreamHeadersTimeoutMs: timeoutMs(60_000).describe('Deadline for upstream response headers.'),
  /** Gap allowed between upstream body chunks (SSE). */
  upstreamBodyTimeoutMs: timeoutMs(300_000).describe('Gap allowed between upstream body chunks (SSE).'),
  /** SSE comment keep-alive interval while a streaming request waits for a slot. */
  keepAliveIntervalMs: timeoutMs(10_000).describe('SSE comment keep-alive interval while a streaming request waits for a slot.'),
  /** Client request headers deadline (slowloris guard). */
  requestHeadersTimeoutMs: timeoutMs(15_000).describe('Client request headers deadline (slowloris guard).'),
  /** Whole-request deadline once headers are in (a body trickled byte by byte); responses are not bounded by it. */
  requestBodyTimeoutMs: timeoutMs(60_000).describe('Client request body deadline, counted from the start of the request (slowloris guard); streamed responses are not bounded by it.'),
  /** Read once at start: node:http fixes it when the listener is created. */
  maxHeaderBytes: positiveInt().default(64 * 1024).describe('Largest request head (request line + headers) accepted; larger is answered 431. Read at start only.'),
}).prefault({});

export const authSchema = mapping({
  failureLimit: nonNegativeInt().default(20)
    .describe('Failed authentications (client or admin key) one address may make within failureWindowMs before it is refused with 429 for blockMs; 0 = no throttling. Behind a load balancer every client shares its address: raise or disable.'),
  failureWindowMs: timeoutMs(60_000).describe('Window over which failed authentications of one address are counted.'),
  blockMs: timeoutMs(300_000).describe('How long a throttled address is refused (429, before any key is checked, so a right key is refused too).'),
  maxTrackedAddresses: positiveInt().default(10_000).describe('Addresses tracked for throttling at most; the least recently failed are forgotten first.'),
}).prefault({});

export const storeSchema = z
  .discriminatedUnion('kind', [
    mapping({ kind: z.literal('memory').describe('In-process store: one relay instance.') }),
    mapping({
      kind: z.literal('redis').describe('Redis store: slots, bindings and account flags shared by every instance.'),
      url: z.string({ error: 'must be a redis:// URL' }).regex(/^rediss?:\/\//, { error: 'must be a redis:// URL' })
        .meta({ typeLabel: 'redis:// or rediss:// URL' })
        .describe('Where the Redis server is.'),
      keyPrefix: z.string({ error: 'must be a string' }).default('sy:').describe('Prefix of every Redis key, so instances of different deployments can share one Redis.'),
      /** Every store call gives up after this long (degraded mode takes over). */
      commandTimeoutMs: timeoutMs(500).describe('Every store call gives up after this long (degraded mode takes over).'),
    }),
  ], {
    // The union also reports a non-object input through this map (typed as union issues only).
    error: (iss) => (iss.code === 'invalid_union' ? 'must be one of memory, redis' : 'must be a mapping with kind: memory or redis'),
  })
  .prefault({ kind: 'memory' });

export const leasesSchema = mapping({
  /** A slot lease not renewed for this long is free again (a crashed instance's slots). */
  ttlMs: timeoutMs(30_000).describe("A slot lease not renewed for this long is free again (a crashed instance's slots)."),
  /** How often an instance renews its own leases. Must be well under ttlMs. */
  renewIntervalMs: timeoutMs(10_000).describe('How often an instance renews its own leases; must be less than ttlMs.'),
}).prefault({});

export const configSchema = mapping({
  listen: mapping({
    host: z.string({ error: 'must be a host name or address' }).default('127.0.0.1').describe('Address to listen on.'),
    port: z.number({ error: 'must be a port number 0-65535' })
      .int({ error: 'must be a port number 0-65535' })
      .min(0, { error: 'must be a port number 0-65535' })
      .max(65535, { error: 'must be a port number 0-65535' })
      .default(8080)
      .describe('TCP port; 0 = pick a free port and log it.'),
    tls: mapping({
      cert: nonEmpty('a file path').describe('PEM certificate chain file.'),
      key: nonEmpty('a file path').describe('PEM private key file.'),
    }).optional().describe('Serve https/wss (Realtime SDK clients always use wss); absent = plain http/ws.'),
  }).prefault({}).describe('Where clients connect.'),
  store: storeSchema.describe('Where shared state lives: `{ kind: memory }` or `{ kind: redis, url, ... }`.'),
  leases: leasesSchema.describe('Concurrency slot leases (crash safety across instances).'),
  adminKey: nonEmpty('a non-empty string (or env:NAME)').optional()
    .describe('Bearer key guarding /admin/*; absent = admin API off. Secret: `env:NAME` allowed.'),
  clients: z.array(clientSchema, { error: 'must be a list of client keys' }).min(1, { error: 'must list at least one client key' })
    .describe('Gateway API keys that clients present.'),
  accounts: z.array(accountSchema, { error: 'must be a list of accounts' }).min(1, { error: 'must list at least one account' })
    .describe('Upstream OpenAI accounts.'),
  scheduler: schedulerSchema.describe('Per-turn account selection (SPEC §5).'),
  websocket: websocketSchema.describe('Client and upstream WebSocket sessions (SPEC §6).'),
  http: httpSchema.describe('HTTP Responses requests and upstream HTTP/SSE.'),
  auth: authSchema.describe('Throttling of repeated authentication failures per client address (IPv6 per /64).'),
  shutdownGraceMs: timeoutMs(30_000).describe('On SIGTERM/SIGINT, in-flight turns may finish for this long.'),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
    error: 'must be one of fatal, error, warn, info, debug, trace, silent',
  }).default('info').describe('pino log level.'),
});

/** The validated, defaulted, frozen config every module receives. */
export type Config = z.output<typeof configSchema>;
export type AccountConfig = Config['accounts'][number];
export type ClientConfig = Config['clients'][number];
export type SchedulerConfig = Config['scheduler'];
export type WebsocketConfig = Config['websocket'];
export type StoreConfig = Config['store'];
