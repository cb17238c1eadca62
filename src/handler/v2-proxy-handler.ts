import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import type { ClusterResolver } from '../cluster/cluster-resolver.js';
import { corsOption, isPreflight } from './cors.js';
import type { CorsPolicy } from './cors.js';
import type { EndpointBalancer } from '../balancer/endpoint-balancer.js';
import { InvalidOptionError } from '../errors.js';
import { forwardDeadlines, forwardHedging, forwardRequest, rawHeader } from '../forwarding/forward-request.js';
import type { ClientRequest, ClientResponse, ForwardSettings, InFlight } from '../forwarding/forward-request.js';
import { sendJsonError } from './json-error.js';
import { queryFlag } from './v2-query.js';
import type { DropReason, V2ProxyHandlerEvents } from './proxy-events.js';
import { balancerOption, describe, durationOption, modeOption, positiveIntegerOption, signalOption } from '../validate-options.js';
import { hedgeDelayOption } from '../forwarding/hedge-delay.js';
import { pollUntil } from '../poll-until.js';
import { directKeys } from '../v3-backend/v3-backend.js';
import type { DirectKeys, V3Backend } from '../v3-backend/v3-backend.js';

const debug = createDebug('etcd-v2-proxy:handler');

/**
 * `readwrite` forwards every request (etcd `--proxy on`); `readonly` forwards
 * GET and HEAD and answers every other method with 501 (etcd `--proxy readonly`).
 * @public
 */
export type ProxyMode = 'readwrite' | 'readonly';

/** The most GETs `pipelineReads` may put on one member connection (each may wait behind the ones before it). */
export const MAX_PIPELINE_READS = 64;

/**
 * Options of {@link V2ProxyHandler}.
 * @public
 */
