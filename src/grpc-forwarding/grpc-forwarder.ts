import { constants } from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import type { EndpointBalancer } from '../balancer/endpoint-balancer.js';
import type { Endpoint } from '../balancer/endpoint.js';
import { UpstreamError } from '../errors.js';
import type { ProxyMode } from '../handler/v2-proxy-handler.js';
import { upstreamTlsOption } from '../tls-options.js';
import type { UpstreamTlsOptions } from '../tls-options.js';
import { pollUntil } from '../poll-until.js';
import { balancerOption, durationOption, modeOption, signalOption } from '../validate-options.js';
import type { GrpcDropReason, GrpcForwarderEvents } from './grpc-events.js';
import { routeOf } from './grpc-routes.js';
import type { GrpcRoute } from './grpc-routes.js';
import { GrpcCode, parseGrpcStatus, statusTrailers, trailersOnly } from './grpc-status.js';
import { H2UpstreamPool } from './h2-upstream-pool.js';

const debug = createDebug('etcd-v2-proxy:grpc');

/**
 * Options of {@link GrpcForwarder}.
 * @public
 */
export interface GrpcForwarderOptions {
  /** The members and their health, shared with the v2 forwarding: a member that failed is skipped by both. */
  balancer: EndpointBalancer;
  /**
   * `readonly` answers the calls that change the cluster (Put, DeleteRange,
   * Txn, Compact, leases, member and auth changes...) with UNIMPLEMENTED,
   * as v2 writes get 501. etcd flag: `--proxy readonly`. Default: `readwrite`.
   */
  mode?: ProxyMode;
  /** ms a connection to a member may take, TLS included. etcd flag: `--proxy-dial-timeout`. Default: 1000. */
  dialTimeout?: number;
  /** ms a member's HTTP/2 connection with no call on it is kept. Default: 30000. */
  idleTimeout?: number;
  /**
   * ms between HTTP/2 PINGs on a member's connection while calls are open
   * on it. Members close the connection of a client that pings more often
   * than their `--grpc-keepalive-min-time` (5 s by default). Default: 10000.
   */
  keepaliveTime?: number;
  /**
   * ms a PING may go unanswered before the member is taken for dead: its
   * calls end with UNAVAILABLE (their clients call again, through the
   * proxy, to another member) and the balancer marks it down. A member cut
   * off by the network, or stopped, keeps its TCP connection open: without
   * this, its calls (a watch has no deadline) would wait forever. Default: 5000.
   */
  keepaliveTimeout?: number;
  /**
   * TLS towards `https://` client URLs (ALPN `h2`). createProxy gives the
   * same as for v2 forwarding (`--cert-file`... or the `--peer-*` ones).
   * Default: no client certificate, Node's bundled CAs.
   */
  tls?: UpstreamTlsOptions;
  /** Aborting it closes the forwarder, as {@link GrpcForwarder.close} does. */
  signal?: AbortSignal;
}

/** What the balancer is asked for each kind of call: writes go to the leader first, reads that need a leader avoid degraded members. */
const PLAN_METHOD = { leader: 'PUT', read: 'GET', stream: 'GET' } as const;
const QUORUM_URL = '/v3?quorum=true';
const UPSTREAM_REQUEST = { endStream: false };
const RESPOND_STREAMING = { waitForTrailers: true };
const RESPOND_ENDED = { endStream: true };
const END_STREAM_FLAG = 0x1;
/**
 * Bytes of a call's request kept (the client's buffers, not copies) until
 * the member's response headers, so that a stream the member refuses
 * (REFUSED_STREAM: HTTP/2 says it did nothing with it) can go to the next
 * member. A larger request is not kept, and such a call is not re-sent.
 */
const REPLAY_LIMIT = 64 * 1024;

const CALL = Symbol('grpcCall');
type Carrier = { [CALL]?: GrpcCall };

