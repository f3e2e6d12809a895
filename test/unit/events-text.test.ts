import { describe, expect, it } from 'vitest';
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

describe('upstream event classification from SSE text', () => {
  it('classifies decoded text exactly as it classifies the same bytes', () => {
    for (const text of [...FRAMES, 'not json', '{"type":"abc', '[]']) {
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
  });

  it('gives a delta the same frozen result every time, so deltas allocate nothing', () => {
    const a = classifyEvent(Buffer.from(FRAMES[0]));
    const b = classifyEvent(Buffer.from(FRAMES[0]));
    expect(a).toBe(b);
    expect(Object.isFrozen(a)).toBe(true);
    expect(peekType(Buffer.from(FRAMES[0]))).toBe(peekType(Buffer.from(FRAMES[0])));
  });
});