export interface V2ProxyHandlerOptions {
  /** Where requests go. */
  balancer: EndpointBalancer;
  /** etcd flag: `--proxy on` (`readwrite`) or `--proxy readonly`. Default: `readwrite`. */
  mode?: ProxyMode;
  /** ms to connect to an endpoint before trying the next. etcd flag: `--proxy-dial-timeout`. Default: 1000. */
  dialTimeout?: number;
  /** ms to write a request to an endpoint once connected; 0 = no limit. etcd flag: `--proxy-write-timeout`. Default: 5000. */
  writeTimeout?: number;
  /**
   * ms an endpoint may stay silent once the request is written; 0 = no limit,
   * so that long-poll watches can wait. etcd flag: `--proxy-read-timeout`. Default: 0.
   */
  readTimeout?: number;
  /**
   * ms from a request written to an endpoint to its response headers; 0 = no
   * limit. etcd answers a watch's headers at once, so this applies to watches
   * too, while a watch's body may wait forever. A GET or HEAD that hits it
   * moves on to the next endpoint; a write gets 504. Default: 10000 (etcd's
   * proxy has no such limit).
   */
  responseTimeout?: number;
  /**
   * Identifies this proxy in the `Via` header it adds upstream; a request that
   * already carries it looped back and gets 508. Default: a random id.
   */
  proxyId?: string;
  /**
   * Largest request body forwarded, in bytes; a larger one gets 413 and is not
   * forwarded. Default: 10 MiB, the most etcd's v2 API itself reads from a form.
   */
  maxBodyBytes?: number;
  /**
   * The proxy's own CORS, with etcd's meaning: `"*"` for any origin, or the
   * allowed origins (`scheme://host[:port]`) as a comma-separated string or
   * an array. When set, every response carries the proxy's CORS headers
   * (each once: the members' Access-Control-* headers are dropped) and every
   * OPTIONS request is answered 200 by the proxy, in readonly mode too.
   * etcd flag: `--cors`. Default: not set: nothing is added and the
   * members' own CORS headers pass through (etcd members allow `*` by default).
   * The `etcd-v2-proxy` command sets `"*"` unless told otherwise, as etcd does.
   */
  cors?: string | readonly string[];
  /**
   * Where {@link PROXY_READY_PATH} reads the membership's last refresh and
   * staleness from (`createProxy` passes its resolver). Not needed to forward.
   * Default: none (the readiness answer then says only whether an endpoint
   * is available).
   */
  resolver?: MembershipView;
  /**
   * Most plain key reads (GETs under `/v2/keys`, no `wait`, no `quorum`)
   * written to one connection to a member before its answers come back
   * (HTTP/1.1 pipelining), when they arrive in the same turn of the event loop: they
   * go in one write, and the member answers them in order. Not an etcd
   * flag; CLI: `--pipeline-reads`. Default: 1 (no pipelining); at most 64.
   *
   * What it costs: a GET may wait behind the ones before it on the
   * connection while the member answers those. What it does not change: a
   * GET behind an answer whose client went away, or is still not taking it
   * 20 ms after it first had to wait, is sent again on another connection
   * before anything of its own answer is read; one whose connection fails,
   * or whose member let a deadline pass on the GET ahead, moves on to the
   * next endpoint, as any GET does. A value of 8 cut the proxy's CPU per
   * request by about 15 % in the benchmark, and the member's by about 10 %
   * (docs/benchmarks.md).
   */
  pipelineReads?: number;
  /**
   * Hedged reads: a plain read (GET or HEAD that is not a watch; quorum
   * reads included) with no response head after this many ms is sent to a
   * second available member as well; the first response head wins and the
   * other request is aborted. Writes and watches are never hedged, nor a
   * read whose client got any byte already. 0 turns hedging off. Not an
   * etcd flag; CLI: `--hedge-delay`. Default: `'auto'`.
   *
   * `'auto'`: twice the p99 of the time from a request sent to a member to
   * its response head, over the last 1,024 reads answered, at least 10 ms
   * and at most 500 ms (500 ms until the first answer). With a p99 of 2 ms
   * the delay is 10 ms; with 30 ms it is 60 ms.
   *
   * Budget: a read is hedged only while the hedges of the last 10 s number
   * fewer than 10 % of the plain reads of the last 10 s (or 10, whichever
   * is more), so a cluster that is slow as a whole is not sent twice the
   * reads. A member that lost a hedged read after waiting longer than the
   * delay (a stuck one: a GC pause, a full disk, a frozen VM) is suspected:
   * new reads go to the other members until it answers again (a request,
   * or the health probe sent at once and every second). The `hedged` event
   * and `etcd_v2_proxy_hedged_reads_total` report each hedged read's
   * outcome. With `pipelineReads`, a hedge goes on a connection of its own.
   */
  hedgeDelay?: number | 'auto';
  /**
   * Where the v2 API is served from. Default: not set: every request is
   * forwarded to the members' own v2 API (etcd's `--proxy`). A
   * {@link V3Backend}: the v2 API (`/v2/keys`, `/v2/members`, `/v2/machines`,
   * `/v2/stats/*`, `/v2/auth/*`) is answered from the cluster's v3 API, for
   * members that do not serve v2 (etcd 3.5's default, etcd 3.6); the rest
   * (`/version`, `/health`) is still forwarded. The handler routes to it and
   * ends its watches on {@link V2ProxyHandler.drain}; closing it is the
   * caller's job (`createProxy` does). CLI: `--backend v3`.
   */
  backend?: V3Backend;
  /** Aborting it closes the handler, as {@link V2ProxyHandler.close} does. */
  signal?: AbortSignal;
}

/**
 * What the readiness answer and the metrics read of the membership: a
 * {@link ClusterResolver} has all of it.
 * @public
 */
export type MembershipView = Pick<ClusterResolver, 'snapshot' | 'lastRefresh' | 'stale'>;

/** The path etcd's proxy answers itself with the endpoints it uses. */
const CONFIG_PATH = '/v2/config/local/proxy';

/**
 * The handler answers `GET` and `HEAD` on this path itself, without asking
 * the cluster: 200 when an endpoint is available, 503 when none is (or the
 * handler is closing), with a {@link ProxyReadiness} as JSON. For load
 * balancers and orchestrators; `GET /health` still goes to the cluster, as
 * with etcd's proxy. Not an etcd path: no etcd version serves `/proxy/`.
 * @public
 */
export const PROXY_READY_PATH = '/proxy/ready';