/**
 * Forwards etcd v3 clients' gRPC calls, as HTTP/2 streams, to the members:
 * give {@link GrpcForwarder.handle} the streams of a node:http2 server
 * (`createProxy()` does, on the same port as v2). Nothing of the messages
 * is decoded: frames pass as bytes, with their headers, trailers and
 * `grpc-timeout`; flow control holds back the side that reads too slowly.
 *
 * - Routing by the method in `:path` (grpc-routes.ts): writes to the leader
 *   when known, reads spread like v2 reads, streams spread and kept on their
 *   member for their life.
 * - A call that could not reach a member (refused, dial timeout, TLS
 *   refused, connection gone before its stream was opened) moves on to the
 *   next; once its stream was opened on a member it is never sent again.
 * - A member whose connection breaks is reported to the balancer (as v2
 *   failures are), and its calls end with UNAVAILABLE so that clients retry
 *   through the proxy.
 * - One HTTP/2 connection per member carries all calls to it.
 * @public
 */
export class GrpcForwarder extends EventEmitter<GrpcForwarderEvents> {
  /** The mode calls are served in. */
  readonly mode: ProxyMode;
  /** The stream handler for a node:http2 server's `stream` event. Bound: pass it around freely. */
  readonly handle: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;
  /** What the calls share; not part of the public API. */
  readonly #state: ForwardState;
  private closed = false;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.close();
  private readonly onEndpoints = (): void => this.#state.pool.retain(this.#state.balancer.endpoints);

