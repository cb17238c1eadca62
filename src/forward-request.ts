import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import createDebug from 'debug';
import type { EventEmitter } from 'eventemitter3';
import { DeadlineQueue } from './deadline-queue.js';
import type { DeadlineNode } from './deadline-queue.js';
import type { Endpoint } from './endpoint.js';
import type { EndpointBalancer } from './endpoint-balancer.js';
import { UpstreamError } from './errors.js';
import { sendJsonError } from './json-error.js';
import type { DropReason, V2ProxyHandlerEvents } from './proxy-events.js';
import { isTlsHandshakeFailure } from './tls-options.js';

const debug = createDebug('etcd-v2-proxy:forward');

/**
 * Sends one client request to the cluster and streams the answer back.
 *
 * Retry policy: the request moves on to the next endpoint only when it cannot
 * have reached etcd (no connection was made: refused, unreachable, dial
 * timeout) or when its method is GET or HEAD and nothing was sent to the
 * client yet. A POST, PUT or DELETE whose bytes may have reached a member is
 * never sent again (etcd's proxy re-sends it, which can create a second
 * in-order key for one POST: etcd-io/etcd#3169-style duplicate writes).
 */

/** Timeouts and shared state the forwarder needs; built once per handler. */
export interface ForwardSettings {
  readonly balancer: EndpointBalancer;
  /** ms to establish a TCP connection to an endpoint (etcd `--proxy-dial-timeout`). */
  readonly dialTimeout: number;
  /** ms to write the request once connected (etcd `--proxy-write-timeout`). */
  readonly writeTimeout: number;
  /** ms the upstream may stay silent once the request is written; 0 = no limit (etcd `--proxy-read-timeout`). */
  readonly readTimeout: number;
  /** ms from the request written to the response headers; 0 = no limit. Watches get their headers at once. */
  readonly responseTimeout: number;
  /** `Via` entry this proxy adds, to recognise requests that loop back to it. */
  readonly via: string;
  /** Upstream requests in flight, so that `close()` can abort them. */
  readonly inFlight: Set<ClientRequest>;
  /** The subset of `inFlight` that are long-poll watches (`wait=true`): a graceful stop aborts them at once. */
  readonly watches: Set<ClientRequest>;
  /** Where request outcomes are reported (the handler itself). */
  readonly events: EventEmitter<V2ProxyHandlerEvents>;
  /** The dial, write and response-header deadlines (see {@link forwardDeadlines}). */
  readonly deadlines: ForwardDeadlines;
  /** Set when the handler stops (drain or close): requests it aborts say nothing against their endpoint. */
  stopping: boolean;
  /** The proxy's own CORS is configured: members' Access-Control-* headers are dropped (the handler sets the proxy's). */
  readonly stripCors: boolean;
}

/** https sockets whose TLS handshake is over: a pooled one is reused ready. */
const secured = new WeakSet<Socket>();

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

/** The property under which node objects of one request point back to it. */
const EXCHANGE = Symbol('etcd-v2-proxy.exchange');
interface Carrier {
  [EXCHANGE]?: Exchange;
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
  req: IncomingMessage,
  res: ServerResponse,
  body: Buffer[] | undefined,
  bodyLength: number,
  endpoints: readonly Endpoint[],
  settings: ForwardSettings,
  arrived: number,
): void {
  new Exchange(req, res, body, bodyLength, endpoints, settings, arrived).attempt(0);
}

/**
 * One client request and its attempts, one endpoint at a time. The state
 * lives in this one object and the event listeners are shared functions
 * that find it through {@link EXCHANGE}: a request allocates no closures.
 */
class Exchange implements DeadlineNode<Exchange> {
  dueAt = 0;
  dueQueue: DeadlineQueue<Exchange> | undefined = undefined;
  dueBefore: Exchange | undefined = undefined;
  dueAfter: Exchange | undefined = undefined;

  readonly method: string;
  readonly headers: string[];
  readonly retryable: boolean;
  readonly watch: boolean;
  clientGone = false;
  /** Index in `endpoints` of the current attempt. */
  index = 0;
  endpoint: Endpoint;
  /** The current attempt's upstream request and, once answered, its response. */
  up: ClientRequest | undefined = undefined;
  upRes: IncomingMessage | undefined = undefined;
  phase = Phase.Over;
  /** The current attempt's endpoint got its `release()`. */
  released = true;

  constructor(
    readonly req: IncomingMessage & Carrier,
    readonly res: ServerResponse & Carrier,
    /** Dropped once no retry can need it. */
    public body: Buffer[] | undefined,
    bodyLength: number,
    readonly endpoints: readonly Endpoint[],
    readonly settings: ForwardSettings,
    readonly arrived: number,
  ) {
    this.method = req.method ?? 'GET';
    this.headers = upstreamRequestHeaders(req.rawHeaders, req.socket.remoteAddress, body === undefined ? -1 : bodyLength, settings.via);
    this.retryable = SAFE_METHODS.has(this.method);
    this.watch = req.url !== undefined && req.url.includes('wait=true');
    this.endpoint = endpoints[0]!;
    res[EXCHANGE] = this;
    res.on('close', onClientClose);
  }

