// The simulated OpenAI upstream: one node:http(s) server on 127.0.0.1 serving several fake
// accounts (by API key, or by `/acct/<name>` path prefix) over Responses WS, HTTP/SSE and Realtime.
// Used by tests, the demo and benchmarks; tests steer it through knobs and read `sim.log`.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { SimAccount } from './account.js';
import { handleRealtimeUpgrade } from './realtime.js';
import { handleResponsesPost, sendJson } from './responses-http.js';
import { handleResponsesUpgrade, type Accept } from './responses-ws.js';
import { bearer, resolveAccount, SimState } from './state.js';
import type { SimLogKind, SimLogRecord, SimOptions, SimResponseRecord } from './types.js';
import { errorForStatus, lowerHeaders, missingKey, newId, parseJson, refuseUpgrade, type ApiError } from './wire.js';

export type { SimAccount } from './account.js';
export type * from './types.js';

export interface SimUpstream {
  /** `http://127.0.0.1:PORT` (https with TLS). */
  readonly url: string;
  readonly port: number;
  /** Everything clients sent, in arrival order (empty when `recordLog` is false). */
  readonly log: SimLogRecord[];
  /** The account's knobs (`set`), counters and key. Throws on an unknown name. */
  account(name: string): SimAccount;
  accounts(): SimAccount[];
  /** `http://127.0.0.1:PORT/acct/<name>/v1`: a baseUrl that selects the account by path. */
  baseUrlFor(name: string): string;
  /** Inbound text frames per socket id (Responses WS by default, or realtime). */
  framesBySocket(filter?: { account?: string; realtime?: boolean }): Map<string, unknown[]>;
  /** Which account/socket produced a response id. */
  responseOwner(id: string): SimResponseRecord | undefined;
  /** Resolves with the first record (past or future) matching `pred`; rejects after `timeoutMs`. */
  waitForLog(pred: (r: SimLogRecord) => boolean, timeoutMs?: number): Promise<SimLogRecord>;
  /** Sends an arbitrary server event on a live socket (e.g. `rate_limits.updated`, an `error`). */
  inject(socketId: string, frame: Record<string, unknown>): void;
  /** Closes one live socket: a close code, or null for a TCP drop. */
  dropSocket(socketId: string, code?: number | null): void;
  /** Ids of the live sockets (both protocols), optionally of one account. */
  liveSockets(account?: string): string[];
  clearLog(): void;
  /** Terminates every socket and stops listening. */
  close(): Promise<void>;
}

const ROUTE = /^(?:\/acct\/([^/]+))?(?:\/v1)?\/(responses|realtime)\/?$/;
const MAX_BODY_BYTES = 64 * 1024 * 1024;
const KEY_PROTOCOL = 'openai-insecure-api-key.';

interface Route {
  endpoint: 'responses' | 'realtime';
  pathAccount: string | null;
  query: URLSearchParams;
}

function route(rawUrl: string | undefined): Route | null {
  const u = new URL(rawUrl ?? '/', 'http://sim.invalid');
  const m = ROUTE.exec(u.pathname);
  if (!m) return null;
  return { endpoint: m[2] as Route['endpoint'], pathAccount: m[1] ? decodeURIComponent(m[1]) : null, query: u.searchParams };
}

function protocolKey(headers: Record<string, string>): string | null {
  const offered = (headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
  const p = offered.find((x) => x.startsWith(KEY_PROTOCOL));
  return p ? p.slice(KEY_PROTOCOL.length) : null;
}

function authError(reason: 'unknown_account' | 'missing_key' | 'bad_key', method: string, url: string): ApiError {
  if (reason === 'missing_key') return missingKey();
  if (reason === 'bad_key') return errorForStatus(401, method, url);
  return { ...errorForStatus(404, method, url), message: `Unknown simulated account in ${url}` };
}

function readBody(req: IncomingMessage): Promise<string | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        resolve(null);
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => resolve(null));
  });
}