  constructor(options: GrpcForwarderOptions) {
    super();
    const balancer = balancerOption(options);
    this.mode = modeOption(options.mode);
    const pool = new H2UpstreamPool({
      dialTimeout: durationOption('dialTimeout', options.dialTimeout, 1000, 1),
      idleTimeout: durationOption('idleTimeout', options.idleTimeout, 30000, 1),
      keepaliveTime: durationOption('keepaliveTime', options.keepaliveTime, 10000, 1),
      keepaliveTimeout: durationOption('keepaliveTimeout', options.keepaliveTimeout, 5000, 1),
      tls: upstreamTlsOption(options.tls, 'tls'),
      onLost: (endpoint, err) => {
        if (this.#state.stopping) return;
        balancer.reportFailure(endpoint, new UpstreamError(endpoint.url, 'response', `HTTP/2 connection lost: ${endpoint.describeFailure(err)}`, { cause: err }));
      },
    });
    this.#state = { events: this, balancer, pool, calls: new Set(), stopping: false };
    balancer.on('endpoints', this.onEndpoints);
    this.handle = (stream, headers) => this.serve(stream, headers);
    this.signal = signalOption(options.signal);
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (this.signal?.aborted) this.close();
  }

  /** gRPC calls in flight (open streams included). */
  get inFlight(): number {
    return this.#state.calls.size;
  }

  /**
   * Graceful stop: later calls get UNAVAILABLE, open streams (Watch,
   * LeaseKeepAlive) end at once with UNAVAILABLE (their clients re-open them
   * elsewhere and resume from their revision), other calls may finish for up
   * to `timeoutMs`, then what is left is ended as by {@link GrpcForwarder.close}.
   */
  async drain(timeoutMs: number): Promise<void> {
    const state = this.#state;
    state.stopping = true;
    for (const call of [...state.calls]) if (call.route.kind === 'stream') call.drop('shutting-down', GrpcCode.UNAVAILABLE, 'etcd-v2-proxy is shutting down');
    await pollUntil(() => state.calls.size === 0 || this.closed, timeoutMs);
    this.close();
  }

  /** Ends every call in flight with UNAVAILABLE (cancelling it on its member) and closes the members' connections. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const state = this.#state;
    state.stopping = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    state.balancer.off('endpoints', this.onEndpoints);
    for (const call of [...state.calls]) call.drop('shutting-down', GrpcCode.UNAVAILABLE, 'etcd-v2-proxy is shutting down');
    state.pool.close();
  }

  private serve(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const path = headers[':path'];
    if (this.listenerCount('call') > 0) this.emit('call', path ?? '');
    // Without a listener, an 'error' (a client's RST) would be thrown; 'close' says all that is needed.
    stream.on('error', ignore);
    const route = routeOf(path);
    const state = this.#state;
    if (state.stopping) {
      this.refuse(stream, path, route, 'shutting-down', GrpcCode.UNAVAILABLE, 'etcd-v2-proxy is shutting down');
      return;
    }
    if (this.mode === 'readonly' && route.mutates) {
      this.refuse(stream, path, route, 'readonly', GrpcCode.UNIMPLEMENTED, `etcd-v2-proxy is readonly: ${path ?? ''} is not forwarded`);
      return;
    }
    const plan = state.balancer.plan(PLAN_METHOD[route.kind], route.quorum ? QUORUM_URL : '');
    if (plan.length === 0) {
      this.refuse(stream, path, route, 'zero-endpoints', GrpcCode.UNAVAILABLE, 'etcd-v2-proxy knows no member to send the call to');
      return;
    }
    const call = new GrpcCall(state, stream, headers, path ?? '', route, plan);
    state.calls.add(call);
    (stream as ServerHttp2Stream & Carrier)[CALL] = call;
    stream.on('close', onClientClose);
    stream.on('drain', onClientDrain);
    stream.on('wantTrailers', onWantTrailers);
    call.attempt(0);
  }

  private refuse(stream: ServerHttp2Stream, path: string | undefined, route: GrpcRoute, reason: GrpcDropReason, code: number, message: string): void {
    debug('%s: %s', path, message);
    if (!stream.destroyed && !stream.headersSent) stream.respond(trailersOnly(code, message), RESPOND_ENDED);
    stream.resume();
    const method = path ?? '';
    if (this.listenerCount('dropped') > 0) this.emit('dropped', { method, reason, grpcStatus: code });
    if (this.listenerCount('finished') > 0) this.emit('finished', { method, endpoint: undefined, grpcStatus: code, durationMs: 0, stream: route.kind === 'stream' });
  }
}

/** What a forwarder's calls share. */
interface ForwardState {
  /** Emits the calls' events. */
  readonly events: GrpcForwarder;
  readonly balancer: EndpointBalancer;
  readonly pool: H2UpstreamPool;
  readonly calls: Set<GrpcCall>;
  /** Draining or closed: no new call, no failure reported. */
  stopping: boolean;
}

/** One client call, from its arrival to its end; it goes to one member at a time, and to the next only when the first was never reached. */
class GrpcCall {
  index = -1;
  endpoint: Endpoint | undefined;
  session: ClientHttp2Session | undefined;
  up: (ClientHttp2Stream & Carrier) | undefined;
  /** Response headers were sent to the client. */
  responded = false;
  /** The member's trailers (or its trailers-only answer's headers). */
  trailers: IncomingHttpHeaders | undefined;
  /** The trailers the client gets once its data is written. */
  pendingTrailers: OutgoingHttpHeaders | undefined;
  /** The request's data sent so far, while it may still be sent to another member (see REPLAY_LIMIT); undefined once it may not. */
  sent: Buffer[] | undefined = [];
  sentBytes = 0;
  /** The client's request is complete (END_STREAM). */
  clientEnded = false;
  /** The client's data listeners are on. */
  reading = false;
  /** The outcome is settled (answered, dropped or cancelled). */
  done = false;
  /** The endpoint and session were released. */
  released = true;
  readonly arrived = performance.now();

  constructor(
    readonly fwd: ForwardState,
    readonly client: ServerHttp2Stream & Carrier,
    readonly headers: IncomingHttpHeaders,
    readonly method: string,
    readonly route: GrpcRoute,
    readonly plan: readonly Endpoint[],
  ) {}

  attempt(index: number): void {
    this.index = index;
    const endpoint = this.plan[index]!;
    this.endpoint = endpoint;
    this.session = undefined;
    endpoint.inFlight++;
    this.released = false;
    this.fwd.pool.acquire(endpoint, this);
  }

  sessionReady(session: ClientHttp2Session): void {
    this.session = session;
    if (this.done) {
      this.release();
      return;
    }
    const headers: OutgoingHttpHeaders = { ...this.headers, ':scheme': this.endpoint!.url.startsWith('https:') ? 'https' : 'http' };
    let up: ClientHttp2Stream & Carrier;
    try {
      up = session.request(headers, UPSTREAM_REQUEST);
    } catch (err) {
      // The connection is closing (GOAWAY): nothing was sent on it.
      this.unreached(err as Error);
      return;
    }
    this.up = up;
    up[CALL] = this;
    // On a connection that is up, the stream is opened within request().
    if (up.pending) up.on('ready', onUpReady);
    up.on('response', onUpResponse);
    up.on('trailers', onUpTrailers);
    up.on('data', onUpData);
    up.on('drain', onUpDrain);
    up.on('end', onUpEnd);
    up.on('close', onUpClose);
    up.on('error', ignore);
    if (!up.pending) this.opened();
  }

  sessionFailed(err: Error): void {
    this.unreached(err);
  }

  /** The current member was not reached (`memberFault`: it failed, rather than refused this one stream): the next one, if any. */
  unreached(err: Error, memberFault = true): void {
    const endpoint = this.endpoint!;
    this.release();
    if (this.done) return;
    const { fwd } = this;
    const timeout = (err as NodeJS.ErrnoException).code === 'ETIMEDOUT';
    const failure = err instanceof UpstreamError ? err : new UpstreamError(endpoint.url, 'connect', endpoint.describeFailure(err), { cause: err, timeout });
    if (memberFault && !fwd.stopping) fwd.balancer.reportFailure(endpoint, failure);
    const next = this.plan[this.index + 1];
    debug('%s to %s: not reached (%s)', this.method, endpoint.url, failure.message);
    if (next !== undefined && !fwd.stopping) {
      if (fwd.events.listenerCount('retried') > 0) fwd.events.emit('retried', { method: this.method, from: endpoint.url, to: next.url, error: failure });
      this.attempt(this.index + 1);
      return;
    }
    this.drop('failed-sending', GrpcCode.UNAVAILABLE, `etcd-v2-proxy could not reach a member (${this.index + 1} tried; last: ${failure.message})`, failure);
  }

  /** The member's stream is open: the client's data flows to it from now on (after what an earlier member refused, if any). */
  opened(): void {
    const { client, up, sent } = this;
    if (sent !== undefined && sent.length > 0) for (const chunk of sent) up!.write(chunk);
    if (this.clientEnded) up!.end();
    if (!this.reading) {
      this.reading = true;
      client.on('data', onClientData);
      client.on('end', onClientEnd);
    }
    // Paused while an earlier member refused the stream.
    client.resume();
  }

  response(headers: IncomingHttpHeaders, flags: number): void {
    if (this.done) return;
    const { fwd, client } = this;
    const endpoint = this.endpoint!;
    if (endpoint.state === 'down' || endpoint.suspected) fwd.balancer.reportAnswer(endpoint);
    if (fwd.events.listenerCount('forwarded') > 0) {
      fwd.events.emit('forwarded', {
        method: this.method,
        endpoint: endpoint.url,
        durationMs: performance.now() - this.arrived,
        attempts: this.index + 1,
        stream: this.route.kind === 'stream',
      });
    }
    this.sent = undefined;
    if (client.destroyed || client.closed) return;
    this.responded = true;
    if ((flags & END_STREAM_FLAG) !== 0) {
      // Trailers-only: the status is in these headers.
      this.trailers = headers;
      client.respond(headers as OutgoingHttpHeaders, RESPOND_ENDED);
      this.finish(parseGrpcStatus(headers['grpc-status']));
      return;
    }
    client.respond(headers as OutgoingHttpHeaders, RESPOND_STREAMING);
  }

  /** The member's stream ended after its trailers: the client gets them once its data is written. */
  completed(): void {
    if (this.done) return;
    const trailers = this.trailers;
    if (trailers === undefined) {
      // Ended without a status: its connection broke (the stream ends as the connection goes), or a protocol violation.
      this.broken(this.up!);
      return;
    }
    if (!this.responded) {
      // Its response headers never came (the client was gone): nothing to pass on.
      this.finish(parseGrpcStatus(trailers['grpc-status']));
      return;
    }
    this.pendingTrailers = trailers as OutgoingHttpHeaders;
    if (!this.client.destroyed) this.client.end();
    this.finish(parseGrpcStatus(trailers['grpc-status']));
  }

  /** The member's stream closed without its trailers. */
  broken(up: ClientHttp2Stream): void {
    if (this.done) return;
    const endpoint = this.endpoint!;
    const rst = up.rstCode ?? constants.NGHTTP2_NO_ERROR;
    // Refused before any of it was processed (HTTP/2 says so), or never opened: the next member may have it.
    if (!this.responded && this.sent !== undefined && (up.id === undefined || rst === constants.NGHTTP2_REFUSED_STREAM)) {
      this.up = undefined;
      this.client.pause();
      const refused = up.id !== undefined;
      // A refused stream (too many streams, the member going away) says nothing against the member.
      this.unreached(new UpstreamError(endpoint.url, 'connect', refused ? 'the member refused the stream (REFUSED_STREAM)' : 'the connection closed before the call was sent'), !refused);
      return;
    }
    const sessionGone = this.session === undefined || this.session.destroyed || this.session.closed;
    if (!sessionGone && rst === constants.NGHTTP2_NO_ERROR) {
      // A protocol violation, not a lost member: INTERNAL, as a gRPC client says of it (a write may have been done: not UNAVAILABLE).
      this.drop('member-lost', GrpcCode.INTERNAL, `etcd-v2-proxy: the member ${endpoint.url} ended the call without a status`);
      return;
    }
    const failure = new UpstreamError(
      endpoint.url,
      this.responded ? 'response' : 'request',
      sessionGone ? 'the connection to the member broke' : `the member reset the stream (HTTP/2 error ${rst})`,
    );
    const code = sessionGone ? GrpcCode.UNAVAILABLE : rstToGrpc(rst);
    this.drop('member-lost', code, `etcd-v2-proxy: ${failure.message}; the call was not sent again`, failure);
  }

  /** Ends the call with the proxy's own status, and cancels it on its member. */
  drop(reason: GrpcDropReason, code: number, message: string, error?: UpstreamError): void {
    if (this.done) return;
    const { fwd, client } = this;
    debug('%s (%s): %s', this.method, reason, message);
    if (!client.destroyed && !client.closed) {
      if (!this.responded) {
        this.responded = true;
        client.respond(trailersOnly(code, message), RESPOND_ENDED);
      } else {
        this.pendingTrailers = statusTrailers(code, message);
        client.end();
      }
    }
    if (fwd.events.listenerCount('dropped') > 0) fwd.events.emit('dropped', { method: this.method, reason, grpcStatus: code, ...(error === undefined ? {} : { error }) });
    this.finish(code);
  }

  /** The client cancelled, or its connection went away. */
  cancelled(): void {
    if (this.done) return;
    const { fwd } = this;
    if (fwd.events.listenerCount('clientAborted') > 0) {
      fwd.events.emit('clientAborted', { method: this.method, endpoint: this.session === undefined ? undefined : this.endpoint?.url, durationMs: performance.now() - this.arrived });
    }
    this.finish(GrpcCode.CANCELLED);
  }

  /** The outcome is known: the member's stream is cancelled if still open, the client's data is no longer read, the call is over. */
  finish(code: number): void {
    this.done = true;
    const { up, client, fwd } = this;
    // Still open on the member (a client's cancel, a dropped call, a stream the member ended before the client did): cancelled there.
    if (up !== undefined && !up.closed && !up.destroyed && !(up.writableEnded && up.readableEnded)) {
      up.close(client.rstCode !== undefined && client.rstCode !== 0 ? client.rstCode : constants.NGHTTP2_CANCEL);
    }
    client.off('data', onClientData);
    client.off('end', onClientEnd);
    client.resume();
    fwd.calls.delete(this);
    // The leader just changed: the next Status or write must not go to the old one for a refresh interval.
    if (code === GrpcCode.OK && this.route.movesLeader) fwd.balancer.relearnLeader();
    if (fwd.events.listenerCount('finished') > 0) {
      fwd.events.emit('finished', {
        method: this.method,
        endpoint: this.session === undefined ? undefined : this.endpoint?.url,
        grpcStatus: code,
        durationMs: performance.now() - this.arrived,
        stream: this.route.kind === 'stream',
      });
    }
    this.release();
  }

  /** Gives back the member's connection and in-flight count, once per attempt. */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.session !== undefined) this.fwd.pool.release(this.session);
    // Over while its connection was being made: it waits no longer.
    else this.fwd.pool.withdraw(this.endpoint!, this);
    this.endpoint!.release();
  }
}

