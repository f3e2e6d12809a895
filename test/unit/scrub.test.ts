import { describe, expect, it } from 'vitest';
import { scrubCredential, scrubCredentialText } from '../../src/upstream/scrub.js';

describe('credential scrubbing of upstream answers', () => {
  const key = 'sk-upstream-abcdef123456';

  it('masks every exact occurrence of the account credential', () => {
    const ev = Buffer.from(JSON.stringify({ type: 'error', error: { message: `bad key ${key}, really ${key}` } }));
    const out = scrubCredential(ev, key).toString();
    expect(out).not.toContain(key);
    expect(JSON.parse(out).error.message).toBe('bad key [redacted], really [redacted]');
    expect(scrubCredentialText(`x ${key} y`, key)).toBe('x [redacted] y');
  });

  it('returns events without the credential untouched (same buffer, no copy)', () => {
    const ev = Buffer.from('{"type":"response.output_text.delta","delta":"héllo sk-other"}');
    expect(scrubCredential(ev, key)).toBe(ev);
    expect(scrubCredentialText('plain', key)).toBe('plain');
  });

  it('leaves short credentials alone rather than mangle ordinary text', () => {
    expect(scrubCredentialText('a test of the test', 'test')).toBe('a test of the test');
  });
});
