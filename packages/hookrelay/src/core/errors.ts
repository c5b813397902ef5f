/**
 * Every error the API returns carries a stable `code` from this registry and a human `detail`,
 * in Svix's error shape. Clients match on `code`; the wording of `detail` may change.
 */
export const ERROR_CODES = {
  validation: { status: 422, title: 'The request body or query failed validation' },
  invalid_json: { status: 400, title: 'The request body is not valid JSON' },
  bad_request: { status: 400, title: 'The request is malformed' },
  // Svix's code and status for a resend of a message whose payload is gone (expired or expunged).
  missing_payload: { status: 400, title: "The message's content is gone, so it cannot be sent again" },
  authentication_failed: { status: 401, title: 'Missing or invalid API key' },
  not_found: { status: 404, title: 'The resource does not exist' },
  conflict: { status: 409, title: 'A resource with this unique field already exists' },
  duplicate_event_id: { status: 409, title: 'A message with this eventId was already accepted' },
  idempotency_conflict: { status: 409, title: 'A request with this Idempotency-Key is still in progress' },
  idempotency_mismatch: { status: 422, title: 'The Idempotency-Key was used with a different request' },
  payload_too_large: { status: 413, title: 'The request body exceeds the configured limit' },
  unsupported_media_type: { status: 415, title: 'The request body must be application/json' },
  method_not_allowed: { status: 405, title: 'The method is not allowed on this path' },
  request_timeout: { status: 408, title: 'The request was not received in time' },
  uri_too_long: { status: 414, title: 'A segment of the request path is too long' },
  expectation_failed: { status: 417, title: 'The Expect header asks for something the server does not do' },
  headers_too_large: { status: 431, title: 'The request line and headers exceed the size limit' },
  unavailable: { status: 503, title: 'The service cannot serve this request now' },
  internal: { status: 500, title: 'An unexpected error occurred' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ValidationIssue {
  loc: string[];
  msg: string;
  type: string;
}

export class HookrelayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: string | ValidationIssue[];

  constructor(code: ErrorCode, detail?: string | ValidationIssue[], options?: { cause?: unknown }) {
    const text = typeof detail === 'string' ? detail : ERROR_CODES[code].title;
    super(text, options);
    this.name = 'HookrelayError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.detail = detail ?? ERROR_CODES[code].title;
  }

  toJSON(): { code: ErrorCode; detail: string | ValidationIssue[] } {
    return { code: this.code, detail: this.detail };
  }
}

export const notFound = (what: string): HookrelayError => new HookrelayError('not_found', `${what} not found`);

export function validationError(loc: string[], msg: string, type = 'value_error'): HookrelayError {
  return new HookrelayError('validation', [{ loc, msg, type }]);
}
