import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { deriveSessionHash, extractSessionKey, hashSessionKey } from '../../src/scheduler/session-key.js';

describe('session key (SPEC §5)', () => {
  it('takes the first present header in order: session_id, session-id, conversation_id, thread-id, x-session-id', () => {
    const all = { 'x-session-id': 'e', 'thread-id': 'd', conversation_id: 'c', 'session-id': 'b', session_id: 'a' };
    expect(extractSessionKey(all)).toBe('a');
    const { session_id: _a, ...rest1 } = all;
    expect(extractSessionKey(rest1)).toBe('b');
    const { 'session-id': _b, ...rest2 } = rest1;
    expect(extractSessionKey(rest2)).toBe('c');
    const { conversation_id: _c, ...rest3 } = rest2;
    expect(extractSessionKey(rest3)).toBe('d');
    const { 'thread-id': _d, ...rest4 } = rest3;
    expect(extractSessionKey(rest4)).toBe('e');
  });

  it('falls back to body prompt_cache_key, and to none', () => {
    expect(extractSessionKey({}, { prompt_cache_key: 'pck' })).toBe('pck');
    expect(extractSessionKey({}, { prompt_cache_key: '  ' })).toBeNull();
    expect(extractSessionKey({}, { prompt_cache_key: 42 })).toBeNull();
    expect(extractSessionKey({})).toBeNull();
  });

  it('Codex headers (session-id, thread-id, prompt_cache_key) → session-id', () => {
    expect(extractSessionKey({ 'session-id': 's1', 'thread-id': 't1' }, { prompt_cache_key: 'p1' })).toBe('s1');
  });

  it('skips empty header values and matches names case-insensitively', () => {
    expect(extractSessionKey({ session_id: ' ', 'Session-Id': 'mixed' })).toBe('mixed');
    expect(extractSessionKey({ session_id: ['', 'second'] })).toBe('second');
  });

  it('is hashed with the group: same key, different groups → different hashes; the key does not appear', () => {
    const a = hashSessionKey('team-a', 'secret-session');
    expect(a).toMatch(/^[0-9a-f]{32}$/);
    expect(a).toBe(hashSessionKey('team-a', 'secret-session'));
    expect(a).not.toBe(hashSessionKey('team-b', 'secret-session'));
    expect(deriveSessionHash('team-a', { 'session-id': 'secret-session' }, {})).toBe(a);
    expect(deriveSessionHash('team-a', {}, {})).toBeNull();
  });

  it('is the first 32 hex characters of SHA-256(group NUL key), as bindings already stored (Redis) were keyed', () => {
    expect(hashSessionKey('team-a', 'secret-session')).toBe(createHash('sha256').update('team-a\0secret-session').digest('hex').slice(0, 32));
  });
});
