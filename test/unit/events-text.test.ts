import { describe, expect, it } from 'vitest';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { classifyEvent, classifyEventText, peekType, peekTypeText } from '../../src/session/events.js';

const response = { id: 'resp_abc', object: 'response', status: 'in_progress', output: [] };
const FRAMES = [
  { type: 'response.output_text.delta', sequence_number: 4, delta: 'Hel' },
  { type: 'response.created', sequence_number: 0, response },
  { type: 'response.in_progress', sequence_number: 1, response },
  { type: 'response.completed', sequence_number: 9, response: { ...response, status: 'completed' } },
  { type: 'response.failed', response: { id: 'resp_f', error: { code: 'server_error', message: 'x' } } },
  { type: 'error', status: 429, error: { type: 'rate_limit_error', code: 'rate_limit_exceeded', message: 'slow down' } },
  { item: { type: 'message' }, type: 'response.output_item.done' },
  { response: { status: 'completed', id: 'resp_late' }, type: 'response.completed' },
  { type: 'response.created', response: { status: 'in_progress', id: 'resp_not_first' } },
  { type: 'response.created', response: { id: 'resp_"quoted"' } },
  { type: `x${'y'.repeat(200)}` },
].map((f) => JSON.stringify(f));
/** Head-read edge cases, as raw text: JSON whitespace, a `"response"` that is not the key, no id. */
const HEADS = [
  '{"type":"response.created", "response" : {\n "id" :\t"resp_spaced", "status":"in_progress"}}',
  '{"type":"response.in_progress","note":"response","response":{"id":"resp_after_value"}}',
  '{"type":"response.created","response":{"status":"queued"}}',
  '{"type":"response.created","response":{"id":""}}',
  `{"type":"response.created","pad":"${'p'.repeat(1100)}","response":{"id":"resp_past_head"}}`,
];

describe('upstream event classification from SSE text', () => {
  it('classifies decoded text exactly as it classifies the same bytes', () => {
    for (const text of [...FRAMES, ...HEADS, 'not json', '{"type":"abc', '[]']) {
      for (const needId of [true, false]) {
        expect(classifyEventText(text, needId), text).toEqual(classifyEvent(Buffer.from(text), needId));
      }
      expect(peekTypeText(text), text).toBe(peekType(Buffer.from(text)));
    }
  });

  it('reads lifecycle ids from the head and still decodes an escaped id by parsing', () => {
    expect(classifyEventText(FRAMES[1]).responseId).toBe('resp_abc');
    expect(classifyEventText(FRAMES[8]).responseId).toBe('resp_not_first');
    expect(classifyEventText(FRAMES[9]).responseId).toBe('resp_"quoted"');
    expect(HEADS.map((h) => classifyEventText(h).responseId)).toEqual(['resp_spaced', 'resp_after_value', null, '', 'resp_past_head']);
  });

  it('gives a delta the same frozen result every time, so deltas allocate nothing', () => {
    const a = classifyEvent(Buffer.from(FRAMES[0]));
    const b = classifyEvent(Buffer.from(FRAMES[0]));
    expect(a).toBe(b);
    expect(Object.isFrozen(a)).toBe(true);
    expect(peekType(Buffer.from(FRAMES[0]))).toBe(peekType(Buffer.from(FRAMES[0])));
  });
});

describe('response ids read from event heads', () => {
  /** Heap held by `keep(i)` for i < n, measured after full collections. */
  function retainedBytes(n: number, keep: (i: number) => string | null): number {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const kept: (string | null)[] = [];
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < n; i++) kept.push(keep(i));
    gc();
    const after = process.memoryUsage().heapUsed;
    expect(kept.every((id, i) => id === `resp_${String(i).padStart(24, '0')}`)).toBe(true);
    return after - before;
  }
  const created = (i: number) =>
    JSON.stringify({ type: 'response.created', response: { id: `resp_${String(i).padStart(24, '0')}`, instructions: `${i}`.padEnd(32_000, 'x') } });

  // Ids live an hour in response bindings: one must not pin the 32 KB event (SSE text) or the
  // 1 KB head (WebSocket bytes) it was read from.
  it('keep nothing of an SSE event but the id', () => {
    expect(retainedBytes(1_000, (i) => classifyEventText(created(i)).responseId)).toBeLessThan(2_000_000);
  });

  it('keep nothing of a WebSocket frame but the id', () => {
    expect(retainedBytes(5_000, (i) => classifyEvent(Buffer.from(created(i))).responseId)).toBeLessThan(2_000_000);
  });
});