/**
 * The body of {@link PROXY_READY_PATH}: what this proxy knows, from memory.
 * @public
 */
export interface ProxyReadiness {
  /** True when at least one endpoint is available and the handler is not closing. */
  readonly ready: boolean;
  /** Endpoints not marked down. */
  readonly availableEndpoints: number;
  /** Endpoints known, available or not. */
  readonly endpoints: number;
  /** Members in the latest member list; null without a resolver or before its first answer. */
  readonly members: number | null;
  /** When the member list was last fetched (ISO 8601); null without a resolver or before its first answer. */
  readonly lastRefresh: string | null;
  /** ms since `lastRefresh`; null when it is null. */
  readonly lastRefreshAgeMs: number | null;
  /** True while no peer answers `/members` (the last known members are used); null without a resolver. */
  readonly stale: boolean | null;
  /** True once the handler is draining or closed. */
  readonly closing: boolean;
}

/**
 * The etcd v2 proxy as a plain `(req, res)` function: give {@link V2ProxyHandler.handle}
 * to `http.createServer`, mount it in Express (`app.use(handler.handle)`), or
 * call it from Koa with `ctx.respond = false`.
 *
 * It answers `GET /v2/config/local/proxy` and {@link PROXY_READY_PATH}
 * itself (and, with `cors`, every OPTIONS request) and forwards everything
 * else to the cluster (see `forward-request.ts` for the retry policy).
 * @public
 */
export class V2ProxyHandler extends EventEmitter<V2ProxyHandlerEvents> {
  /** The mode requests are served in. */
  readonly mode: ProxyMode;
  /** Largest request body forwarded, in bytes. */
  readonly maxBodyBytes: number;
  /** The `(req, res)` function. Bound: pass it around freely. */
  readonly handle: (req: IncomingMessage, res: ServerResponse) => void;
  private readonly balancer: EndpointBalancer;
  private readonly settings: ForwardSettings;
  private readonly cors: CorsPolicy | undefined;
  private readonly resolver: MembershipView | undefined;
  private readonly backend: V3Backend | undefined;
  /** The backend's keys requests that createProxy's own reader gives it (no node:http). */
  private readonly directKeys: DirectKeys | undefined;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.close();
  private closed = false;

  constructor(options: V2ProxyHandlerOptions) {
    super();
    const balancer = balancerOption(options);
    this.mode = modeOption(options.mode);
    this.balancer = balancer;
    this.cors = corsOption(options.cors);
    if (options.resolver !== undefined && (options.resolver === null || typeof options.resolver !== 'object' || !('lastRefresh' in options.resolver))) {
      throw new InvalidOptionError('resolver', `expected a ClusterResolver, got ${describe(options.resolver)}`);
    }
    this.resolver = options.resolver;
    if (options.backend !== undefined && (options.backend === null || typeof options.backend !== 'object' || typeof options.backend.handles !== 'function')) {
      throw new InvalidOptionError('backend', `expected a V3Backend, got ${describe(options.backend)}`);
    }
    this.backend = options.backend;
    this.directKeys = options.backend === undefined ? undefined : directKeys(options.backend);
    this.maxBodyBytes = positiveIntegerOption('maxBodyBytes', options.maxBodyBytes, 10 * 1024 * 1024);
    this.settings = {
      balancer,
      readTimeout: durationOption('readTimeout', options.readTimeout, 0),
      deadlines: forwardDeadlines(
        durationOption('dialTimeout', options.dialTimeout, 1000, 1),
        durationOption('writeTimeout', options.writeTimeout, 5000),
        durationOption('responseTimeout', options.responseTimeout, 10000),
      ),
      via: `1.1 etcd-v2-proxy-${proxyIdOption(options.proxyId)}`,
      events: this,
      inFlight: new Set<InFlight>(),
      watches: new Set<InFlight>(),
      stopping: false,
      stripCors: this.cors !== undefined,
      pipelineReads: positiveIntegerOption('pipelineReads', options.pipelineReads, 1, MAX_PIPELINE_READS),
      hedging: forwardHedging(hedgeDelayOption(options.hedgeDelay)),
    };
    this.signal = signalOption(options.signal);
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (this.signal?.aborted) this.close();
    this.handle = (req, res) => this.serve(req, res);
    directRoutes.set(this, {
      onlyForwards: (method, url, via, bodyLength) =>
        // With CORS headers that do not depend on the request (`*`), only OPTIONS needs node:http: the proxy answers it.
        (this.cors === undefined || (this.cors.addTo !== undefined && method !== 'OPTIONS')) &&
        !this.settings.stopping &&
        !this.refusedByMode(method) &&
        !isOwnPath(url) &&
        (this.backend === undefined || (this.directKeys?.takes(method, url) ?? false) || !this.backend.handles(url)) &&
        bodyLength <= this.maxBodyBytes &&
        !this.loopedBack(via),
      forward: (req, res, body, length, arrived) => {
        this.cors?.addTo?.(res);
        if (this.listenerCount('request') > 0) this.emit('request', req.method ?? 'GET', req.url ?? '/');
        const keys = this.directKeys;
        if (keys === undefined || !keys.takes(req.method!, req.url!)) this.forward(req, res, body, length, arrived);
        // Its body finished arriving after drain() or close(): nothing new is applied.
        else if (this.settings.stopping) this.refuseShuttingDown(req, res);
        else this.reportBackend(keys.serve(req, res, body), res, req.method!, req.url!, arrived);
      },
    });
  }

