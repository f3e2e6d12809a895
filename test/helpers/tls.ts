// A throwaway self-signed certificate for 127.0.0.1 / localhost, made with the `openssl` CLI at test
// time (node:crypto cannot issue X.509 certificates). Realtime SDK clients always use wss://
// (CLIENTS.md §5.3), so relay tests need TLS on loopback; clients trust the cert through `ca` or
// NODE_EXTRA_CA_CERTS=<certPath>.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCert {
  dir: string;
  certPath: string;
  keyPath: string;
  cert: Buffer;
  key: Buffer;
  /** Removes the temp dir. */
  cleanup(): void;
}

export function makeSelfSignedCert(): TestCert {
  const probe = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    throw new Error('test/helpers/tls.ts needs the `openssl` CLI on PATH to make a self-signed certificate (install openssl).');
  }
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-tls-'));
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  // P-256 keeps generation fast; the SAN is what Node checks against the host it dials.
  const r = spawnSync(
    'openssl',
    [
      'req', '-x509', '-nodes', '-days', '1',
      '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
      '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout', keyPath, '-out', certPath,
    ],
    { encoding: 'utf8' },
  );
  if (r.error || r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`openssl could not make a test certificate: ${r.error?.message ?? r.stderr}`);
  }
  return {
    dir,
    certPath,
    keyPath,
    cert: readFileSync(certPath),
    key: readFileSync(keyPath),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
