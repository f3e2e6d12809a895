// undici (~5 MB of heap with the Node built-ins it pulls in) is loaded by the first HTTP upstream
// request, not with the app: a relay serving only WebSocket turns never carries it. Checked in a
// fresh process: a test worker may already hold undici from other test files.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const url = (p: string) => JSON.stringify(pathToFileURL(resolve(p)).href);

const SCRIPT = `
import http from 'node:http';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const undiciLoaded = () => Object.keys(require.cache).some((k) => /[\\\\/]node_modules[\\\\/]undici[\\\\/]/.test(k));
const seen = {};
await import(${url('src/app.ts')});
const { HttpUpstream } = await import(${url('src/upstream/http-sse-upstream.ts')});
const { validConfig } = await import(${url('test/helpers/relay.ts')});
seen.afterAppLoaded = undiciLoaded();
const server = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/event-stream' }).end('data: {"type":"response.completed","response":{"id":"resp_1"}}\\n\\n'));
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const config = validConfig({ clients: [{ key: 'sk-client' }], accounts: [{ id: 'a', baseUrl: 'http://127.0.0.1:' + server.address().port + '/v1', apiKey: 'sk-a' }] });
const upstream = new HttpUpstream({ config: () => config });
const reply = await upstream.request(config.accounts[0], '{}', {}, new AbortController().signal);
seen.reply = reply.kind;
if (reply.kind === 'sse') for await (const _ of reply.events);
seen.afterRequest = undiciLoaded();
await upstream.close();
server.close();
console.log(JSON.stringify(seen));
`;

describe('HTTP upstream: undici is loaded on first use', () => {
  it('is not loaded with the app, and is by the first HTTP upstream request', async () => {
    const out = await new Promise<string>((done, fail) =>
      execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SCRIPT], { timeout: 30_000 }, (err, stdout, stderr) =>
        err ? fail(new Error(`${err.message}\n${stderr}`)) : done(stdout),
      ),
    );
    expect(JSON.parse(out.trim().split('\n').at(-1)!)).toEqual({ afterAppLoaded: false, reply: 'sse', afterRequest: true });
  });
});