  /**
   * The hedge delay now, in ms (see {@link V2ProxyHandlerOptions.hedgeDelay}):
   * the fixed one, or what `'auto'` makes of the latest answers; 0 when
   * hedging is off.
   */
  get hedgeDelay(): number {
    return this.settings.hedging?.delay.current ?? 0;
  }

  /** Number of upstream requests in flight (watches included). */
  get inFlight(): number {
    return this.settings.inFlight.size + (this.backend?.inFlight ?? 0) + (this.backend?.watchCount ?? 0);
  }

  /**
   * Graceful stop: later requests get 503 (and their connection is closed),
   * open watches are aborted at once (a long poll has no end to wait for, and
   * its client re-polls with its waitIndex without losing an event), other
   * requests in flight may finish for up to `timeoutMs`, then whatever is
   * left is aborted as by {@link V2ProxyHandler.close}.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.settings.stopping = true;
    for (const watch of this.settings.watches) watch.abort();
    this.backend?.endWatches();
    await pollUntil(() => this.settings.inFlight.size + (this.backend?.inFlight ?? 0) === 0 || this.closed, timeoutMs);
    this.close();
  }

  /**
   * Aborts every upstream request in flight (open watches included) and
   * answers later requests with 503. Does not own any listener: closing the
   * server is the caller's job (`createProxy()` does both). Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.settings.stopping = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    for (const up of [...this.settings.inFlight]) up.abort();
    this.settings.inFlight.clear();
    this.backend?.endWatches();
    this.settings.watches.clear();
    this.settings.deadlines.close();
    this.settings.hedging?.timers.close();
  }

  /** A v2 request answered by the v3 backend: reported as `forwarded` (endpoint `v3`) once its head is sent, so metrics count it as a member's answer. */
  private serveFromBackend(backend: V3Backend, req: IncomingMessage, res: ServerResponse, method: string, url: string, arrived: number): void {
    this.reportBackend(backend.serve(req, res), res, method, url, arrived);
  }

  private reportBackend(answered: Promise<void>, res: ClientResponse, method: string, url: string, arrived: number): void {
    if (this.listenerCount('forwarded') === 0) return;
    void answered.then(() => {
      if (!res.headersSent) return;
      this.emit('forwarded', {
        method,
        url,
        endpoint: 'v3',
        status: res.statusCode,
        durationMs: performance.now() - arrived,
        attempts: 1,
        watch: method === 'GET' && queryFlag(url, 'wait'),
      });
    });
  }

