import createDebug from 'debug';
import type { EventEmitter } from 'eventemitter3';
import { DeadlineQueue } from '../transport/deadline-queue.js';
import type { DeadlineNode } from '../transport/deadline-queue.js';
import { connectTo } from '../balancer/endpoint.js';
import type { Endpoint } from '../balancer/endpoint.js';
import { needsQuorum } from '../balancer/endpoint-balancer.js';
import type { EndpointBalancer } from '../balancer/endpoint-balancer.js';
import { UpstreamError } from '../errors.js';
import { sendJsonError } from '../handler/json-error.js';
import type { DropReason, HedgeOutcome, V2ProxyHandlerEvents } from '../handler/proxy-events.js';
import { isTlsHandshakeFailure } from '../tls-options.js';
import { UpstreamReadTimeout } from '../transport/upstream-connection.js';
import type { UpstreamConnection, UpstreamHandler } from '../transport/upstream-connection.js';
import { queryFlag } from '../handler/v2-query.js';
import { HedgeBudget } from './hedge-budget.js';
import { HedgeDelay } from './hedge-delay.js';
import { HedgeTimers } from './hedge-timers.js';
import type { HedgeNode } from './hedge-timers.js';

const debug = createDebug('etcd-v2-proxy:forward');

/**
 * Sends one client request to the cluster and streams the answer back.
 *
 * Retry policy: the request moves on to the next endpoint only when it cannot
 * have reached etcd (no connection was made: refused, unreachable, dial
 * timeout) or when its method is GET or HEAD and nothing was sent to the
 * client yet. A POST, PUT or DELETE whose bytes may have reached a member is
 * never sent again (etcd's proxy re-sends it, which can create a second
 * in-order key for one POST).
 *
 * Hedged reads: a plain read (GET or HEAD, not a watch; quorum reads
 * included) that has no response head after the hedge delay (hedge-delay.ts)
 * is sent to a second available member as well, if the budget allows
 * (hedge-budget.ts): the first response head wins and the other request is
 * aborted. A write or a watch is never hedged, nor a read whose client got
 * anything already. The member that lost, when it had waited longer than the
 * delay (the first one always has), is suspected (EndpointBalancer.suspect):
 * new reads go elsewhere until it answers again. When the first request
 * fails while the second is on its way, the retry goes out as without
 * hedging (the second's member included, as a fresh request) and the second
 * runs on: the first head of the two wins; with no retry left, the request
 * waits for the second. When the second fails, the first goes on. With pipelined
 * reads (`pipelineReads`) a hedge goes on a connection of its own, never
 * behind other reads: it is there to get round a member that is stuck.
 */

/**
 * What the forwarder reads of a client's request. node's `IncomingMessage`
 * has it, and so does the request createProxy's own HTTP/1.1 reader parses
 * (client-connection.ts).
 */
export interface ClientRequest {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  /** Names and values alternating, as received. */
  readonly rawHeaders: string[];
  /**
   * Optional: the request line and header lines as received (each line
   * with its CRLF, without the empty line), given only when none of the
   * headers is one the forwarder drops or merges (hop-by-hop, Via,
   * X-Forwarded-For): then they go to the member unchanged, followed by the
   * forwarder's own lines. createProxy's own reader gives it.
   */
  readonly head?: Buffer | undefined;
  readonly socket: { readonly remoteAddress?: string | undefined };
}

/**
 * What the forwarder writes an answer to. node's `ServerResponse` has it,
 * and so does createProxy's own HTTP/1.1 writer (client-connection.ts).
 */
export interface ClientResponse {
  /** True once `writeHead` was called. */
  readonly headersSent: boolean;
  /** The status `writeHead` was given. */
  readonly statusCode: number;
  /** True once the client's connection closed before the answer was finished (its 'close' was emitted). */
  readonly destroyed?: boolean;
  /** True once the whole answer was handed to the client's connection. */
  readonly writableFinished: boolean;
  writeHead(status: number, statusText: string | undefined, headers: string[]): unknown;
  /**
   * Optional: takes the member's status line and header lines as received
   * (see {@link UpstreamConnection.rawHead}) instead of a header list, to
   * pass them on unchanged. `lengthUnknown`: the body has no length (it is
   * re-chunked); `hasDate`: the lines hold a Date header. node's
   * `ServerResponse` has no such method; createProxy's own writer has.
   */
  writeRawHead?(lines: Buffer, status: number, lengthUnknown: boolean, hasDate: boolean): unknown;
  /** Sends the head now (a watch's body may come hours later). */
  flushHeaders(): void;
  /** False: wait for `drain` before writing more. */
  write(chunk: Buffer): boolean;
  end(body?: string): unknown;
  /** Drops the client's connection. */
  destroy(): unknown;
  /** The client's connection closed (before or after the answer was finished). */
  on(event: 'close', listener: () => void): unknown;
  once(event: 'drain', listener: () => void): unknown;
}

