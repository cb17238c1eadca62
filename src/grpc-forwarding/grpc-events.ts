import type { UpstreamError } from '../errors.js';

/**
 * The events a {@link GrpcForwarder} emits for each forwarded gRPC call (an
 * etcd v3 client's request), the v3 counterpart of the v2 handler's events
 * (proxy-events.ts). `method` is the call's `:path`, e.g.
 * `/etcdserverpb.KV/Put`. Payloads are built only when someone listens.
 */

/**
 * Why the proxy ended a gRPC call itself instead of with a member's answer:
 * - `zero-endpoints`: no member is known (UNAVAILABLE).
 * - `failed-sending`: no member could be reached: every one tried refused
 *   the connection or did not answer the dial in time (UNAVAILABLE).
 * - `member-lost`: the call had reached a member and that member's
 *   connection broke (UNAVAILABLE); the call is never sent again.
 * - `readonly`: a call that changes the cluster, to a readonly proxy (UNIMPLEMENTED).
 * - `shutting-down`: the proxy is closing; open streams end at once (UNAVAILABLE).
 * @public
 */
export type GrpcDropReason = 'zero-endpoints' | 'failed-sending' | 'member-lost' | 'readonly' | 'shutting-down';

/**
 * A member's response headers are being passed to the client.
 * @public
 */
export interface GrpcForwardedEvent {
  /** The call's `:path`, e.g. `/etcdserverpb.KV/Put`. */
  readonly method: string;
  /** Client URL of the member that answered. */
  readonly endpoint: string;
  /** ms from the call's arrival to the member's response headers. */
  readonly durationMs: number;
  /** Members tried, this one included. */
  readonly attempts: number;
  /** True for a stream that stays open (Watch, LeaseKeepAlive). */
  readonly stream: boolean;
}

/**
 * A member could not be reached and the call moves on to the next one.
 * @public
 */
export interface GrpcRetriedEvent {
  /** The call's `:path`, e.g. `/etcdserverpb.KV/Put`. */
  readonly method: string;
  /** The member that could not be reached. */
  readonly from: string;
  /** The member tried next. */
  readonly to: string;
  /** Why the first could not be reached. */
  readonly error: UpstreamError;
}

/**
 * The proxy ended the call itself with `grpcStatus`.
 * @public
 */
export interface GrpcDroppedEvent {
  /** The call's `:path`, e.g. `/etcdserverpb.KV/Put`. */
  readonly method: string;
  /** Why the proxy ended it. */
  readonly reason: GrpcDropReason;
  /** The gRPC status code sent (14 UNAVAILABLE, 12 UNIMPLEMENTED). */
  readonly grpcStatus: number;
  /** The member's failure, for `failed-sending` and `member-lost`. */
  readonly error?: UpstreamError;
}

/**
 * The client cancelled the call (or went away) before its end; the
 * cancellation was passed on to the member.
 * @public
 */
export interface GrpcClientAbortedEvent {
  /** The call's `:path`, e.g. `/etcdserverpb.KV/Put`. */
  readonly method: string;
  /** The member the call was on, if it had reached one. */
  readonly endpoint: string | undefined;
  /** ms from the call's arrival to the cancellation. */
  readonly durationMs: number;
}

/**
 * A call is over, however it ended: one per call.
 * @public
 */
export interface GrpcFinishedEvent {
  /** The call's `:path`, e.g. `/etcdserverpb.KV/Put`. */
  readonly method: string;
  /** The member the call was on, undefined when it reached none. */
  readonly endpoint: string | undefined;
  /** The call's gRPC status code: the member's, or the proxy's own (1 CANCELLED for a client's cancellation). */
  readonly grpcStatus: number;
  /** ms from the call's arrival to its end. */
  readonly durationMs: number;
  /** True for a stream that stays open (Watch, LeaseKeepAlive). */
  readonly stream: boolean;
}

/**
 * Events of {@link GrpcForwarder}: `call` and `finished` once per call,
 * `forwarded` when a member answered, `retried` per member that could not
 * be reached, `dropped` when the proxy ended the call itself,
 * `clientAborted` when the client cancelled.
 * @public
 */
export interface GrpcForwarderEvents {
  /** A call arrived (`:path`), before any check. */
  call: (method: string) => void;
  /** A member's response headers are passed to the client. */
  forwarded: (event: GrpcForwardedEvent) => void;
  /** A member could not be reached; the call goes to the next. */
  retried: (event: GrpcRetriedEvent) => void;
  /** The proxy ended the call itself. */
  dropped: (event: GrpcDroppedEvent) => void;
  /** The client cancelled the call. */
  clientAborted: (event: GrpcClientAbortedEvent) => void;
  /** The call is over (once per call). */
  finished: (event: GrpcFinishedEvent) => void;
}