  private serve(req: IncomingMessage, res: ServerResponse): void {
    const arrived = performance.now();
    // More than one Host (RFC 9112 section 3.2): 400, as node:http answers a request without one, before anything else.
    if (hostCount(req.rawHeaders) > 1) {
      res.writeHead(400, ['Connection', 'close']);
      res.end();
      req.resume();
      return;
    }
    const url = req.url ?? '/';
    if (this.listenerCount('request') > 0) this.emit('request', req.method ?? 'GET', url);
    if (this.cors !== undefined) {
      this.cors.apply(req, res);
      // As etcd's CORS handler: every OPTIONS is answered here (readonly too), never forwarded.
      if (req.method === 'OPTIONS') {
        req.resume();
        res.writeHead(200, { 'Content-Length': '0' });
        res.end();
        return;
      }
    }
    if (isPath(url, CONFIG_PATH)) {
      this.serveConfig(req, res);
      return;
    }
    if (isPath(url, PROXY_READY_PATH)) {
      this.serveReady(req, res);
      return;
    }
    const method = req.method ?? 'GET';
    // A CORS preflight changes nothing: a readonly proxy lets it through to the members.
    if (this.refusedByMode(method) && !isPreflight(req)) {
      this.dropped(method, url, 'readonly', 501);
      res.writeHead(501, { 'Content-Length': '0' });
      res.end();
      req.resume();
      return;
    }
    if (this.settings.stopping) {
      this.refuseShuttingDown(req, res);
      req.resume();
      return;
    }
    const raw = req.rawHeaders;
    const via = rawHeader(raw, 'via');
    if (this.loopedBack(via)) {
      debug('loop: %s %s came back through this proxy (Via: %s)', method, url, via);
      this.dropped(method, url, 'loop', 508);
      sendJsonError(res, 508, `httpproxy: request loop detected: this request already passed through this proxy (Via: ${via})`);
      req.resume();
      return;
    }
    if (this.backend?.handles(url)) {
      this.serveFromBackend(this.backend, req, res, method, url, arrived);
      return;
    }
    const length = rawHeader(raw, 'content-length');
    if (length === '0') this.forward(req, res, [], 0, arrived);
    else if (length === undefined && rawHeader(raw, 'transfer-encoding') === undefined) this.forward(req, res, undefined, 0, arrived);
    else this.readBody(req, res, arrived, length);
  }

  private forward(req: ClientRequest, res: ClientResponse, body: Buffer[] | undefined, length: number, arrived: number): void {
    if (this.settings.stopping) {
      // Its body finished arriving after drain() or close(): nothing new is sent upstream.
      this.refuseShuttingDown(req, res);
      return;
    }
    const endpoints = this.balancer.plan(req.method ?? 'GET', req.url ?? '');
    if (endpoints.length === 0) {
      debug('zero endpoints currently available for %s %s', req.method, req.url);
      this.dropped(req.method ?? 'GET', req.url ?? '', 'zero-endpoints', 503);
      sendJsonError(res, 503, 'httpproxy: zero endpoints currently available');
      return;
    }
    // A request without Host (HTTP/1.0) goes to each member with that member's authority as Host (forward-request.ts).
    forwardRequest(req, res, body, length, endpoints, this.settings, arrived);
  }