  attempt(index: number): void {
    const { settings } = this;
    const endpoint = (this.endpoint = this.endpoints[index]!);
    this.index = index;
    this.upRes = undefined;
    this.phase = Phase.Dialing;
    this.released = false;
    const up: ClientRequest & Carrier = endpoint.request({ method: this.method, path: this.req.url, headers: this.headers, setHost: false });
    this.up = up;
    up[EXCHANGE] = this;
    settings.inFlight.add(up);
    if (this.watch) settings.watches.add(up);
    up.on('socket', onUpSocket);
    up.on('response', onUpResponse);
    up.on('error', onUpError);
    up.on('close', onUpClose);
    if (this.body !== undefined) for (const chunk of this.body) up.write(chunk);
    up.end();
  }

  /** Ends the current attempt with `err` (a deadline passed). */
  fail(err: UpstreamError): void {
    this.up?.destroy(err);
  }

  connected(): void {
    const { settings, up } = this;
    if (this.phase !== Phase.Dialing || up === undefined) return;
    if (up.writableFinished) {
      this.written();
    } else {
      this.phase = Phase.Writing;
      if (settings.deadlines.write !== undefined) settings.deadlines.write.add(this);
      else settings.deadlines.dial.remove(this);
      up.on('finish', onUpFinish);
    }
    if (settings.readTimeout > 0) up.setTimeout(settings.readTimeout, onUpReadTimeout);
  }

  written(): void {
    if (this.phase !== Phase.Dialing && this.phase !== Phase.Writing) return;
    this.phase = Phase.Waiting;
    // Written to a live connection: only a GET or HEAD may still be sent elsewhere.
    if (!this.retryable) this.body = undefined;
    const { deadlines } = this.settings;
    if (deadlines.response !== undefined) deadlines.response.add(this);
    else this.dueQueue?.remove(this);
  }

  answered(upRes: IncomingMessage & Carrier): void {
    const { settings, endpoint, res } = this;
    this.dueQueue?.remove(this);
    const status = upRes.statusCode ?? 502;
    // A member that is stopping or lost its leader answers a read with 5xx
    // ("server stopped", "request timed out"): a GET or HEAD may still go
    // to another member, as nothing has reached the client yet.
    if (this.retryable && status >= 500 && status <= 504 && this.index + 1 < this.endpoints.length) {
      upRes.resume();
      this.failed(new UpstreamError(endpoint.url, 'request', `answered ${status}`));
      return;
    }
    this.phase = Phase.Streaming;
    this.upRes = upRes;
    upRes[EXCHANGE] = this;
    if (endpoint.state === 'down') settings.balancer.reportAnswer(endpoint);
    const { events } = settings;
    if (events.listenerCount('forwarded') > 0) {
      events.emit('forwarded', {
        method: this.method,
        url: this.req.url ?? '',
        endpoint: endpoint.url,
        status,
        durationMs: performance.now() - this.arrived,
        attempts: this.index + 1,
        watch: this.watch,
      });
    }
    res.writeHead(status, upRes.statusMessage, downstreamResponseHeaders(upRes.rawHeaders, settings.stripCors));
    // A watch (`?wait=true`) answers with headers at once and the event much
    // later, without a Content-Length: pass the headers on now.
    if (rawHeader(upRes.rawHeaders, 'content-length') === undefined) res.flushHeaders();
    upRes.on('error', onUpResError);
    upRes.on('close', onUpResClose);
    upRes.on('end', onUpResEnd);
    upRes.pipe(res);
  }

  /** The current attempt is over, however it ended: its endpoint and in-flight entries are released. */
  over(): void {
    if (this.released) return;
    this.released = true;
    const { settings, up } = this;
    this.dueQueue?.remove(this);
    if (up !== undefined) {
      settings.inFlight.delete(up);
      if (this.watch) settings.watches.delete(up);
    }
    this.endpoint.release();
  }

