// The baseline for the WebSocket benchmarks: a bare pass-through relay. One upstream socket per
// client socket, frames piped unchanged both ways; no parsing, no scheduling, no backpressure, no
// limits. What any Node relay on `ws` costs at the least on this machine.
// Run by the bench drivers in its own process: `--target ws://127.0.0.1:PORT` (the client's path
// is appended, its authorization and OpenAI-Beta headers are passed on).
// `--floor` (bench:ws --floor): the least per-turn work a relay that schedules turns must do
// before a frame goes upstream — parse and check the client's frame (Switchyard's own
// parseClientFrame), check its chain against the response ids seen on the upstream socket, count
// a slot per account — and per upstream event Switchyard's own classifyEvent. Nothing else.
import { parseArgs } from 'node:util';
import WebSocket, { WebSocketServer } from 'ws';
import { classifyEvent } from '../../src/session/events.js';
import { parseClientFrame } from '../../src/session/frames.js';
import { serveParent } from './child-ipc.js';

const MAX_PAYLOAD = 64 * 1024 * 1024;
const PASSED_HEADERS = ['authorization', 'openai-beta', 'session_id'];

/** --floor, shared by all connections: per account (path) its turns in flight. Each connection keeps its own response ids. */
interface Floor {
  inFlight: Map<string, number>;
}

/** The floor's checks of one client frame; false = not forwarded (a real relay answers an error). */
function floorAccepts(data: Buffer, ids: Set<string>, floor: Floor, account: string): boolean {
  const frame = parseClientFrame(data, false, MAX_PAYLOAD);
  if (frame.kind !== 'create' || (frame.previousResponseId !== null && !ids.has(frame.previousResponseId))) return false;
  floor.inFlight.set(account, (floor.inFlight.get(account) ?? 0) + 1);
  return true;
}

/** The floor's view of one upstream event: the response id of a turn's first, the slot at its end. */
function floorSees(data: Buffer, ids: Set<string>, floor: Floor, account: string): void {
  const ev = classifyEvent(data, true);
  if (ev.responseId !== null) ids.add(ev.responseId);
  if (ev.terminal) floor.inFlight.set(account, (floor.inFlight.get(account) ?? 1) - 1);
}

export function startBareRelay(target: string, floor: Floor | null = null): Promise<WebSocketServer> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: MAX_PAYLOAD });
  wss.on('connection', (client, req) => {
    const headers: Record<string, string> = {};
    for (const h of PASSED_HEADERS) if (typeof req.headers[h] === 'string') headers[h] = req.headers[h];
    const path = req.url ?? '/';
    const upstream = new WebSocket(target + path, { headers, perMessageDeflate: false, maxPayload: MAX_PAYLOAD });
    const ids = new Set<string>();
    // Frames the client sends before the upstream is open wait here.
    const early: Array<[WebSocket.RawData, boolean]> = [];
    client.on('message', (data, isBinary) => {
      if (floor && !floorAccepts(data as Buffer, ids, floor, path)) return;
      if (upstream.readyState === WebSocket.OPEN) upstream.send(data, { binary: isBinary });
      else early.push([data, isBinary]);
    });
    upstream.on('open', () => {
      for (const [data, isBinary] of early) upstream.send(data, { binary: isBinary });
      early.length = 0;
    });
    upstream.on('message', (data, isBinary) => {
      client.send(data, { binary: isBinary });
      if (floor) floorSees(data as Buffer, ids, floor, path);
    });
    client.on('close', () => upstream.terminate());
    upstream.on('close', () => client.terminate());
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
  });
  return new Promise((resolve) => wss.on('listening', () => resolve(wss)));
}

if (process.send) {
  const { values } = parseArgs({ options: { target: { type: 'string' }, floor: { type: 'boolean', default: false } } });
  if (!values.target) throw new Error('bare-relay: --target ws://host:port is required');
  const wss = await startBareRelay(values.target.replace(/\/$/, ''), values.floor ? { inFlight: new Map() } : null);
  const addr = wss.address();
  serveParent(
    { port: typeof addr === 'object' && addr ? addr.port : 0 },
    { sessions: () => wss.clients.size },
    () => new Promise<void>((r) => wss.close(() => r())),
  );
}
