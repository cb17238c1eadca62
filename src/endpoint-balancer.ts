import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import type { ClientRequest, IncomingMessage, RequestOptions } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import { InvalidOptionError } from './errors.js';
import { durationOption, parseHostPortUrl, signalOption } from './validate-options.js';

const debug = createDebug('etcd-v2-proxy:balancer');

/**
 * Options of {@link EndpointBalancer}.
 * @public
 */
export interface EndpointBalancerOptions {
  /**
   * How long a failed endpoint is skipped before it is tried again, in ms.
   * etcd flag: `--proxy-failure-wait`. Default: 5000.
   */
  failureWait?: number;
  /** Client URLs to start with (usually set later from a {@link ClusterResolver}). Default: none. */
  endpoints?: readonly string[];
  /** Aborting it closes the balancer, as {@link EndpointBalancer.close} does. */
  signal?: AbortSignal;
}

/**
 * Events of {@link EndpointBalancer}.
 * @public
 */
export interface EndpointBalancerEvents {
  /** An endpoint failed and is skipped for `failureWait` ms. */
  endpointDown: (endpoint: Endpoint, reason: Error) => void;
  /** A failed endpoint's `failureWait` is over: it gets requests again. */
  endpointUp: (endpoint: Endpoint) => void;
  /** The set of endpoints changed (from {@link EndpointBalancer.setEndpoints}). */
  endpoints: (urls: readonly string[]) => void;
}

/**
 * One upstream etcd client URL with its connection pool and health state.
 * @public
 */
export class Endpoint {
  /** The client URL, `scheme://host:port`. */
  readonly url: string;
  /** Host name or IP address to connect to. */
  readonly hostname: string;
  /** TCP port to connect to. */
  readonly port: number;
  /** Keep-alive connection pool for this endpoint. */
  readonly agent: HttpAgent;
  /** True while the endpoint is not within its `failureWait`. */
  available = true;
  /** `Date.now()` of the latest failure, 0 if it never failed. */
  failedAt = 0;
  /** The latest failure, if any. */
  lastError: Error | undefined = undefined;
  /** Requests currently sent to this endpoint and not finished. */
  inFlight = 0;
  /** True once the endpoint left the cluster; its pool closes when its last request ends. */
  retired = false;
  private readonly send: (options: RequestOptions, onResponse?: (res: IncomingMessage) => void) => ClientRequest;

  /** @param url - an `http://host:port` or `https://host:port` client URL. */
  constructor(url: string) {
    const parsed = parseHostPortUrl(url);
    if (parsed.error !== undefined) throw new InvalidOptionError('endpoints', parsed.error);
    const u = new URL(parsed.url);
    this.url = parsed.url;
    this.hostname = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    this.port = Number(u.port);
    const secure = u.protocol === 'https:';
    this.agent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
    this.send = secure ? httpsRequest : httpRequest;
  }

  /**
   * Starts an HTTP request to this endpoint through its pool. `options` gets
   * this endpoint's host, port and agent.
   */
  request(options: RequestOptions): ClientRequest {
    options.agent = this.agent;
    options.hostname = this.hostname;
    options.port = this.port;
    this.inFlight++;
    return this.send(options);
  }

  /** Called once per {@link Endpoint.request} when that request is over, however it ended. */
  release(): void {
    this.inFlight--;
    if (this.retired && this.inFlight === 0) setImmediate(() => this.agent.destroy());
  }
}

/**
 * Holds the cluster's client URLs as {@link Endpoint}s and tells each request
 * in which order to try them. An endpoint that fails is skipped for
 * `failureWait` ms (etcd's `--proxy-failure-wait`), then tried again. While
 * every endpoint is within its wait, they are all still offered, oldest
 * failure first, so that a cluster that comes back is used at once (etcd's
 * proxy answers 503 for the whole `failureWait` instead).
 * @public
 */
export class EndpointBalancer extends EventEmitter<EndpointBalancerEvents> {
  /** ms an endpoint is skipped after a failure. */
  readonly failureWait: number;
  private list: Endpoint[] = [];
  private cachedOrder: readonly Endpoint[] | undefined = undefined;
  private readonly upTimers = new Map<Endpoint, NodeJS.Timeout>();
  private closed = false;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.close();