  failed(err: Error): void {
    if (this.phase === Phase.Over) return;
    const wasPhase = this.phase;
    this.phase = Phase.Over;
    this.over();
    const { settings, endpoint, method, req, res } = this;
    if (this.clientGone || settings.stopping) {
      debug('%s %s to %s aborted: %s', method, req.url, endpoint.url, this.clientGone ? 'client went away' : 'proxy closing');
      if (!this.clientGone) res.destroy();
      return;
    }
    // A TLS alert from the member (it refused this proxy's certificate) comes before it read any request.
    const phase =
      wasPhase === Phase.Dialing || (wasPhase !== Phase.Streaming && isTlsHandshakeFailure(err))
        ? 'connect'
        : wasPhase === Phase.Streaming
          ? 'response'
          : 'request';
    const failure = err instanceof UpstreamError ? err : new UpstreamError(endpoint.url, phase, endpoint.describeFailure(err), { cause: err });
    settings.balancer.reportFailure(endpoint, failure);
    debug('%s %s to %s failed (%s): %s', method, req.url, endpoint.url, failure.phase, failure.message);
    if (res.headersSent) {
      this.dropped('failed-response', 0, failure);
      res.destroy();
      return;
    }
    const mayRetry = failure.phase === 'connect' || (this.retryable && failure.phase === 'request');
    const next = this.endpoints[this.index + 1];
    if (mayRetry && next !== undefined) {
      const { events } = settings;
      if (events.listenerCount('retried') > 0) {
        events.emit('retried', { method, url: req.url ?? '', from: endpoint.url, to: next.url, error: failure });
      }
      this.attempt(this.index + 1);
      return;
    }
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
    sendJsonError(res, 502, `httpproxy: unable to get response from ${this.index + 1} endpoint(s)`);
  }

  dropped(reason: DropReason, status: number, error: UpstreamError): void {
    const { events } = this.settings;
    if (events.listenerCount('dropped') > 0) events.emit('dropped', { method: this.method, url: this.req.url ?? '', reason, status, error });
  }
}

// The listeners: `this` is the emitter; the request is found through it.

function onClientClose(this: ServerResponse & Carrier): void {
  const x = this[EXCHANGE];
  if (x === undefined || this.writableFinished) return;
  x.clientGone = true;
  x.up?.destroy();
  const { events } = x.settings;
  if (events.listenerCount('clientAborted') > 0) {
    events.emit('clientAborted', { method: x.method, url: x.req.url ?? '', endpoint: x.endpoint.url, durationMs: performance.now() - x.arrived });
  }
}

function onUpSocket(this: ClientRequest & Carrier, socket: Socket & Carrier): void {
  const x = this[EXCHANGE];
  if (x === undefined || x.up !== this) return;
  // Over https nothing of the request is sent before the TLS handshake is done: that is when it counts as connected.
  const tls = socket instanceof TLSSocket;
  if (tls ? secured.has(socket) : !socket.connecting) {
    x.connected();
    return;
  }
  x.settings.deadlines.dial.add(x);
  socket[EXCHANGE] = x;
  if (tls) socket.once('secureConnect', onSocketSecured);
  else socket.once('connect', onSocketConnected);
}

function onSocketConnected(this: Socket & Carrier): void {
  const x = this[EXCHANGE];
  this[EXCHANGE] = undefined;
  if (x !== undefined && x.up?.socket === this) x.connected();
}

function onSocketSecured(this: Socket & Carrier): void {
  secured.add(this);
  onSocketConnected.call(this);
}

function onUpFinish(this: ClientRequest & Carrier): void {
  const x = this[EXCHANGE];
  if (x !== undefined && x.up === this) x.written();
}

function onUpReadTimeout(this: ClientRequest & Carrier): void {
  const x = this[EXCHANGE];
  if (x === undefined || x.up !== this) return;
  const { readTimeout } = x.settings;
  const phase = x.phase === Phase.Streaming ? 'response' : 'request';
  x.fail(new UpstreamError(x.endpoint.url, phase, `read timeout after ${readTimeout} ms`, { timeout: true }));
}

function onUpResponse(this: ClientRequest & Carrier, upRes: IncomingMessage): void {
  const x = this[EXCHANGE];
  if (x !== undefined && x.up === this && x.phase !== Phase.Over) x.answered(upRes);
  else upRes.resume();
}

function onUpError(this: ClientRequest & Carrier, err: Error): void {
  const x = this[EXCHANGE];
  if (x !== undefined && x.up === this) x.failed(err);
}

function onUpClose(this: ClientRequest & Carrier): void {
  const x = this[EXCHANGE];
  if (x !== undefined && x.up === this) x.over();
}

function onUpResError(this: IncomingMessage & Carrier, err: Error): void {
  const x = this[EXCHANGE];
  if (x !== undefined && x.upRes === this) x.failed(err);
}

function onUpResClose(this: IncomingMessage & Carrier): void {
  const x = this[EXCHANGE];
  if (x === undefined || x.upRes !== this || this.complete) return;
  x.failed(new UpstreamError(x.endpoint.url, 'response', 'the member closed the response before its end'));
}

function onUpResEnd(this: IncomingMessage & Carrier): void {
  const x = this[EXCHANGE];
  if (x === undefined || x.upRes !== this) return;
  x.phase = Phase.Over;
  x.over();
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
