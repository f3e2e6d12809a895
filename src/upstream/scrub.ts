// Pure: masks an account's credential wherever an upstream quotes it in something a client will
// see (SPEC §8: no credential in any error body). Events are otherwise forwarded unchanged, so
// only exact occurrences are replaced, and only for credentials long enough not to match prose.
const MASK = '[redacted]';
const MIN_SECRET_LENGTH = 8;

export function scrubCredential(data: Buffer, secret: string): Buffer {
  if (secret.length < MIN_SECRET_LENGTH || data.indexOf(secret) === -1) return data;
  return Buffer.from(data.toString('utf8').split(secret).join(MASK));
}

export function scrubCredentialText(data: string, secret: string): string {
  if (secret.length < MIN_SECRET_LENGTH || !data.includes(secret)) return data;
  return data.split(secret).join(MASK);
}
