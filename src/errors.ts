// Errors are data (DESIGN rule 4): one registry maps every error the relay itself raises to the
// HTTP status, the WebSocket close code, and the OpenAI-style error body a client sees.
// Anything not in the registry reaches the client as `internal_error` without details.

export interface ErrorSpec {
  /** HTTP status for HTTP answers and for the `status` field of WS error frames. */
  http: number;
  /** Close code after the error frame; null = the session stays open. */
  close: number | null;
  /** OpenAI-style `error.type`. */
  type: string;
  /** OpenAI-style `error.code`. */
  code: string;
  /** Default message, safe to show. */
  message: string;
}

export const ERRORS = {
  SY_ERR_INVALID_JSON: { http: 400, close: 1008, type: 'invalid_request_error', code: 'invalid_json', message: 'The frame or body is not valid JSON.' },
  SY_ERR_BINARY_FRAME: { http: 400, close: 1008, type: 'invalid_request_error', code: 'binary_frame_not_supported', message: 'Binary frames are not supported; send JSON text frames.' },
  SY_ERR_INVALID_REQUEST: { http: 400, close: 1008, type: 'invalid_request_error', code: 'invalid_request', message: 'The request is not valid.' },
  SY_ERR_UNSUPPORTED_TYPE: { http: 400, close: null, type: 'invalid_request_error', code: 'unsupported_event_type', message: 'Unsupported client event type.' },
  SY_ERR_MISSING_MODEL: { http: 400, close: 1008, type: 'invalid_request_error', code: 'missing_required_parameter', message: "Missing required parameter: 'model'." },
  SY_ERR_INVALID_PREVIOUS_RESPONSE_ID: { http: 400, close: 1008, type: 'invalid_request_error', code: 'invalid_previous_response_id', message: "'previous_response_id' must be a response id (resp_…)." },
  SY_ERR_TOO_LARGE: { http: 413, close: 1009, type: 'invalid_request_error', code: 'message_too_large', message: 'The message exceeds the size limit.' },
  SY_ERR_UNSUPPORTED_MEDIA_TYPE: { http: 415, close: 1008, type: 'invalid_request_error', code: 'unsupported_media_type', message: 'Content-Type must be application/json.' },
  SY_ERR_FIRST_MESSAGE_TIMEOUT: { http: 408, close: 1008, type: 'invalid_request_error', code: 'first_message_timeout', message: 'No request arrived within the first-message deadline.' },
  SY_ERR_CANCEL_NOT_ACTIVE: { http: 400, close: null, type: 'invalid_request_error', code: 'response_cancel_not_active', message: 'Cancellation failed: no active response found.' },
  SY_ERR_IN_FLIGHT: { http: 400, close: null, type: 'invalid_request_error', code: 'response_already_in_flight', message: 'A response is already in flight on this connection; wait for its terminal event.' },
  SY_ERR_PREVIOUS_RESPONSE_NOT_FOUND: { http: 400, close: null, type: 'invalid_request_error', code: 'previous_response_not_found', message: 'Previous response not found: the upstream connection that held it is gone. Resend the full history without previous_response_id.' },
  SY_ERR_UNAUTHORIZED: { http: 401, close: 1008, type: 'invalid_request_error', code: 'invalid_api_key', message: 'Missing or invalid API key.' },
  SY_ERR_TOO_MANY_CONNECTIONS: { http: 429, close: 1013, type: 'rate_limit_error', code: 'too_many_connections', message: 'This key has reached its connection limit.' },
  SY_ERR_AUTH_THROTTLED: { http: 429, close: 1008, type: 'rate_limit_error', code: 'too_many_auth_failures', message: 'Too many failed authentication attempts; try again later.' },
  SY_ERR_NO_CAPACITY: { http: 429, close: 1013, type: 'rate_limit_error', code: 'no_capacity', message: 'No upstream account has capacity for this request right now.' },
  SY_ERR_NO_ACCOUNT: { http: 503, close: 1013, type: 'server_error', code: 'no_available_account', message: 'No upstream account can serve this model right now.' },
  SY_ERR_ALL_ACCOUNTS_FAILED: { http: 502, close: 1013, type: 'server_error', code: 'upstream_unavailable', message: 'Every upstream account tried failed this request.' },
  SY_ERR_UPSTREAM_RATE_LIMITED: { http: 429, close: 1013, type: 'rate_limit_error', code: 'rate_limit_exceeded', message: 'Upstream accounts are rate limited.' },
  SY_ERR_UPSTREAM_FAILED: { http: 502, close: null, type: 'server_error', code: 'upstream_error', message: 'The upstream connection failed mid-response.' },
  SY_ERR_UPSTREAM_TIMEOUT: { http: 504, close: null, type: 'server_error', code: 'upstream_timeout', message: 'The upstream sent nothing for this response within the idle timeout.' },
  SY_ERR_WS_DISABLED: { http: 426, close: 1013, type: 'invalid_request_error', code: 'websocket_not_supported', message: 'WebSocket mode is disabled on this relay; use HTTP.' },
  SY_ERR_FALLBACK_DISABLED: { http: 503, close: 1013, type: 'server_error', code: 'websocket_unavailable', message: 'No WebSocket-capable account is available and HTTP fallback is disabled.' },
  SY_ERR_NOT_FOUND: { http: 404, close: null, type: 'invalid_request_error', code: 'not_found', message: 'Not found.' },
  SY_ERR_METHOD_NOT_ALLOWED: { http: 405, close: null, type: 'invalid_request_error', code: 'method_not_allowed', message: 'Method not allowed.' },
  SY_ERR_SHUTTING_DOWN: { http: 503, close: 1001, type: 'server_error', code: 'shutting_down', message: 'The relay is shutting down.' },
  SY_ERR_IDLE_TIMEOUT: { http: 408, close: 1000, type: 'invalid_request_error', code: 'idle_timeout', message: 'Session idle timeout.' },
  SY_ERR_INVALID_CONFIG: { http: 400, close: null, type: 'invalid_request_error', code: 'invalid_config', message: 'The new config is invalid; the running config is kept.' },
  SY_ERR_STORE_UNAVAILABLE: { http: 503, close: 1013, type: 'server_error', code: 'store_unavailable', message: 'Shared state is unreachable right now; try again shortly.' },
  SY_ERR_INTERNAL: { http: 500, close: 1011, type: 'server_error', code: 'internal_error', message: 'Internal error.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** An error the relay raises on purpose; its message is safe to show. */
export class RelayError extends Error {
  readonly spec: ErrorSpec;
  constructor(readonly code: ErrorCode, message?: string, readonly retryAfterMs?: number) {
    super(message ?? ERRORS[code].message);
    this.spec = ERRORS[code];
  }
}

export interface OpenAIErrorBody {
  error: { type: string; code: string; message: string; param?: string | null };
}

/** Anything thrown → a RelayError; unknown errors become SY_ERR_INTERNAL with no details. */
export function toRelayError(err: unknown): RelayError {
  return err instanceof RelayError ? err : new RelayError('SY_ERR_INTERNAL');
}

export function toHttpError(err: unknown): { status: number; body: OpenAIErrorBody; retryAfterMs?: number } {
  const e = toRelayError(err);
  return {
    status: e.spec.http,
    body: { error: { type: e.spec.type, code: e.spec.code, message: e.message } },
    retryAfterMs: e.retryAfterMs,
  };
}

/** The WS `error` frame (shape Codex parses) and the close code that follows it (null = stay open). */
export function toErrorFrame(err: unknown): { frame: string; close: number | null; reason: string } {
  const e = toRelayError(err);
  const frame = JSON.stringify({
    type: 'error',
    status: e.spec.http,
    error: { type: e.spec.type, code: e.spec.code, message: e.message },
  });
  // Close reasons are limited to 123 bytes.
  return { frame, close: e.spec.close, reason: e.spec.code.slice(0, 120) };
}
