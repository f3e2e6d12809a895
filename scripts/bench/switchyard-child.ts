// Switchyard in its own process, for the benchmarks: the whole app (memory store) built from the
// raw config passed as JSON in `--config`, listening on 127.0.0.1:0, logs at `--log-level`.
import { parseArgs } from 'node:util';
import { startRelay } from '../../test/helpers/relay.js';
import { serveParent } from './child-ipc.js';

const { values } = parseArgs({ options: { config: { type: 'string' }, 'log-level': { type: 'string', default: 'warn' } } });
if (!values.config) throw new Error('switchyard-child: --config <json> is required');
const relay = await startRelay(JSON.parse(values.config) as Record<string, unknown>, { logLevel: values['log-level'] });
serveParent(
  { port: relay.port },
  {
    sessions: () => relay.app.ingress.sessions.size,
    // Warnings and errors the relay logged (captured in memory by the helper), for the report.
    logs: () => relay.logs.slice(-20),
  },
  () => relay.stop(),
);
