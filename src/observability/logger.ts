// pino JSON logs (SPEC §9). Secrets never reach a log line: callers log ids, not headers or
// bodies, and redaction catches credential-shaped fields anyway.
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

const REDACT = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  '*.authorization',
  'apiKey',
  '*.apiKey',
  'accounts[*].apiKey',
  'key',
  '*.key',
  'clients[*].key',
  'adminKey',
  '*.adminKey',
  'cookie',
  '*.cookie',
  'sec-websocket-protocol',
  '*["sec-websocket-protocol"]',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'switchyard' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
