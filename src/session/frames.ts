// Pure validation of client Responses WebSocket frames (SPEC §6). Returns data; never throws.
import type { ErrorCode } from '../errors.js';

export interface CreateFrame {
  kind: 'create';
  /** The frame exactly as received: forwarded upstream unchanged. */
  raw: Buffer;
  /** The parsed frame; a pinned turn lets it go once the frame is upstream (session.ts). */
  body: Record<string, unknown>;
  model: string | null;
  previousResponseId: string | null;
  /** `store` defaults to true in the Responses API; Codex and the SDK send false. */
  store: boolean;
  /** `generate:false` warm-up. */
  generate: boolean;
}

export type ClientFrame =
  | CreateFrame
  | { kind: 'cancel'; raw: Buffer; body: Record<string, unknown> }
  | { kind: 'invalid'; error: ErrorCode; message?: string };

/** Frame types passed upstream as they are. */
const PASS_THROUGH = new Set(['response.cancel']);

export function parseClientFrame(data: Buffer, isBinary: boolean, maxBytes: number): ClientFrame {
  if (isBinary) return { kind: 'invalid', error: 'SY_ERR_BINARY_FRAME' };
  if (data.length > maxBytes) return { kind: 'invalid', error: 'SY_ERR_TOO_LARGE' };
  let v: unknown;
  try {
    v = JSON.parse(data.toString('utf8'));
  } catch {
    return { kind: 'invalid', error: 'SY_ERR_INVALID_JSON' };
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    return { kind: 'invalid', error: 'SY_ERR_INVALID_REQUEST', message: 'A frame must be a JSON object.' };
  }
  const body = v as Record<string, unknown>;
  const type = body.type === undefined ? 'response.create' : body.type;
  if (typeof type !== 'string') return { kind: 'invalid', error: 'SY_ERR_INVALID_REQUEST', message: "'type' must be a string." };
  if (PASS_THROUGH.has(type)) return { kind: 'cancel', raw: data, body };
  if (type !== 'response.create') {
    return { kind: 'invalid', error: 'SY_ERR_UNSUPPORTED_TYPE', message: `Unsupported client event type '${type.slice(0, 64)}'.` };
  }
  const model = body.model;
  if (model !== undefined && (typeof model !== 'string' || model.length === 0)) {
    return { kind: 'invalid', error: 'SY_ERR_INVALID_REQUEST', message: "'model' must be a non-empty string." };
  }
  const prev = body.previous_response_id;
  if (prev !== undefined && prev !== null) {
    if (typeof prev !== 'string' || !/^resp_[A-Za-z0-9_-]{1,256}$/.test(prev)) {
      return { kind: 'invalid', error: 'SY_ERR_INVALID_PREVIOUS_RESPONSE_ID' };
    }
  }
  if (body.store !== undefined && typeof body.store !== 'boolean') {
    return { kind: 'invalid', error: 'SY_ERR_INVALID_REQUEST', message: "'store' must be a boolean." };
  }
  if (body.generate !== undefined && typeof body.generate !== 'boolean') {
    return { kind: 'invalid', error: 'SY_ERR_INVALID_REQUEST', message: "'generate' must be a boolean." };
  }
  return {
    kind: 'create',
    raw: data,
    body,
    model: typeof model === 'string' ? model : null,
    previousResponseId: typeof prev === 'string' ? prev : null,
    store: body.store !== false,
    generate: body.generate !== false,
  };
}