  /**
   * Reads the body as the chunks that arrived (no copy, no parsing) so that a
   * request that could not reach any member can be sent to the next one. The
   * chunks are dropped with the request.
   */
  private readBody(req: IncomingMessage, res: ServerResponse, arrived: number, declared: string | undefined): void {
    if (declared !== undefined && Number(declared) > this.maxBodyBytes) {
      this.refuseLargeBody(req, res);
      return;
    }
    const chunks: Buffer[] = [];
    let length = 0;
    const onData = (chunk: Buffer): void => {
      length += chunk.length;
      if (length > this.maxBodyBytes) {
        req.off('data', onData);
        req.off('end', onEnd);
        this.refuseLargeBody(req, res);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      // From here on only the forwarder holds the chunks, and drops them once no retry can need them.
      req.off('data', onData);
      this.forward(req, res, chunks, length, arrived);
    };
    req.on('data', onData);
    req.once('end', onEnd);
  }

  /** A readonly proxy answers this method 501 (a CORS preflight aside). */
  private refusedByMode(method: string): boolean {
    return this.mode === 'readonly' && method !== 'GET' && method !== 'HEAD';
  }

  /** A request whose Via header names this proxy came back to it. */
  private loopedBack(via: string | undefined): boolean {
    return via !== undefined && via.includes(this.settings.via);
  }

  /** After drain() or close(): 503, and the connection is closed. */
  private refuseShuttingDown(req: ClientRequest, res: ClientResponse): void {
    this.dropped(req.method ?? 'GET', req.url ?? '', 'shutting-down', 503);
    sendJsonError(res, 503, 'httpproxy: proxy is shutting down', ['Connection', 'close']);
  }

  private refuseLargeBody(req: IncomingMessage, res: ServerResponse): void {
    this.dropped(req.method ?? 'GET', req.url ?? '', 'body-too-large', 413);
    debug('refused %s %s: body over %d bytes', req.method, req.url, this.maxBodyBytes);
    // Close the connection after answering rather than reading the rest.
    sendJsonError(res, 413, `httpproxy: request body larger than ${this.maxBodyBytes} bytes`, ['Connection', 'close']);
    res.once('finish', () => req.destroy());
  }

  private dropped(method: string, url: string, reason: DropReason, status: number): void {
    if (this.listenerCount('dropped') > 0) this.emit('dropped', { method, url, reason, status });
  }

  /** What {@link PROXY_READY_PATH} answers: read from memory, the cluster is not asked. */
  readiness(): ProxyReadiness {
    const availableEndpoints = this.balancer.available.length;
    const resolver = this.resolver;
    const last = resolver?.lastRefresh;
    return {
      ready: availableEndpoints > 0 && !this.settings.stopping,
      availableEndpoints,
      endpoints: this.balancer.endpoints.length,
      members: resolver?.snapshot?.members.length ?? null,
      lastRefresh: last?.toISOString() ?? null,
      lastRefreshAgeMs: last === undefined ? null : Date.now() - last.getTime(),
      stale: resolver === undefined ? null : resolver.stale,
      closing: this.settings.stopping,
    };
  }

  private serveReady(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
      res.end('Method Not Allowed\n');
      return;
    }
    const report = this.readiness();
    const body = `${JSON.stringify(report)}\n`;
    res.writeHead(report.ready ? 200 : 503, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
      'Cache-Control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private serveConfig(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
      res.end('Method Not Allowed\n');
      return;
    }
    const body = `${JSON.stringify({ endpoints: this.balancer.available.map((e) => e.url) })}\n`;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

/**
 * What createProxy's own HTTP/1.1 reader (client-connection.ts) asks of a
 * handler: whether {@link V2ProxyHandler.handle} would only forward a request
 * (no CORS, not the handler's own paths, not refused), and to forward one it
 * parsed. Kept out of the class: it is not part of the public API.
 */
export interface DirectRoute {
  /** `via`: the request's Via header; `bodyLength`: its Content-Length (0 when none). */
  onlyForwards(method: string, url: string, via: string | undefined, bodyLength: number): boolean;
  /** Forwards a request `onlyForwards` accepted; `body` as {@link forwardRequest} takes it. */
  forward(req: ClientRequest, res: ClientResponse, body: Buffer[] | undefined, length: number, arrived: number): void;
}

const directRoutes = new WeakMap<V2ProxyHandler, DirectRoute>();

/** The {@link DirectRoute} of `handler`. */
export function directRoute(handler: V2ProxyHandler): DirectRoute {
  return directRoutes.get(handler)!;
}

/** `url` is `path` itself, or `path` with a query. */
export function isPath(url: string, path: string): boolean {
  return url.startsWith(path) && (url.length === path.length || url[path.length] === '?');
}

/** How many Host headers a raw header list holds. */
function hostCount(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === 4 && raw[i]!.toLowerCase() === 'host') n++;
  return n;
}

function isOwnPath(url: string): boolean {
  return isPath(url, CONFIG_PATH) || isPath(url, PROXY_READY_PATH);
}

function proxyIdOption(value: unknown): string {
  if (value === undefined) return randomBytes(6).toString('hex');
  if (typeof value !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(value)) {
    throw new InvalidOptionError('proxyId', `expected 1 to 64 letters, digits, ".", "_" or "-", got ${describe(value)}`);
  }
  return value;
}