/** Timeouts and shared state the forwarder needs; built once per handler. */
export interface ForwardSettings {
  readonly balancer: EndpointBalancer;
  /** ms the upstream may stay silent once the request is written; 0 = no limit (etcd `--proxy-read-timeout`). */
  readonly readTimeout: number;
  /** `Via` entry this proxy adds, to recognise requests that loop back to it. */
  readonly via: string;
  /** Upstream requests in flight, so that `close()` can abort them. */
  readonly inFlight: Set<InFlight>;
  /** The subset of `inFlight` that are long-poll watches (`wait=true`): a graceful stop aborts them at once. */
  readonly watches: Set<InFlight>;
  /** Where request outcomes are reported (the handler itself). */
  readonly events: EventEmitter<V2ProxyHandlerEvents>;
  /**
   * The dial (etcd `--proxy-dial-timeout`), write (`--proxy-write-timeout`) and
   * response-header deadlines (see {@link forwardDeadlines}).
   */
  readonly deadlines: ForwardDeadlines;
  /** Set when the handler stops (drain or close): requests it aborts say nothing against their endpoint. */
  stopping: boolean;
  /** The proxy's own CORS is configured: members' Access-Control-* headers are dropped (the handler sets the proxy's). */
  readonly stripCors: boolean;
  /** Most plain GETs pipelined on one connection (V2ProxyHandlerOptions.pipelineReads); 1: none. */
  readonly pipelineReads: number;
  /** Hedged reads (V2ProxyHandlerOptions.hedgeDelay); undefined when turned off. */
  readonly hedging: Hedging | undefined;
}

/** The state of hedged reads, one per handler. */
export interface Hedging {
  readonly delay: HedgeDelay;
  readonly budget: HedgeBudget;
  readonly timers: HedgeTimers<Exchange>;
}

/** Hedged reads with `setting` (`hedgeDelay`: ms, or `'auto'`); undefined for 0 (off). */
export function forwardHedging(setting: number | 'auto'): Hedging | undefined {
  if (setting === 0) return undefined;
  return { delay: new HedgeDelay(setting), budget: new HedgeBudget(), timers: new HedgeTimers<Exchange>(onHedgeDue) };
}

function onHedgeDue(x: Exchange): void {
  x.hedgeDue();
}

// Hop-by-hop headers (RFC 9110 section 7.6.1) plus Expect, which this proxy
// answers itself (node:http sends the 100 Continue) and so must not pass on.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'trailers',
  'transfer-encoding',
  'upgrade',
]);

const SAFE_METHODS = new Set(['GET', 'HEAD']);

/** Where a request stands, for its deadlines and its error messages. */
const enum Phase {
  /** Waiting for a connection (or a TLS handshake) to the endpoint. */
  Dialing,
  /** Connected; the request is being written. */
  Writing,
  /** Written; waiting for the response headers. */
  Waiting,
  /** Headers received; the body streams to the client. */
  Streaming,
  /** This attempt is over (answered, failed or aborted). */
  Over,
}

/** The property under which the client's response points back to its exchange. */
const EXCHANGE = Symbol('etcd-v2-proxy.exchange');
interface Carrier {
  [EXCHANGE]?: Exchange;
}

/** A request the handler may have to abort (on close, or a watch on drain). */
export interface InFlight {
  /** Aborts the request's upstream connection (the client gets what a failure gets). */
  abort(): void;
}

/** One deadline queue per timeout of the forwarder (undefined: no limit); built once per handler. */
export interface ForwardDeadlines {
  readonly dial: DeadlineQueue<Exchange>;
  readonly write: DeadlineQueue<Exchange> | undefined;
  readonly response: DeadlineQueue<Exchange> | undefined;
  close(): void;
}

/** The queues for `dialTimeout`, `writeTimeout` and `responseTimeout` (0: none). */
export function forwardDeadlines(dialTimeout: number, writeTimeout: number, responseTimeout: number): ForwardDeadlines {
  const dial = new DeadlineQueue<Exchange>(dialTimeout, (x) =>
    x.fail(new UpstreamError(x.endpoint.url, 'connect', `dial timeout after ${dialTimeout} ms`, { timeout: true })),
  );
  const write =
    writeTimeout > 0
      ? new DeadlineQueue<Exchange>(writeTimeout, (x) =>
          x.fail(new UpstreamError(x.endpoint.url, 'request', `write timeout after ${writeTimeout} ms`, { timeout: true })),
        )
      : undefined;
  const response =
    responseTimeout > 0
      ? new DeadlineQueue<Exchange>(responseTimeout, (x) =>
          x.fail(new UpstreamError(x.endpoint.url, 'request', `no response headers within ${responseTimeout} ms`, { timeout: true })),
        )
      : undefined;
  return {
    dial,
    write,
    response,
    close() {
      dial.close();
      write?.close();
      response?.close();
    },
  };
}

/**
 * Forwards `req` to the endpoints in `endpoints`, in that order, following
 * the retry policy above. `body` is the request body already read (etcd's
 * bodies are small form posts), or `undefined` when the request has none.
 */
export function forwardRequest(
  req: ClientRequest,
  res: ClientResponse,
  body: Buffer[] | undefined,
  bodyLength: number,
  endpoints: readonly Endpoint[],
  settings: ForwardSettings,
  arrived: number,
): void {
  const x = new Exchange(req, res, body, bodyLength, endpoints, settings, arrived);
  x.attempt(0);
  if (x.hedgeable && x.phase !== Phase.Over) {
    const hedging = settings.hedging!;
    hedging.budget.read(arrived);
    x.hedgeDelay = hedging.delay.current;
    hedging.timers.add(x, x.sentAt + x.hedgeDelay);
  }
}

