// Shell: the one HTTP(S) listener (SPEC §3). Routes plain requests, authenticates and admits
// WebSocket upgrades before any upgrade happens, and owns the set of live client sessions.
import http, { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { RelayError, toHttpError } from '../errors.js';
import { newSessionId } from '../session/ids.js';
import { ResponsesSession, type SessionDeps } from '../session/session.js';
import type { HttpUpstream } from '../upstream/http-sse-upstream.js';
import { sessionHeaders } from '../upstream/target.js';
import { KEY_SUBPROTOCOL_PREFIX, type ClientAuth, type ClientIdentity } from './auth.js';
import { AuthThrottle, throttleKey } from './auth-throttle.js';
import { pickRelayCore, type RelayCore } from '../session/core.js';

export type RequestHandler = (req: IncomingMessage, res: ServerResponse, client: ClientIdentity) => Promise<void>;
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer, client: ClientIdentity) => void;

export interface IngressDeps extends RelayCore {
  auth(): ClientAuth;
  /** { ready, degraded } for /readyz. */
  readiness(): { ready: boolean; degraded: boolean; reason?: string };
  metrics?: () => Promise<{ contentType: string; body: string }>;
  /** POST /v1/responses (authenticated). */
  httpResponses?: RequestHandler;
  /** /admin/* (does its own admin-key check). */
  admin?: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  /** GET /v1/realtime upgrade (authenticated). */
  realtime?: UpgradeHandler;
  /** HTTP/SSE upstream for bridged WebSocket turns; absent = no bridging. */
  upstream?: HttpUpstream;
}

const RESPONSES_PATHS = new Set(['/v1/responses', '/responses']);
const REALTIME_PATHS = new Set(['/v1/realtime', '/realtime']);

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, err: unknown): void {
  const e = toHttpError(err);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = {};
  if (e.retryAfterMs !== undefined) headers['retry-after'] = String(Math.max(1, Math.ceil(e.retryAfterMs / 1000)));
  sendJson(res, e.status, e.body, headers);
}

/** Answers an upgrade request with a plain HTTP error (no WebSocket is ever opened). */
export function rejectUpgrade(socket: Duplex, err: RelayError): void {
  const e = toHttpError(err);
  const body = JSON.stringify(e.body);
  const extra = e.retryAfterMs !== undefined ? `Retry-After: ${Math.max(1, Math.ceil(e.retryAfterMs / 1000))}\r\n` : '';
  if (!socket.writable) return void socket.destroy();
  socket.end(
    `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? ''}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`,
  );
}

/** The subprotocol to echo: `realtime` when offered, else any offered one that does not carry a key. */
export function chooseSubprotocol(offered: Set<string>): string | false {
  if (offered.has('realtime')) return 'realtime';
  for (const p of offered) if (!p.startsWith(KEY_SUBPROTOCOL_PREFIX)) return p;
  // Only the key protocol was offered: echoing it is required for the client to accept the socket.
  for (const p of offered) return p;
  return false;
}

export class HttpIngress {
  readonly server: http.Server;
  readonly wss: WebSocketServer;
  readonly sessions = new Set<ResponsesSession>();
  private readonly perKey = new Map<string, number>();
  private readonly throttle: AuthThrottle;
  private draining = false;
  /** What every WebSocket session is given: one object for all of them (it holds no session's state). */
  private readonly sessionDeps: SessionDeps;
  private httpInFlight = 0;
  private httpIdleWaiters: Array<() => void> = [];