/** The gRPC status a client library gives an HTTP/2 RST_STREAM code (as grpc-go and grpc-js map them). */
function rstToGrpc(rst: number): number {
  switch (rst) {
    case constants.NGHTTP2_REFUSED_STREAM:
      return GrpcCode.UNAVAILABLE;
    case constants.NGHTTP2_CANCEL:
      return GrpcCode.CANCELLED;
    case constants.NGHTTP2_ENHANCE_YOUR_CALM:
      return GrpcCode.RESOURCE_EXHAUSTED;
    case constants.NGHTTP2_INADEQUATE_SECURITY:
      return GrpcCode.PERMISSION_DENIED;
    default:
      return GrpcCode.INTERNAL;
  }
}

function ignore(): void {}

// The listeners on the streams: `this` is the stream; its call is found through it.

function onClientData(this: ServerHttp2Stream & Carrier, chunk: Buffer): void {
  const call = this[CALL]!;
  const up = call.up;
  if (up === undefined || !up.writable) return;
  const sent = call.sent;
  if (sent !== undefined) {
    call.sentBytes += chunk.length;
    if (call.sentBytes <= REPLAY_LIMIT) sent.push(chunk);
    else call.sent = undefined;
  }
  if (!up.write(chunk)) this.pause();
}

function onClientEnd(this: ServerHttp2Stream & Carrier): void {
  const call = this[CALL]!;
  call.clientEnded = true;
  const up = call.up;
  if (up !== undefined && up.writable) up.end();
}