/**
 * One client request and its attempts, one endpoint at a time. The state
 * lives in this one object, which is also the handler its upstream
 * connection reports to: a request allocates no closures.
 */
class Exchange implements DeadlineNode<Exchange>, HedgeNode<Exchange>, UpstreamHandler, InFlight {
  dueAt = 0;
  dueQueue: DeadlineQueue<Exchange> | undefined = undefined;
  dueBefore: Exchange | undefined = undefined;
  dueAfter: Exchange | undefined = undefined;
  hedgeAt = 0;
  hedgeQueue: HedgeTimers<Exchange> | undefined = undefined;
  hedgePrev: Exchange | undefined = undefined;
  hedgeNext: Exchange | undefined = undefined;
  hedgeReady = false;

  readonly method: string;
  /** The request line and headers sent upstream, built once for every attempt; dropped once the answer streams. */
  head: string | Buffer;
  /** A request that came without Host: what a head for another member is built from. */
  private hostless: { url: string; headers: string[]; emptyBody: boolean } | undefined;
  readonly retryable: boolean;
  readonly watch: boolean;
  /** How many requests the connection this one goes on may carry at once (see UpstreamPool.acquire); 1 for all but plain GETs. */
  readonly pipeline: number;
  clientGone = false;
  /** Index in `endpoints` of the current attempt. */
  index = 0;
  endpoint: Endpoint;
  /** The current attempt's connection. */
  up: UpstreamConnection | undefined = undefined;
  phase = Phase.Over;
  /** The current attempt's endpoint got its `release()`. */
  released = true;
  /** Waiting for the client's `drain` to read on. */
  paused = false;
  /** Aborted by the handler's drain() or close(): not the member's failure. */
  aborted = false;
  /** The handler the current attempt's connection reports to: this exchange, or its hedge once that carries the request. */
  current: UpstreamHandler = this;
  /** `performance.now()` when the current attempt was sent. */
  sentAt = 0;
  /** Attempts sent to a member, the hedge included (a pipelined request sent again is not another). */
  tries = 0;
  /** A plain read (GET or HEAD, not a watch) of a handler that hedges. */
  readonly hedgeable: boolean;
  /** The hedge delay this read waits, in ms. */
  hedgeDelay = 0;
  /** The hedge, once sent (kept once over, so that a retry skips its endpoint). */
  hedge: Hedge | undefined = undefined;

  constructor(
    readonly req: ClientRequest,
    readonly res: ClientResponse & Carrier,
    /** Dropped once no retry can need it. */
    public body: Buffer[] | undefined,
    bodyLength: number,
    readonly endpoints: readonly Endpoint[],
    readonly settings: ForwardSettings,
    readonly arrived: number,
  ) {
    this.method = req.method ?? 'GET';
    const url = req.url ?? '/';
    this.retryable = SAFE_METHODS.has(this.method);
    const emptyBody = body === undefined && !this.retryable;
    if (req.head !== undefined) this.head = forwardedHead(req.head, req.socket.remoteAddress, settings.via, emptyBody);
    else {
      const headers = upstreamRequestHeaders(req.rawHeaders, req.socket.remoteAddress, body === undefined ? -1 : bodyLength, settings.via);
      // No Host (HTTP/1.0, which node:http lets through without one): HTTP/1.1 to the member needs one, its own authority.
      if (!hasHost(headers)) this.hostless = { url, headers, emptyBody };
      this.head = requestHead(this.method, url, this.hostless === undefined ? headers : ['Host', authority(endpoints[0]!), ...headers], emptyBody);
    }
    // etcd takes `wait=1`, `wait=t` and the like as `wait=true`.
    this.watch = queryFlag(url, 'wait');
    // Only a GET the member answers from memory at once may wait behind another: a key read, no watch, no
    // quorum read (etcd answers GET /health with a quorum read too).
    this.pipeline =
      settings.pipelineReads > 1 && this.method === 'GET' && !this.watch && inKeySpace(url) && !queryFlag(url, 'quorum') ? settings.pipelineReads : 1;
    this.hedgeable = settings.hedging !== undefined && this.retryable && !this.watch;
    this.endpoint = endpoints[0]!;
    res[EXCHANGE] = this;
    res.on('close', onClientClose);
  }

  /** The head to send to `endpoint`: the one built, or for a request without Host one naming `endpoint`'s authority. */
  headFor(endpoint: Endpoint): string | Buffer {
    const h = this.hostless;
    return h === undefined || endpoint === this.endpoints[0] ? this.head : requestHead(this.method, h.url, ['Host', authority(endpoint), ...h.headers], h.emptyBody);
  }