  constructor(private readonly deps: IngressDeps, tls?: { cert: Buffer; key: Buffer }) {
    const cfg = deps.config();
    const headersTimeout = cfg.http.requestHeadersTimeoutMs;
    const opts: http.ServerOptions = {
      headersTimeout,
      // Bounds receiving the request only (a trickled body), not a streamed response; node:http
      // refuses a request deadline shorter than the headers one.
      requestTimeout: Math.max(cfg.http.requestBodyTimeoutMs, headersTimeout),
      // node:http checks both deadlines on this interval (default 30 s): keep the cut-off close to them.
      connectionsCheckingInterval: Math.min(1_000, Math.max(100, Math.floor(headersTimeout / 4))),
      keepAliveTimeout: 65_000,
      maxHeaderSize: cfg.http.maxHeaderBytes,
    };
    this.throttle = new AuthThrottle(() => deps.config().auth, () => deps.clock.now());
    this.sessionDeps = this.newSessionDeps();
    this.server = tls ? https.createServer({ ...opts, cert: tls.cert, key: tls.key }) : http.createServer(opts);
    this.wss = new WebSocketServer({
      noServer: true,
      // Twice the frame limit, so a frame just over it still gets its error frame before 1009;
      // beyond this `ws` itself closes with 1009.
      maxPayload: cfg.websocket.maxMessageBytes * 2,
      perMessageDeflate: false,
      handleProtocols: chooseSubprotocol,
    });
    this.server.on('request', (req, res) => this.serverOnRequest(req, res));
    this.server.on('upgrade', (req, socket, head) => this.serverOnUpgrade(req, socket, head));
    this.server.on('clientError', (err: Error & { code?: string }, socket) => {
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      if (socket.writable) socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\n\r\n`);
      else socket.destroy();
    });
  }

  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const a = this.server.address();
        resolve({ host, port: typeof a === 'object' && a ? a.port : port });
      });
    });
  }

  /** Stop accepting: new requests and upgrades get 503 from now on. */
  startDraining(): void {
    this.draining = true;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Closes the listener and every remaining client socket (1001). */
  /** Resolves when no HTTP Responses request is in flight (graceful drain). */
  whenHttpIdle(): Promise<void> {
    if (this.httpInFlight === 0) return Promise.resolve();
    return new Promise((r) => this.httpIdleWaiters.push(r));
  }

  /**
   * Closes every client socket with 1001 and the listener. Clients get `closeHandshakeMs` to
   * answer the close frame; whoever has not by then is cut, so shutdown never waits on a peer.
   */
  async close(closeHandshakeMs = 2000): Promise<void> {
    for (const s of this.sessions) s.close(1001, 'shutting down');
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    this.server.closeIdleConnections();
    const deadline = Date.now() + closeHandshakeMs;
    while (this.sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.sessions) s.terminate();
    this.server.closeAllConnections();
    await closed;
  }

  private serverOnRequest(req: IncomingMessage, res: ServerResponse): void {
    this.route(req, res).catch((err: unknown) => {
      this.deps.log.error({ err: err instanceof Error ? err.message : String(err), path: req.url?.split('?')[0] }, 'request failed');
      sendError(res, err);
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const d = this.deps;
    if (path === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (path === '/readyz') {
      const r = d.readiness();
      if (this.draining || !r.ready) return sendJson(res, 503, { status: this.draining ? 'draining' : 'loading' });
      return sendJson(res, 200, r.degraded ? { status: 'degraded', reason: r.reason ?? 'store unreachable' } : { status: 'ready' });
    }
    if (path === '/metrics' && d.metrics) {
      const m = await d.metrics();
      res.writeHead(200, { 'content-type': m.contentType });
      return void res.end(m.body);
    }
    if (path.startsWith('/admin/') && d.admin) {
      const wait = this.throttle.blockedFor(req.socket.remoteAddress);
      if (wait !== null) return sendError(res, new RelayError('SY_ERR_AUTH_THROTTLED', undefined, wait));
      res.once('finish', () => {
        if (res.statusCode === 401) this.authFailed(req);
      });
      return d.admin(req, res);
    }
    if (RESPONSES_PATHS.has(path) && d.httpResponses) {
      if (req.method !== 'POST') return sendError(res, new RelayError('SY_ERR_METHOD_NOT_ALLOWED'));
      if (this.draining) return sendError(res, new RelayError('SY_ERR_SHUTTING_DOWN'));
      const client = this.authenticate(req);
      if (client instanceof RelayError) return sendError(res, client);
      this.httpInFlight++;
      try {
        return await d.httpResponses(req, res, client);
      } finally {
        if (--this.httpInFlight === 0) for (const w of this.httpIdleWaiters.splice(0)) w();
      }
    }
    sendError(res, new RelayError('SY_ERR_NOT_FOUND'));
  }

  private serverOnUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // A function of its own, not a closure: a closure here would share this call's context, which
    // holds the upgrade request (for startSession), and so keep it for the socket's life.
    socket.on('error', destroyOnError);
    const path = (req.url ?? '/').split('?')[0];
    const d = this.deps;
    const isResponses = RESPONSES_PATHS.has(path);
    const isRealtime = REALTIME_PATHS.has(path) && d.realtime !== undefined;
    if (!isResponses && !isRealtime) return rejectUpgrade(socket, new RelayError('SY_ERR_NOT_FOUND'));
    if (this.draining) return rejectUpgrade(socket, new RelayError('SY_ERR_SHUTTING_DOWN'));
    const client = this.authenticate(req);
    if (client instanceof RelayError) return rejectUpgrade(socket, client);
    if (isRealtime) return d.realtime!(req, socket, head, client);
    const cfg = d.config();
    if (!cfg.websocket.enabled) return rejectUpgrade(socket, new RelayError('SY_ERR_WS_DISABLED'));
    const live = this.perKey.get(client.keyHash) ?? 0;
    if (client.maxConnections > 0 && live >= client.maxConnections) {
      return rejectUpgrade(socket, new RelayError('SY_ERR_TOO_MANY_CONNECTIONS', undefined, 5_000));
    }
    this.perKey.set(client.keyHash, live + 1);
    this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => this.startSession(ws, req, client));
  }

  /** The client, or the error to answer: a throttled address gets 429 before its key is looked at. */
  private authenticate(req: IncomingMessage): ClientIdentity | RelayError {
    const wait = this.throttle.blockedFor(req.socket.remoteAddress);
    if (wait !== null) return new RelayError('SY_ERR_AUTH_THROTTLED', undefined, wait);
    const client = this.deps.auth().authenticate(req.headers);
    if (client) return client;
    this.authFailed(req);
    return new RelayError('SY_ERR_UNAUTHORIZED');
  }

  private authFailed(req: IncomingMessage): void {
    const address = req.socket.remoteAddress;
    if (this.throttle.recordFailure(address)) {
      this.deps.log.warn({ event: 'auth_throttled', address: throttleKey(address), blockMs: this.deps.config().auth.blockMs }, 'repeated authentication failures: address throttled');
    }
  }

  /** Registers a connection against the key's limit; for other upgrade handlers (realtime). */
  admitConnection(client: ClientIdentity): (() => void) | null {
    const live = this.perKey.get(client.keyHash) ?? 0;
    if (client.maxConnections > 0 && live >= client.maxConnections) return null;
    this.perKey.set(client.keyHash, live + 1);
    let done = false;
    return () => {
      if (!done) {
        done = true;
        this.releaseKey(client.keyHash);
      }
    };
  }

  private releaseKey(keyHash: string): void {
    const n = (this.perKey.get(keyHash) ?? 1) - 1;
    if (n <= 0) this.perKey.delete(keyHash);
    else this.perKey.set(keyHash, n);
  }

  private newSessionDeps(): SessionDeps {
    // With the root logger: the session puts its id in its own lines. A pino child per session
    // would cost about a kilobyte of heap for as long as the session lives.
    return {
      ...pickRelayCore(this.deps),
      upstream: this.deps.upstream,
      onClosed: (s) => {
        this.sessions.delete(s);
        this.releaseKey(s.identity.keyHash);
      },
    };
  }

  private startSession(ws: WebSocket, req: IncomingMessage, client: ClientIdentity): void {
    const headers = sessionHeaders(req.headers);
    const id = newSessionId();
    const identity = { id, clientName: client.name, group: client.group, keyHash: client.keyHash, headers };
    const session = new ResponsesSession(ws, identity, this.sessionDeps);
    this.sessions.add(session);
  }
}

/** An upgrading socket's `error` listener (`this` is the socket). */
function destroyOnError(this: Duplex): void {
  this.destroy();
}