  constructor(options: EndpointBalancerOptions = {}) {
    super();
    this.failureWait = durationOption('failureWait', options.failureWait, 5000);
    this.signal = signalOption(options.signal);
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (options.endpoints !== undefined) this.setEndpoints(options.endpoints);
    if (this.signal?.aborted) this.close();
  }

  /** All endpoints, available or not. */
  get endpoints(): readonly Endpoint[] {
    return this.list;
  }

  /** Endpoints not within their `failureWait`. */
  get available(): Endpoint[] {
    return this.list.filter((e) => e.available);
  }

  /**
   * Replaces the set of client URLs. Endpoints whose URL stays keep their
   * state and connections; new ones start available; removed ones have their
   * idle connections closed (requests in flight on them finish). The order
   * is shuffled, as etcd's proxy does at each refresh, so that many proxies
   * do not all pick the same member.
   */
  setEndpoints(urls: readonly string[]): void {
    if (this.closed) return;
    const byUrl = new Map(this.list.map((e) => [e.url, e]));
    const next: Endpoint[] = [];
    for (const raw of urls) {
      const parsed = parseHostPortUrl(raw);
      if (parsed.error !== undefined) {
        debug('ignoring client URL %s: %s', raw, parsed.error);
        continue;
      }
      if (next.some((e) => e.url === parsed.url)) continue;
      const existing = byUrl.get(parsed.url);
      byUrl.delete(parsed.url);
      next.push(existing ?? new Endpoint(parsed.url));
    }
    for (const gone of byUrl.values()) {
      clearTimeout(this.upTimers.get(gone));
      this.upTimers.delete(gone);
      retire(gone);
    }
    for (let i = next.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [next[i], next[j]] = [next[j]!, next[i]!];
    }
    const changed = next.length !== this.list.length || next.some((e) => !this.list.includes(e));
    this.list = next;
    this.cachedOrder = undefined;
    if (changed) {
      debug('endpoints %o', next.map((e) => e.url));
      this.emit('endpoints', next.map((e) => e.url));
    }
  }

  /**
   * The endpoints in the order one request should try them: available ones
   * first, then those within their `failureWait`, oldest failure first.
   * Empty only when no endpoint is known. The array is shared: do not modify it.
   */
  order(): readonly Endpoint[] {
    if (this.cachedOrder !== undefined) return this.cachedOrder;
    const up = this.list.filter((e) => e.available);
    const down = this.list.filter((e) => !e.available).sort((a, b) => a.failedAt - b.failedAt);
    this.cachedOrder = down.length === 0 ? up : up.concat(down);
    return this.cachedOrder;
  }

  /**
   * Records that `endpoint` failed (a member's failure, never a client's):
   * it is skipped for `failureWait` ms and `endpointDown` is emitted.
   */
  reportFailure(endpoint: Endpoint, reason: Error): void {
    endpoint.failedAt = Date.now();
    endpoint.lastError = reason;
    this.cachedOrder = undefined;
    if (!endpoint.available || this.closed || !this.list.includes(endpoint)) return;
    endpoint.available = false;
    debug('marked endpoint %s unavailable: %s', endpoint.url, reason.message);
    const timer = setTimeout(() => {
      this.upTimers.delete(endpoint);
      endpoint.available = true;
      this.cachedOrder = undefined;
      debug('marked endpoint %s available again', endpoint.url);
      this.emit('endpointUp', endpoint);
    }, this.failureWait);
    timer.unref();
    this.upTimers.set(endpoint, timer);
    this.emit('endpointDown', endpoint, reason);
  }

  /** Clears timers and closes every endpoint's connections, including open watches. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    for (const timer of this.upTimers.values()) clearTimeout(timer);
    this.upTimers.clear();
    for (const e of this.list) e.agent.destroy();
    this.cachedOrder = [];
    this.removeAllListeners();
  }
}

function retire(endpoint: Endpoint): void {
  endpoint.available = false;
  endpoint.retired = true;
  if (endpoint.inFlight === 0) endpoint.agent.destroy();
}