  /** Sends the request to `endpoints[index]` (`again`: the same attempt sent again, see onUpstreamDetached). */
  attempt(index: number, again = false): void {
    const { settings } = this;
    const endpoint = (this.endpoint = this.endpoints[index]!);
    this.index = index;
    this.current = this;
    this.sentAt = this.tries === 0 ? this.arrived : performance.now();
    if (!again) this.tries++;
    this.phase = Phase.Dialing;
    this.released = false;
    settings.inFlight.add(this);
    if (this.watch) settings.watches.add(this);
    const up = connectTo(endpoint, this, this.pipeline);
    this.up = up;
    if (!up.connected) settings.deadlines.dial.add(this);
    up.send(this.method, this.headFor(endpoint), this.body, this);
  }

  /** Ends the current attempt with `err` (a deadline passed: the member is at fault). */
  fail(err: UpstreamError): void {
    if (this.up !== undefined) this.up.abort(this.current, err, true);
  }

  abort(): void {
    this.aborted = true;
    this.endHedge('cancelled');
    if (this.up !== undefined) this.up.abort(this.current, new Error('aborted'));
  }

  /**
   * The hedge delay passed (in a setImmediate after the timer, so that an
   * answer that came meanwhile was read first): sends the request to a
   * second member too, when one is available and the budget allows.
   */
  hedgeDue(): void {
    const { settings } = this;
    if (this.phase === Phase.Over || this.phase === Phase.Streaming || this.hedge !== undefined) return;
    if (this.clientGone || this.aborted || settings.stopping || this.res.headersSent) return;
    const from = this.endpoint;
    const to = this.hedgeTarget();
    if (to === undefined) {
      this.hedged(from, undefined, 'no-endpoint');
      return;
    }
    if (!settings.hedging!.budget.take(performance.now())) {
      this.hedged(from, undefined, 'no-budget');
      return;
    }
    this.tries++;
    debug('%s %s: no answer from %s after %d ms, sent to %s as well', this.method, this.req.url, from.url, this.hedgeDelay, to.url);
    this.hedge = new Hedge(this, from, to);
  }

  /** The member a hedge goes to: the next one in the plan that can serve this read and is neither down nor suspected. */
  private hedgeTarget(): Endpoint | undefined {
    const quorum = queryFlag(this.req.url ?? '', 'quorum');
    for (let i = this.index + 1; i < this.endpoints.length; i++) {
      const e = this.endpoints[i]!;
      if (e === this.endpoint || e.suspected || e.retired) continue;
      if (e.state === 'up' || (e.state === 'degraded' && !quorum)) return e;
    }
    return undefined;
  }

  /** The hedge's response head came first: it carries the request from now on, the first attempt is aborted. */
  hedgeWon(hedge: Hedge, conn: UpstreamConnection, status: number, statusText: string, hasBody: boolean, lengthUnknown: boolean): void {
    // The attempt it beat: the first one, or a retry sent after the first failed (no head start: not suspected).
    const headStart = this.sentAt <= hedge.sentAt;
    const lostUp = this.up;
    const lostHandler = this.current;
    const lost = this.endpoint;
    this.over();
    this.adopt(hedge);
    hedge.settle('won');
    // Its onUpstreamError finds the exchange on the hedge's connection: ignored.
    lostUp?.abort(lostHandler, new Error('another member answered first (hedged read)'));
    // It had the delay's head start and still lost.
    if (headStart && !this.settings.stopping) this.settings.balancer.suspect(lost);
    this.onUpstreamHead(conn, status, statusText, hasBody, lengthUnknown);
  }

  /** Makes `hedge` the current attempt (the exchange's own is over). */
  private adopt(hedge: Hedge): void {
    const { settings } = this;
    hedge.adopted = true;
    this.current = hedge;
    this.up = hedge.up;
    this.endpoint = hedge.endpoint;
    this.sentAt = hedge.sentAt;
    this.phase = hedge.phase;
    this.released = false;
    settings.inFlight.add(this);
    const { deadlines } = settings;
    if (this.phase === Phase.Dialing) deadlines.dial.add(this);
    else if (this.phase === Phase.Writing) deadlines.write?.add(this);
    else if (this.phase === Phase.Waiting) deadlines.response?.add(this);
  }

  /** The read ends without its hedge's answer: a hedge on its way is aborted; one that carried the request ends with `outcome`. */
  private endHedge(outcome: 'failed' | 'cancelled'): void {
    this.hedgeQueue?.remove(this);
    const hedge = this.hedge;
    if (hedge === undefined || hedge.settled) return;
    if (hedge.adopted) hedge.settle(outcome);
    else hedge.stop('cancelled');
  }

  /** Reports a hedged read's outcome. */
  hedged(from: Endpoint, to: Endpoint | undefined, outcome: HedgeOutcome): void {
    const { events } = this.settings;
    if (events.listenerCount('hedged') > 0) {
      events.emit('hedged', { method: this.method, url: this.req.url ?? '', from: from.url, to: to?.url, outcome, delayMs: this.hedgeDelay });
    }
  }

