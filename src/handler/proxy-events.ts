import type { UpstreamError } from '../errors.js';

/**
 * The events a {@link V2ProxyHandler} emits for each request's outcome.
 * Payloads are built only when someone listens to that event.
 */

/**
 * Why the proxy answered a request itself instead of with a member's answer.
 * @public
 */
export type DropReason =
  /** No endpoint is known (503). */
  | 'zero-endpoints'
  /** Every endpoint tried failed before a response (502), or a write failed after it may have reached etcd (502). */
  | 'failed-sending'
  /** A member's response was cut short after it had started (the client's response is cut too). */
  | 'failed-response'
  /** A write timed out after it may have reached etcd (504). */
  | 'timeout'
  /** A write to a readonly proxy (501). */
  | 'readonly'
  /** The body is over `maxBodyBytes` (413). */
  | 'body-too-large'
  /** The request came back through this proxy (508). */
  | 'loop'
  /** The proxy is closing (503). */
  | 'shutting-down';

/**
 * A member's response headers are being passed to the client.
 * @public
 */
export interface ForwardedEvent {
  readonly method: string;
  readonly url: string;
  /** Client URL of the member that answered; `v3` for an answer of the v3 backend (`--backend v3`). */
  readonly endpoint: string;
  readonly status: number;
  /** ms from the request's arrival to the member's response headers. */
  readonly durationMs: number;
  /** Endpoints tried, this one included. */
  readonly attempts: number;
  /** True for a long-poll watch (`wait=true`). */
  readonly watch: boolean;
}

/**
 * An attempt failed and the request moves on to another endpoint.
 * @public
 */
export interface RetriedEvent {
  readonly method: string;
  readonly url: string;
  /** The endpoint that failed. */
  readonly from: string;
  /** The endpoint tried next. */
  readonly to: string;
  readonly error: UpstreamError;
}

/**
 * The proxy answered (or cut) the request itself.
 * @public
 */
export interface DroppedEvent {
  readonly method: string;
  readonly url: string;
  readonly reason: DropReason;
  /** The status sent, 0 when the response had started and was cut. */
  readonly status: number;
  /** The member's failure, for `failed-sending`, `failed-response` and `timeout`. */
  readonly error?: UpstreamError;
}

/**
 * The client went away before its response was complete; the upstream request was aborted.
 * @public
 */
export interface ClientAbortedEvent {
  readonly method: string;
  readonly url: string;
  /** The endpoint the request was on, if it had been sent. */
  readonly endpoint: string | undefined;
  /** ms from the request's arrival to the client leaving. */
  readonly durationMs: number;
}

/**
 * What became of a hedged read (see {@link V2ProxyHandlerOptions.hedgeDelay}):
 * - `won`: the second request's response head came first; the first request was aborted.
 * - `lost`: the first request's head came first; the second was aborted.
 * - `failed`: the second request failed (no connection, an error, a 5xx) while the first went on.
 * - `cancelled`: the client went away, or the proxy stopped, before either head.
 * - `no-budget`: not sent: the hedge budget (10 % of reads over 10 s) was spent.
 * - `no-endpoint`: not sent: no other member was available.
 * @public
 */
export type HedgeOutcome = 'won' | 'lost' | 'failed' | 'cancelled' | 'no-budget' | 'no-endpoint';

/**
 * A plain read had no response head after the hedge delay: it was sent to a
 * second member as well (or could not be: `no-budget`, `no-endpoint`).
 * Emitted once per such read, when the outcome is known.
 * @public
 */
export interface HedgedEvent {
  readonly method: string;
  readonly url: string;
  /** The member the read was waiting on. */
  readonly from: string;
  /** The member it was sent to as well; undefined when it was not sent. */
  readonly to: string | undefined;
  readonly outcome: HedgeOutcome;
  /** The hedge delay the read waited, in ms. */
  readonly delayMs: number;
}

/**
 * Events of {@link V2ProxyHandler}: one outcome per request, plus `retried` per failed attempt
 * and `hedged` per read that waited past the hedge delay.
 * @public
 */
export interface V2ProxyHandlerEvents {
  /** A request arrived (before any check). */
  request: (method: string, url: string) => void;
  forwarded: (event: ForwardedEvent) => void;
  retried: (event: RetriedEvent) => void;
  dropped: (event: DroppedEvent) => void;
  clientAborted: (event: ClientAbortedEvent) => void;
  hedged: (event: HedgedEvent) => void;
}
