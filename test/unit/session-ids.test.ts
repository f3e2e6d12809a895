// Session ids: random UUIDs (v4), each a flat copy of crypto's (see src/session/ids.ts).
import { describe, expect, it } from 'vitest';
import { newSessionId } from '../../src/session/ids.js';

describe('newSessionId', () => {
  it('is a version-4 UUID, different every time', () => {
    const ids = Array.from({ length: 1000 }, newSessionId);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