  /**
   * Index in `endpoints` of the endpoint a retry goes to, -1 when none is
   * left. The hedge's endpoint is skipped (it was tried), unless
   * `retryHedged`: a read was hedged. The hedge went out a hedge delay after
   * the first attempt, so it may be stuck in the same trouble (a quorum
   * read sent during an election waits on a leader that is gone; a fresh
   * one is answered once the new leader is in place), where the retry sent
   * after the first attempt failed, as without hedging, comes after it. So
   * its member still gets a fresh request in the retry order.
   */
  private nextIndex(retryHedged = false): number {
    const skip = retryHedged ? undefined : this.hedge?.endpoint;
    for (let i = this.index + 1; i < this.endpoints.length; i++) if (this.endpoints[i] !== skip) return i;
    return -1;
  }

  onUpstreamConnected(conn: UpstreamConnection): void {
    if (conn !== this.up || this.phase !== Phase.Dialing) return;
    const { settings } = this;
    this.phase = Phase.Writing;
    if (settings.deadlines.write !== undefined) settings.deadlines.write.add(this);
    else this.dueQueue?.remove(this);
    if (settings.readTimeout > 0) conn.setReadTimeout(settings.readTimeout);
  }

  onUpstreamWritten(conn: UpstreamConnection): void {
    if (conn !== this.up || (this.phase !== Phase.Dialing && this.phase !== Phase.Writing)) return;
    this.phase = Phase.Waiting;
    // Written to a live connection: only a GET or HEAD may still be sent elsewhere.
    if (!this.retryable) this.body = undefined;
    const { deadlines } = this.settings;
    if (deadlines.response !== undefined) deadlines.response.add(this);
    else this.dueQueue?.remove(this);
  }

  onUpstreamHead(conn: UpstreamConnection, status: number, statusText: string, _hasBody: boolean, lengthUnknown: boolean): void {
    if (conn !== this.up || this.phase === Phase.Over) return;
    const { settings, endpoint, res, hedge } = this;
    this.dueQueue?.remove(this);
    // A member that is stopping or lost its leader answers a read with 5xx
    // ("server stopped", "request timed out"): a GET or HEAD may still go
    // to another member (or wait for its hedge), as nothing has reached the client yet.
    if (this.retryable && status >= 500 && status <= 504 && ((hedge !== undefined && !hedge.settled) || this.nextIndex() >= 0)) {
      conn.discard();
      this.failed(new UpstreamError(endpoint.url, 'request', `answered ${status}`));
      return;
    }
    this.phase = Phase.Streaming;
    if (this.hedgeable) {
      this.hedgeQueue?.remove(this);
      settings.hedging!.delay.observe(performance.now() - this.sentAt);
      if (hedge !== undefined && !hedge.settled) {
        if (hedge.adopted) hedge.settle('won');
        else hedge.stop('lost');
      }
    }
    if (endpoint.state === 'down' || endpoint.suspected) settings.balancer.reportAnswer(endpoint);
    try {
      const raw = settings.stripCors ? conn.rawHeadWithoutCors() : conn.rawHead;
      if (raw !== undefined && res.writeRawHead !== undefined) {
        res.writeRawHead(raw, status, lengthUnknown, conn.headHasDate);
      } else res.writeHead(status, statusText === '' ? undefined : statusText, downstreamResponseHeaders(conn.headerList(), settings.stripCors));
    } catch (err) {
      // node refused the member's head (the parser lets through only what node accepts; this is the last guard).
      this.phase = Phase.Waiting;
      conn.discard();
      this.failed(err as Error);
      return;
    }
    // No attempt follows once the answer streams (an open watch would hold the head for hours).
    this.head = '';
    const { events } = settings;
    if (events.listenerCount('forwarded') > 0) {
      events.emit('forwarded', {
        method: this.method,
        url: this.req.url ?? '',
        endpoint: endpoint.url,
        status,
        durationMs: performance.now() - this.arrived,
        attempts: this.tries,
        watch: this.watch,
      });
    }
    // A watch (`?wait=true`) answers with headers at once and the event much
    // later, without a Content-Length: pass the headers on now.
    if (lengthUnknown) res.flushHeaders();
  }

  onUpstreamData(conn: UpstreamConnection, chunk: Buffer): boolean {
    if (conn !== this.up || this.phase !== Phase.Streaming) return true;
    if (this.res.write(chunk)) return true;
    if (!this.paused) {
      this.paused = true;
      this.res.once('drain', onClientDrain);
    }
    return false;
  }

  onUpstreamEnd(conn: UpstreamConnection): void {
    if (conn !== this.up || this.phase !== Phase.Streaming) return;
    this.phase = Phase.Over;
    this.over();
    this.res.end();
  }

  onUpstreamError(conn: UpstreamConnection, err: Error): void {
    if (conn === this.up) this.failed(err);
  }

  onUpstreamDetached(conn: UpstreamConnection): void {
    if (conn !== this.up || this.phase === Phase.Over) return;
    // Pipelined behind a request that left its connection: nothing of the answer came; the same endpoint again.
    this.over();
    this.attempt(this.index, true);
  }

  /** The current attempt is over, however it ended: its endpoint and in-flight entries are released. */
  over(): void {
    if (this.released) return;
    this.released = true;
    const { settings } = this;
    this.dueQueue?.remove(this);
    settings.inFlight.delete(this);
    if (this.watch) settings.watches.delete(this);
    this.endpoint.release();
  }

