// The Portkey AI gateway (@portkey-ai/gateway, Node build) in its own process, for bench:http.
// Its start script listens on every interface and takes only `--port`: the listen call is
// pinned to 127.0.0.1 here (benchmarks stay on loopback), port 0 is asked for, and the port the
// server really got is reported to the driver.
//
// With BENCH_PORTKEY_SHIM=1 (bench:http --portkey-shim), header writes on immutable fetch headers
// are skipped instead of throwing. Portkey 1.15.2 answers every streaming POST /v1/responses on
// Node with a 500 because of such a write (Portkey-AI/gateway#1550, fix proposed in #1551); the
// shim lets it stream, minus its own x-portkey-* response headers. Off by default: the default
// run measures Portkey as published.
import net from 'node:net';
import { serveParent } from './child-ipc.js';

type Listen = (this: net.Server, ...args: unknown[]) => net.Server;
const listen = net.Server.prototype.listen as unknown as Listen;
let reported = false;

(net.Server.prototype as unknown as { listen: Listen }).listen = function (this: net.Server, ...args: unknown[]): net.Server {
  // @hono/node-server calls listen(port, hostname = undefined, callback).
  if (typeof args[0] === 'number' && (args[1] === undefined || typeof args[1] === 'function')) {
    if (typeof args[1] === 'function') args.splice(1, 0, '127.0.0.1');
    else args[1] = '127.0.0.1';
  }
  this.once('listening', () => {
    const addr = this.address();
    if (reported || typeof addr !== 'object' || addr === null) return;
    reported = true;
    serveParent({ port: addr.port, host: addr.address });
  });
  return listen.apply(this, args);
};

if (process.env.BENCH_PORTKEY_SHIM === '1') {
  type HeaderWrite = (this: Headers, name: string, value?: string) => void;
  const proto = Headers.prototype as unknown as Record<'append' | 'set' | 'delete', HeaderWrite>;
  for (const method of ['append', 'set', 'delete'] as const) {
    const original = proto[method];
    proto[method] = function (this: Headers, name: string, value?: string): void {
      try {
        original.call(this, name, value);
      } catch (err) {
        if (!(err instanceof TypeError && err.message === 'immutable')) throw err;
      }
    };
  }
}

process.argv.push('--port=0', '--headless');
// @ts-expect-error: the gateway ships a bundled script without type declarations.
await import('@portkey-ai/gateway/build/start-server.js');
