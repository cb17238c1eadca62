import { InvalidOptionError } from '../errors.js';
import { explainTlsFailure, tlsConnectOptions, upstreamTlsOption } from '../tls-options.js';
import type { UpstreamTls, UpstreamTlsOptions } from '../tls-options.js';
import { UpstreamPool } from '../transport/upstream-connection.js';
import type { UpstreamConnection, UpstreamHandler } from '../transport/upstream-connection.js';
import { parseHostPortUrl } from '../validate-options.js';

/** The forwarder's way to an endpoint's pool, which is not part of the public API. */
let poolOf: (endpoint: Endpoint) => UpstreamPool;

/**
 * Health of an endpoint as the balancer sees it:
 * - `up`: gets requests.
 * - `down`: failed; gets no request (unless every endpoint is down) until a
 *   health probe says it is back.
 * - `degraded`: answers, but its `/health` says `false` (no leader, an
 *   alarm): it serves plain reads, not writes nor quorum reads.
 * @public
 */
export type EndpointState = 'up' | 'down' | 'degraded';

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
  /** See {@link EndpointState}. */
  state: EndpointState = 'up';
  /** True when this member is the cluster's leader, as last learned. */
  isLeader = false;
  /** Failures in a row (reset when a probe readmits it). */
  consecutiveFailures = 0;
  /** `Date.now()` of the latest failure, 0 if it never failed. */
  failedAt = 0;
  /** The latest failure, if any. */
  lastError: Error | undefined = undefined;
  /**
   * True while the endpoint is suspected of being stuck: a hedged read it
   * had waited on longer than the hedge delay was answered by another
   * member first (see {@link EndpointBalancer.suspect}). New reads go to
   * the other members first until it answers again (any request, or a
   * health probe). Its {@link EndpointState} is not changed by it: writes
   * still go to it when it is the leader.
   */
  suspected = false;
  /** Requests currently sent to this endpoint and not finished. */
  inFlight = 0;
  /** True once the endpoint left the cluster; its pool closes when its last request ends. */
  retired = false;
  private readonly tls: UpstreamTls | undefined;
  readonly #pool: UpstreamPool;

  static {
    poolOf = (endpoint) => endpoint.#pool;
  }

  /**
   * @param url - an `http://host:port` or `https://host:port` client URL.
   * @param idleTimeout - ms an idle pooled connection is kept. Default: 30000.
   * @param tls - for an `https://` URL: client certificate and trusted CAs
   *   (see {@link EndpointBalancerOptions.tls}). Default: none, Node's bundled CAs.
   */
  constructor(url: string, idleTimeout = 30000, tls?: UpstreamTlsOptions) {
    const parsed = parseHostPortUrl(url);
    if (parsed.error !== undefined) throw new InvalidOptionError('endpoints', parsed.error);
    const u = new URL(parsed.url);
    this.url = parsed.url;
    this.hostname = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    this.port = Number(u.port);
    const secure = u.protocol === 'https:';
    this.tls = secure ? upstreamTlsOption(tls, 'tls') : undefined;
    // Idle connections close after idleTimeout. There is no bound on idle ones:
    // after one event ends thousands of watches at once, their re-polls must
    // find their connections still pooled rather than re-dial in a herd.
    this.#pool = new UpstreamPool({ hostname: this.hostname, port: this.port, tls: secure ? tlsConnectOptions(this.tls) : undefined, idleTimeout });
  }

  /** Closes the idle connections now, the others when their request ends. */
  close(): void {
    this.#pool.close();
  }

  /**
   * The message for a failed request to this endpoint: a TLS failure says
   * which certificate was at fault (the member's from an untrusted CA or
   * expired, this proxy's refused or missing); other errors keep theirs.
   */
  describeFailure(err: Error): string {
    return this.tls === undefined ? err.message : explainTlsFailure(err, this.tls);
  }

  /** True unless the endpoint is `down`. */
  get available(): boolean {
    return this.state !== 'down';
  }

  /** Called once per request started on this endpoint (by the forwarder) when that request is over, however it ended. */
  release(): void {
    this.inFlight--;
    if (this.retired && this.inFlight === 0) this.#pool.close();
  }
}

/**
 * Starts one request to `endpoint` on a pooled connection (a new one when none
 * is idle; with `pipeline` over 1, possibly behind other GETs, see
 * {@link UpstreamPool.acquire}); `handler` hears how it goes. Pair with {@link Endpoint.release}.
 */
export function connectTo(endpoint: Endpoint, handler: UpstreamHandler, pipeline = 1): UpstreamConnection {
  endpoint.inFlight++;
  return poolOf(endpoint).acquire(handler, pipeline);
}