  failed(err: Error): void {
    if (this.phase === Phase.Over) return;
    const wasPhase = this.phase;
    this.phase = Phase.Over;
    this.over();
    const { settings, endpoint, method, req, res } = this;
    if (this.clientGone || this.aborted) {
      this.endHedge('cancelled');
      debug('%s %s to %s aborted: %s', method, req.url, endpoint.url, this.clientGone ? 'client went away' : 'proxy closing');
      if (!this.clientGone) res.destroy();
      return;
    }
    // A TLS alert from the member (it refused this proxy's certificate) on a new
    // connection comes before it read any request (TLS 1.3 sends it after the handshake looks done).
    const phase =
      wasPhase === Phase.Dialing || (wasPhase !== Phase.Streaming && this.up?.reused === false && isTlsHandshakeFailure(err))
        ? 'connect'
        : wasPhase === Phase.Streaming
          ? 'response'
          : 'request';
    const failure = upstreamFailure(endpoint, phase, err);
    reportFailure(settings.balancer, endpoint, failure, method, req.url ?? '');
    debug('%s %s to %s failed (%s): %s', method, req.url, endpoint.url, failure.phase, failure.message);
    if (res.headersSent) {
      this.endHedge('failed');
      this.dropped('failed-response', 0, failure);
      res.destroy();
      return;
    }
    const mayRetry = failure.phase === 'connect' || (this.retryable && failure.phase === 'request');
    const hedge = this.hedge;
    // The hedge carried the request and failed: it is over.
    if (hedge !== undefined && hedge.adopted && !hedge.settled) hedge.settle('failed');
    // A hedge still on its way does not take the retry's place: it was sent a
    // hedge delay after the attempt that just failed and may be stuck in the
    // same trouble (a quorum read sent during an election), so the retry goes
    // out as without hedging (its member included: a fresh request) while the
    // hedge runs on; the first head of the two wins. With no retry left, the
    // request waits for the hedge.
    const waiting = hedge !== undefined && !hedge.settled && !hedge.adopted ? hedge : undefined;
    const nextIndex = this.nextIndex(hedge !== undefined);
    const next = nextIndex >= 0 ? this.endpoints[nextIndex] : waiting?.endpoint;
    if (mayRetry && next !== undefined) {
      const { events } = settings;
      if (events.listenerCount('retried') > 0) {
        events.emit('retried', { method, url: req.url ?? '', from: endpoint.url, to: next.url, error: failure });
      }
      if (nextIndex >= 0) this.attempt(nextIndex);
      else this.adopt(waiting!);
      return;
    }
    this.endHedge('failed');
    if (!mayRetry) {
      this.dropped(failure.timeout ? 'timeout' : 'failed-sending', failure.timeout ? 504 : 502, failure);
      sendJsonError(
        res,
        failure.timeout ? 504 : 502,
        `httpproxy: ${method} to ${endpoint.url} failed after it may have reached etcd (${failure.message}); not re-sent to another endpoint`,
      );
      return;
    }
    this.dropped('failed-sending', 502, failure);
    sendJsonError(res, 502, `httpproxy: unable to get response from ${this.tries} endpoint(s)`);
  }

  dropped(reason: DropReason, status: number, error: UpstreamError): void {
    const { events } = this.settings;
    if (events.listenerCount('dropped') > 0) events.emit('dropped', { method: this.method, url: this.req.url ?? '', reason, status, error });
  }
}

/**
 * The second request of a hedged read, to another member. It reports to
 * its exchange: until a response head comes it only tracks its own
 * progress; once it carries the request (it answered first, or the first
 * attempt failed) it hands every report on to the exchange.
 */
class Hedge implements UpstreamHandler {
  readonly up: UpstreamConnection;
  readonly sentAt: number;
  phase = Phase.Dialing;
  /** It carries the request: the exchange's current attempt. */
  adopted = false;
  /** Its outcome was reported. */
  settled = false;

  constructor(
    readonly exchange: Exchange,
    /** The member the read was waiting on. */
    readonly from: Endpoint,
    readonly endpoint: Endpoint,
  ) {
    this.sentAt = performance.now();
    // A connection of its own: never behind pipelined reads.
    this.up = connectTo(endpoint, this, 1);
    this.up.send(exchange.method, exchange.headFor(endpoint), exchange.body, this);
  }

  settle(outcome: HedgeOutcome): void {
    if (this.settled) return;
    this.settled = true;
    this.exchange.hedged(this.from, this.endpoint, outcome);
  }

  /** Aborts it while on its way: the first attempt answered first (`lost`), or the read ended (`cancelled`). */
  stop(outcome: 'lost' | 'cancelled'): void {
    if (this.settled || this.adopted) return;
    const waited = performance.now() - this.sentAt;
    this.phase = Phase.Over;
    this.settle(outcome);
    this.up.abort(this, new Error('another member answered first (hedged read)'));
    this.endpoint.release();
    const { settings } = this.exchange;
    debug('hedged %s %s to %s %s after %d ms', this.exchange.method, this.exchange.req.url, this.endpoint.url, outcome, Math.round(waited));
    if (outcome === 'lost' && waited > this.exchange.hedgeDelay && !settings.stopping) settings.balancer.suspect(this.endpoint);
  }

