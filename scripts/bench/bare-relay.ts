// The baseline for the WebSocket benchmarks: a bare pass-through relay. One upstream socket per
// client socket, frames piped unchanged both ways; no parsing, no scheduling, no backpressure, no
// limits. What any Node relay on `ws` costs at the least on this machine.
// Run by the bench drivers in its own process: `--target ws://127.0.0.1:PORT` (the client's path
// is appended, its authorization and OpenAI-Beta headers are passed on).
import { parseArgs } from 'node:util';
import WebSocket, { WebSocketServer } from 'ws';
import { serveParent } from './child-ipc.js';

const MAX_PAYLOAD = 64 * 1024 * 1024;
const PASSED_HEADERS = ['authorization', 'openai-beta', 'session_id'];

export function startBareRelay(target: string): Promise<WebSocketServer> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: MAX_PAYLOAD });
  wss.on('connection', (client, req) => {
    const headers: Record<string, string> = {};
    for (const h of PASSED_HEADERS) if (typeof req.headers[h] === 'string') headers[h] = req.headers[h];
    const upstream = new WebSocket(target + (req.url ?? '/'), { headers, perMessageDeflate: false, maxPayload: MAX_PAYLOAD });
    // Frames the client sends before the upstream is open wait here.
    const early: Array<[WebSocket.RawData, boolean]> = [];
    client.on('message', (data, isBinary) => {
      if (upstream.readyState === WebSocket.OPEN) upstream.send(data, { binary: isBinary });
      else early.push([data, isBinary]);
    });
    upstream.on('open', () => {
      for (const [data, isBinary] of early) upstream.send(data, { binary: isBinary });
      early.length = 0;
    });
    upstream.on('message', (data, isBinary) => client.send(data, { binary: isBinary }));
    client.on('close', () => upstream.terminate());
    upstream.on('close', () => client.terminate());
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
  });
  return new Promise((resolve) => wss.on('listening', () => resolve(wss)));
}

if (process.send) {
  const { values } = parseArgs({ options: { target: { type: 'string' } } });
  if (!values.target) throw new Error('bare-relay: --target ws://host:port is required');
  const wss = await startBareRelay(values.target.replace(/\/$/, ''));
  const addr = wss.address();
  serveParent(
    { port: typeof addr === 'object' && addr ? addr.port : 0 },
    { sessions: () => wss.clients.size },
    () => new Promise<void>((r) => wss.close(() => r())),
  );
}
