/**
 * Why a generation request did not produce images, as typed errors. The HTTP layer maps each to a
 * status code (lib/serve/app.ts); the metrics count them by `kind`.
 */

export type ServeErrorKind = 'queue_full' | 'timeout' | 'cancelled' | 'shutting_down' | 'invalid_request' | 'not_found';

export class ServeError extends Error {
  readonly kind: ServeErrorKind;
  readonly statusCode: number;
  constructor(kind: ServeErrorKind, statusCode: number, message: string) {
    super(message);
    this.kind = kind;
    this.statusCode = statusCode;
    this.name = new.target.name;
  }
}

/** The queue holds its maximum of requests: the client should retry after `retryAfterSeconds`. */
export class QueueFullError extends ServeError {
  readonly retryAfterSeconds: number;
  constructor(maxQueue: number, retryAfterSeconds: number) {
    super('queue_full', 429, `the queue is full (${maxQueue} requests waiting); retry after ${retryAfterSeconds} s`);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** The request ran past its deadline (waiting and generating together). */
export class RequestTimeoutError extends ServeError {
  constructor(timeoutMs: number) {
    super('timeout', 504, `the request did not complete within its timeout of ${timeoutMs} ms`);
  }
}

/** The caller gave up (client disconnected, or its AbortSignal fired). */
export class RequestCancelledError extends ServeError {
  constructor() {
    super('cancelled', 499, 'the request was cancelled by the client');
  }
}

/** The server is shutting down: new work is refused and unfinished work past the deadline is cancelled. */
export class ShuttingDownError extends ServeError {
  constructor(what: string) {
    super('shutting_down', 503, `the server is shutting down: ${what}`);
  }
}

/** A request that the schema accepted but the model cannot serve (unknown label, wrong size, ...). */
export class InvalidRequestError extends ServeError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('invalid_request', 400, `invalid field '${field}': ${message}`);
    this.field = field;
  }
}

/** A job id that the queue does not know (never existed, or its result expired). */
export class JobNotFoundError extends ServeError {
  constructor(id: string) {
    super('not_found', 404, `no job with id ${JSON.stringify(id)}`);
  }
}