  /** It failed on its way: the first attempt goes on. */
  private failed(err: Error): void {
    const wasPhase = this.phase;
    this.phase = Phase.Over;
    this.settle('failed');
    this.endpoint.release();
    const x = this.exchange;
    if (x.settings.stopping || x.aborted || x.clientGone) return;
    const failure = upstreamFailure(this.endpoint, wasPhase === Phase.Dialing ? 'connect' : 'request', err);
    debug('hedged %s %s to %s failed (%s): %s', x.method, x.req.url, this.endpoint.url, failure.phase, failure.message);
    reportFailure(x.settings.balancer, this.endpoint, failure, x.method, x.req.url ?? '');
  }

  onUpstreamConnected(conn: UpstreamConnection): void {
    if (this.adopted) {
      this.exchange.onUpstreamConnected(conn);
      return;
    }
    if (conn !== this.up || this.phase !== Phase.Dialing) return;
    this.phase = Phase.Writing;
    const { readTimeout } = this.exchange.settings;
    if (readTimeout > 0) conn.setReadTimeout(readTimeout);
  }

  onUpstreamWritten(conn: UpstreamConnection): void {
    if (this.adopted) this.exchange.onUpstreamWritten(conn);
    else if (conn === this.up && (this.phase === Phase.Dialing || this.phase === Phase.Writing)) this.phase = Phase.Waiting;
  }

  onUpstreamHead(conn: UpstreamConnection, status: number, statusText: string, hasBody: boolean, lengthUnknown: boolean): void {
    if (this.adopted) {
      this.exchange.onUpstreamHead(conn, status, statusText, hasBody, lengthUnknown);
      return;
    }
    if (conn !== this.up || this.settled) return;
    if (status >= 500 && status <= 504) {
      conn.discard();
      this.failed(new UpstreamError(this.endpoint.url, 'request', `answered ${status}`));
      return;
    }
    this.exchange.hedgeWon(this, conn, status, statusText, hasBody, lengthUnknown);
  }

  onUpstreamData(conn: UpstreamConnection, chunk: Buffer): boolean {
    return this.adopted ? this.exchange.onUpstreamData(conn, chunk) : true;
  }

  onUpstreamEnd(conn: UpstreamConnection): void {
    if (this.adopted) this.exchange.onUpstreamEnd(conn);
  }

  onUpstreamError(conn: UpstreamConnection, err: Error): void {
    if (this.adopted) this.exchange.onUpstreamError(conn, err);
    else if (conn === this.up && !this.settled) this.failed(err);
  }

  onUpstreamDetached(conn: UpstreamConnection): void {
    // Never pipelined: not expected; handled as a failure of this connection.
    if (this.adopted) this.exchange.onUpstreamError(conn, new Error('connection can no longer carry the request'));
    else if (conn === this.up && !this.settled) this.failed(new Error('connection can no longer carry the request'));
  }
}

/** `err` of a request to `endpoint`, as the UpstreamError the events and the balancer get. */
function upstreamFailure(endpoint: Endpoint, phase: 'connect' | 'request' | 'response', err: Error): UpstreamError {
  if (err instanceof UpstreamError) return err;
  if (err instanceof UpstreamReadTimeout) return new UpstreamError(endpoint.url, phase, err.message, { timeout: true });
  return new UpstreamError(endpoint.url, phase, endpoint.describeFailure(err), { cause: err });
}

/** Tells the balancer of a member's failure, unless it says nothing new. */
function reportFailure(balancer: EndpointBalancer, endpoint: Endpoint, failure: UpstreamError, method: string, url: string): void {
  // A degraded member (alive, no leader: its /health says so) can't answer a write or a quorum read: its
  // failing one says nothing new, and must not hide that it still serves plain reads.
  const expected = endpoint.state === 'degraded' && failure.phase !== 'connect' && needsQuorum(method, url);
  if (!expected) balancer.reportFailure(endpoint, failure);
}

/** A request under `/v2/keys` (the v2 key space), in origin form. */
function inKeySpace(url: string): boolean {
  return url.startsWith('/v2/keys') && (url.length === 8 || url.charCodeAt(8) === 0x2f /* / */ || url.charCodeAt(8) === 0x3f /* ? */);
}

// The listeners on the client's response: `this` is the response; its exchange is found through it.

function onClientClose(this: ClientResponse & Carrier): void {
  const x = this[EXCHANGE];
  if (x === undefined || this.writableFinished) return;
  x.clientGone = true;
  if (x.phase !== Phase.Over) x.abort();
  const { events } = x.settings;
  if (events.listenerCount('clientAborted') > 0) {
    events.emit('clientAborted', { method: x.method, url: x.req.url ?? '', endpoint: x.endpoint.url, durationMs: performance.now() - x.arrived });
  }
}

function onClientDrain(this: ClientResponse & Carrier): void {
  const x = this[EXCHANGE];
  if (x === undefined) return;
  x.paused = false;
  if (x.phase === Phase.Streaming) x.up?.resume();
}

/**
 * The request line and header lines of a request to a member, ending with
 * the empty line. `emptyBody`: the client sent no body with a method that
 * may have one; `Content-Length: 0` says so (as node's client would).
 */
