// The floor for the HTTP benchmark: a bare pass-through of POST /v1/responses. The body goes to
// the upstream as it is (the `/acct/<name>` path prefix and the authorization header choose the
// account, as with the sim directly), and the upstream's status, content type and body bytes are
// piped back: no parsing, no scheduling, no event framing. What any Node relay on node:http and
// undici costs at the least on this machine.
// Run by bench:http in its own process: `--target http://127.0.0.1:PORT`.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { serveParent } from './child-ipc.js';

export function startBareHttpRelay(target: string): Promise<ReturnType<typeof createServer>> {
  const pool = new Pool(target, { keepAliveTimeout: 30_000 });
  const relay = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const up = await pool.request({
      path: req.url ?? '/',
      method: 'POST',
      headers: { authorization: req.headers.authorization ?? '', 'content-type': 'application/json' },
      body: req,
    });
    res.writeHead(up.statusCode, { 'content-type': String(up.headers['content-type'] ?? 'application/octet-stream') });
    await pipeline(up.body, res);
  };
  const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    relay(req, res).catch(() => res.destroy());
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

if (process.send) {
  const { values } = parseArgs({ options: { target: { type: 'string' } } });
  if (!values.target) throw new Error('bare-http-relay: --target http://host:port is required');
  const server = await startBareHttpRelay(values.target);
  serveParent({ port: (server.address() as AddressInfo).port }, {}, () => new Promise<void>((r) => server.close(() => r())));
}