function onClientDrain(this: ServerHttp2Stream & Carrier): void {
  this[CALL]!.up?.resume();
}

function onWantTrailers(this: ServerHttp2Stream & Carrier): void {
  const trailers = this[CALL]!.pendingTrailers ?? statusTrailers(GrpcCode.UNKNOWN, 'etcd-v2-proxy: no status');
  this.sendTrailers(trailers);
}

function onClientClose(this: ServerHttp2Stream & Carrier): void {
  this[CALL]!.cancelled();
}

function onUpReady(this: ClientHttp2Stream & Carrier): void {
  const call = this[CALL]!;
  if (call.up === this && !call.done) call.opened();
}

function onUpResponse(this: ClientHttp2Stream & Carrier, headers: IncomingHttpHeaders, flags: number): void {
  const call = this[CALL]!;
  if (call.up === this) call.response(headers, flags);
}

function onUpTrailers(this: ClientHttp2Stream & Carrier, trailers: IncomingHttpHeaders): void {
  const call = this[CALL]!;
  if (call.up === this) call.trailers = trailers;
}

function onUpData(this: ClientHttp2Stream & Carrier, chunk: Buffer): void {
  const call = this[CALL]!;
  if (call.up !== this || call.done || call.client.destroyed) return;
  if (!call.client.write(chunk)) this.pause();
}

function onUpDrain(this: ClientHttp2Stream & Carrier): void {
  this[CALL]!.client.resume();
}

function onUpEnd(this: ClientHttp2Stream & Carrier): void {
  const call = this[CALL]!;
  if (call.up === this) call.completed();
}

function onUpClose(this: ClientHttp2Stream & Carrier): void {
  const call = this[CALL]!;
  if (call.up !== this || call.done) return;
  if (call.trailers !== undefined) call.completed();
  else call.broken(this);
}