/** Whether a flat name/value header list holds a Host. */
function hasHost(headers: readonly string[]): boolean {
  for (let i = 0; i < headers.length; i += 2) if (headers[i]!.length === 4 && headers[i]!.toLowerCase() === 'host') return true;
  return false;
}

/** An endpoint's authority (host:port) for a Host header. */
function authority(endpoint: Endpoint): string {
  return new URL(endpoint.url).host;
}

export function requestHead(method: string, path: string, headers: readonly string[], emptyBody: boolean): string {
  let head = `${method} ${path} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]!}: ${headers[i + 1]!}\r\n`;
  if (emptyBody) head += 'Content-Length: 0\r\n';
  return `${head}\r\n`;
}

/**
 * A request head a client sent with no header to drop or merge
 * (`lines`: its request line and header lines, as received), followed by
 * what {@link upstreamRequestHeaders} would add: the client's address in
 * X-Forwarded-For, this proxy's Via and, for an empty write, Content-Length 0.
 */
export function forwardedHead(lines: Buffer, clientAddress: string | undefined, via: string, emptyBody: boolean): Buffer {
  const tail = forwardedLines(clientAddress, via, emptyBody);
  const head = Buffer.allocUnsafe(lines.length + tail.length);
  lines.copy(head, 0);
  tail.copy(head, lines.length);
  return head;
}

// The lines forwardedHead adds, for the latest client address: a proxy on a host mostly serves the same few.
const added = { address: undefined as string | undefined, via: '', emptyBody: false, lines: Buffer.alloc(0) };

function forwardedLines(clientAddress: string | undefined, via: string, emptyBody: boolean): Buffer {
  if (added.lines.length === 0 || added.address !== clientAddress || added.via !== via || added.emptyBody !== emptyBody) {
    const forwardedFor = clientAddress === undefined ? '' : `X-Forwarded-For: ${clientAddress}\r\n`;
    added.lines = Buffer.from(`${forwardedFor}Via: ${via}\r\n${emptyBody ? 'Content-Length: 0\r\n' : ''}\r\n`, 'latin1');
    added.address = clientAddress;
    added.via = via;
    added.emptyBody = emptyBody;
  }
  return added.lines;
}

/**
 * The client's headers minus hop-by-hop ones (and those named in its
 * Connection header), with the client's address appended to X-Forwarded-For
 * and Content-Length set to the body read (`bodyLength` -1: no body).
 */
export function upstreamRequestHeaders(
  raw: readonly string[],
  clientAddress: string | undefined,
  bodyLength: number,
  via?: string,
): string[] {
  const named = connectionTokens(raw);
  const out: string[] = [];
  let forwardedFor: string | undefined;
  let viaChain: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || lower === 'expect' || lower === 'content-length') continue;
    if (named !== undefined && named.has(lower)) continue;
    if (lower === 'x-forwarded-for') {
      forwardedFor = forwardedFor === undefined ? raw[i + 1]! : `${forwardedFor}, ${raw[i + 1]!}`;
      continue;
    }
    if (lower === 'via' && via !== undefined) {
      viaChain = viaChain === undefined ? raw[i + 1]! : `${viaChain}, ${raw[i + 1]!}`;
      continue;
    }
    out.push(name, raw[i + 1]!);
  }
  if (clientAddress !== undefined) {
    out.push('X-Forwarded-For', forwardedFor === undefined ? clientAddress : `${forwardedFor}, ${clientAddress}`);
  } else if (forwardedFor !== undefined) {
    out.push('X-Forwarded-For', forwardedFor);
  }
  if (via !== undefined) out.push('Via', viaChain === undefined ? via : `${viaChain}, ${via}`);
  if (bodyLength >= 0) out.push('Content-Length', String(bodyLength));
  return out;
}

/**
 * The member's response headers minus hop-by-hop ones, and minus its
 * Access-Control-* headers when `stripCors` (the proxy sends its own).
 */
export function downstreamResponseHeaders(raw: readonly string[], stripCors = false): string[] {
  const named = connectionTokens(raw);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || (named !== undefined && named.has(lower))) continue;
    if (stripCors && lower.startsWith('access-control-')) continue;
    out.push(name, raw[i + 1]!);
  }
  return out;
}

/**
 * The first value of header `lowerName` (lower-case) in a raw header list.
 * Reading `req.headers` instead would build a whole object per message.
 */
export function rawHeader(raw: readonly string[], lowerName: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === lowerName.length && name.toLowerCase() === lowerName) return raw[i + 1];
  }
  return undefined;
}

/** Header names listed in Connection headers (RFC 9110 7.6.1), lower-cased; undefined when none. */
function connectionTokens(raw: readonly string[]): Set<string> | undefined {
  let tokens: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length !== 10 || raw[i]!.toLowerCase() !== 'connection') continue;
    for (const token of raw[i + 1]!.split(',')) {
      const t = token.trim().toLowerCase();
      if (t === '' || t === 'close' || t === 'keep-alive') continue;
      (tokens ??= new Set()).add(t);
    }
  }
  return tokens;
}