export async function startSimUpstream(opts: SimOptions): Promise<SimUpstream> {
  const accounts = new Map<string, SimAccount>();
  for (const init of opts.accounts) {
    if (accounts.has(init.name)) throw new Error(`duplicate sim account name: ${init.name}`);
    accounts.set(init.name, new SimAccount(init, opts.seed ?? 1, opts.timestamps ?? false));
  }
  const state = new SimState(accounts, opts.recordLog ?? true, opts.logOutgoing ?? false, opts.rememberResponses ?? true);
  const hungSockets = new Set<Duplex>();
  const hungResponses = new Set<ServerResponse>();

  // The 101 pass-through headers differ per account: stash them per request for the 'headers' hook.
  const upgradeHeaders = new WeakMap<IncomingMessage, Record<string, string>>();
  const makeWss = (realtime: boolean): WebSocketServer => {
    const wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: opts.perMessageDeflate ?? false,
      // Browser-style realtime clients offer `realtime` plus the key protocol: echo a real one.
      handleProtocols: realtime
        ? (protocols) => {
            const list = [...protocols];
            return list.find((p) => p === 'realtime') ?? list.find((p) => !p.startsWith(KEY_PROTOCOL)) ?? list[0] ?? false;
          }
        : undefined,
    });
    wss.on('headers', (headers, req) => {
      for (const [k, v] of Object.entries(upgradeHeaders.get(req) ?? {})) headers.push(`${k}: ${v}`);
    });
    return wss;
  };
  const responsesWss = makeWss(false);
  const realtimeWss = makeWss(true);
  const acceptWith =
    (wss: WebSocketServer): Accept =>
    (req, socket, head, headers) =>
      new Promise<WebSocket>((resolve) => {
        upgradeHeaders.set(req, headers);
        wss.handleUpgrade(req, socket, head, resolve);
      });

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    void serveHttp(req, res).catch(() => {
      if (!res.headersSent) sendJson(res, 500, { error: errorForStatus(500, req.method ?? 'GET', req.url ?? '/') }, {});
      else res.destroy();
    });
  };

  const serveHttp = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '/';
    const method = req.method ?? 'GET';
    const r = route(url);
    if (!r || r.endpoint !== 'responses' || method !== 'POST') {
      sendJson(res, 404, { error: errorForStatus(404, method, url) }, { 'x-request-id': newId('req') });
      return;
    }
    const headers = lowerHeaders(req.headers);
    const text = await readBody(req);
    if (text === null) {
      sendJson(res, 413, { error: { message: 'Request body too large.', type: 'invalid_request_error', code: null, param: null } }, {});
      return;
    }
    const parsed = parseJson(text);
    const body = parsed.ok ? parsed.value : text;
    const resolved = resolveAccount(state, r.pathAccount, bearer(headers.authorization));
    if (resolved.refusal || !resolved.account) {
      const status = resolved.refusal?.status ?? 401;
      const rec = state.record({
        account: resolved.account?.name ?? null,
        kind: 'http_request',
        socketId: state.nextSocketId('http'),
        url,
        headers,
        direction: 'in',
        body,
      });
      if (rec) rec.status = status;
      sendJson(res, status, { error: authError(resolved.refusal?.reason ?? 'bad_key', method, url) }, { 'x-request-id': newId('req') });
      return;
    }
    await handleResponsesPost({ state, account: resolved.account, res, url, headers, body, bodyIsJson: parsed.ok, hung: hungResponses });
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => undefined);
    const url = req.url ?? '/';
    const headers = lowerHeaders(req.headers);
    const r = route(url);
    if (!r || req.method !== 'GET' || (headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      refuseUpgrade(socket, 404, errorForStatus(404, req.method ?? 'GET', url), {});
      return;
    }
    const realtime = r.endpoint === 'realtime';
    const key = bearer(headers.authorization) ?? (realtime ? protocolKey(headers) : null);
    const resolved = resolveAccount(state, r.pathAccount, key);
    if (resolved.refusal || !resolved.account) {
      const status = resolved.refusal?.status ?? 401;
      const kind: SimLogKind = realtime ? 'realtime_upgrade' : 'ws_upgrade';
      const socketId = state.nextSocketId(realtime ? 'rt' : 'ws');
      state.record({ account: resolved.account?.name ?? null, kind, socketId, url, headers, direction: 'in', status });
      refuseUpgrade(socket, status, authError(resolved.refusal?.reason ?? 'bad_key', 'GET', url), { 'x-request-id': newId('req') });
      return;
    }
    const ctx = { state, account: resolved.account, req, socket, head, url, headers, hung: hungSockets };
    if (realtime) handleRealtimeUpgrade({ ...ctx, accept: acceptWith(realtimeWss), query: r.query });
    else handleResponsesUpgrade({ ...ctx, accept: acceptWith(responsesWss) });
  };

  const server: Server = opts.tls
    ? (createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, onRequest) as unknown as Server)
    : createHttpServer(onRequest);
  server.on('upgrade', onUpgrade);
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;

  const get = (name: string): SimAccount => {
    const a = accounts.get(name);
    if (!a) throw new Error(`unknown sim account: ${name}`);
    return a;
  };

  return {
    url,
    port,
    log: state.log,
    account: get,
    accounts: () => [...accounts.values()],
    baseUrlFor: (name) => `${url}/acct/${encodeURIComponent(get(name).name)}/v1`,
    framesBySocket(filter = {}) {
      const kind: SimLogKind = filter.realtime ? 'realtime_frame' : 'ws_frame';
      const out = new Map<string, unknown[]>();
      for (const r of state.log) {
        if (r.kind !== kind || r.direction !== 'in' || r.frame === undefined) continue;
        if (filter.account !== undefined && r.account !== filter.account) continue;
        const list = out.get(r.socketId) ?? [];
        list.push(r.frame);
        out.set(r.socketId, list);
      }
      return out;
    },
    responseOwner: (id) => state.responses.get(id),
    waitForLog(pred, timeoutMs = 5000) {
      const hit = state.log.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const onRecord = (r: SimLogRecord): void => {
          if (!pred(r)) return;
          clearTimeout(timer);
          state.events.off('record', onRecord);
          resolve(r);
        };
        const timer = setTimeout(() => {
          state.events.off('record', onRecord);
          reject(new Error(`sim: no matching log record within ${timeoutMs} ms`));
        }, timeoutMs);
        state.events.on('record', onRecord);
      });
    },
    inject(socketId, frame) {
      const s = state.sockets.get(socketId);
      if (!s) throw new Error(`sim: no live socket ${socketId}`);
      s.send(frame);
    },
    dropSocket(socketId, code = null) {
      state.sockets.get(socketId)?.drop(code);
    },
    liveSockets: (account) => [...state.sockets.values()].filter((s) => account === undefined || s.account === account).map((s) => s.socketId),
    clearLog: () => {
      state.log.length = 0;
    },
    async close() {
      for (const s of [...state.sockets.values()]) s.drop(null);
      for (const ws of [...responsesWss.clients, ...realtimeWss.clients]) ws.terminate();
      for (const s of hungSockets) s.destroy();
      for (const r of hungResponses) r.destroy();
      responsesWss.close();
      realtimeWss.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
