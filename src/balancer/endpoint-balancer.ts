import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import { strategyOption } from './balancer-strategy.js';
import type { BalancerStrategy, PickContext, StrategyName } from './balancer-strategy.js';
import { Endpoint } from './endpoint.js';
import { getJson } from '../cluster/get-json.js';
import { InvalidOptionError } from '../errors.js';
import { describe, durationOption, parseHostPortUrl, signalOption } from '../validate-options.js';
import { upstreamTlsOption } from '../tls-options.js';
import { queryFlag } from '../handler/v2-query.js';
import type { UpstreamTls, UpstreamTlsOptions } from '../tls-options.js';


const debug = createDebug('etcd-v2-proxy:balancer');

/**
 * Options of {@link EndpointBalancer}.
 * @public
 */
export interface EndpointBalancerOptions {
  /**
   * ms a failed endpoint gets no request before its first health probe.
   * etcd flag: `--proxy-failure-wait`. Default: 5000. (etcd's proxy then
   * marks it available again blindly; here a probe must say it is back.)
   */
  failureWait?: number;
  /**
   * How the first endpoint of each request is chosen: `least-in-flight`
   * (default), `round-robin`, `first-available` (etcd's proxy), or your own
   * {@link BalancerStrategy}.
   */
  strategy?: StrategyName | BalancerStrategy;
  /**
   * Send writes (PUT, POST, DELETE, PATCH) to the cluster's leader first: a
   * write sent to a follower costs it an extra hop to the leader. Default: true.
   */
  leaderWrites?: boolean;
  /** ms between leader look-ups (`GET /v2/members/leader`). Default: 30000, etcd's refresh interval. */
  leaderRefreshInterval?: number;
  /**
   * How one usable endpoint is asked for the leader: resolves to the leader's
   * client URLs, or undefined when that endpoint can't tell (the next one is
   * asked; so it is when it rejects). Default: `GET /v2/members/leader` (the
   * v2 API); the v3 backend gives one that asks v3's Maintenance.Status.
   */
  leaderLookup?: LeaderLookup;
  /** ms a health probe (`GET /health` on the client URL) may take, connection included. Default: 2000. */
  probeTimeout?: number;
  /** Longest wait between two probes of an endpoint that stays down (the wait doubles from `failureWait`). Default: 30000. */
  probeMaxInterval?: number;
  /**
   * ms an idle pooled connection to an endpoint is kept before it is closed.
   * Default: 30000 (etcd's own server closes idle connections after 5 min).
   */
  idleTimeout?: number;
  /** Client URLs to start with (usually set later from a {@link ClusterResolver}). Default: none. */
  endpoints?: readonly string[];
  /**
   * TLS for `https://` client URLs (requests, health probes and leader
   * look-ups): the client certificate shown to members that require one and
   * the CA their certificates must chain to. etcd flags: `--cert-file`,
   * `--key-file`, `--trusted-ca-file`, or the `--peer-*` ones when those are
   * empty (`createProxy` does that fallback). Default: no client
   * certificate, Node's bundled CAs, verification on.
   */
  tls?: UpstreamTlsOptions;
  /** Aborting it closes the balancer, as {@link EndpointBalancer.close} does. */
  signal?: AbortSignal;
}

/**
 * The hook {@link EndpointBalancerOptions.leaderLookup} takes.
 * @public
 */
export type LeaderLookup = (endpoint: Endpoint, signal: AbortSignal) => Promise<readonly string[] | undefined>;

/**
 * How long an endpoint was out, and why, given with `endpointUp`.
 * @public
 */
export interface ReadmissionInfo {
  /** ms since it was marked down (or degraded). */
  readonly outForMs: number;
  /** The failure that took it out. */
  readonly reason: Error | undefined;
  /** Probes it took. */
  readonly probes: number;
}

/**
 * Events of {@link EndpointBalancer}.
 * @public
 */
export interface EndpointBalancerEvents {
  /** An endpoint failed; it gets no request until a probe says it is back. */
  endpointDown: (endpoint: Endpoint, reason: Error) => void;
  /** A probe found the endpoint answering but unhealthy (`{"health":"false"}`): plain reads only. */
  endpointDegraded: (endpoint: Endpoint, detail: string) => void;
  /** A probe found the endpoint healthy: it gets requests again. */
  endpointUp: (endpoint: Endpoint, info: ReadmissionInfo) => void;
  /** The set of endpoints changed (from {@link EndpointBalancer.setEndpoints}). */
  endpoints: (urls: readonly string[]) => void;
  /** The leader's client URL changed (`undefined`: unknown). */
  leader: (url: string | undefined) => void;
  /**
   * The endpoint lost a hedged read by more than the hedge delay (see
   * {@link EndpointBalancer.suspect}): new reads go to the other members
   * first until it answers again.
   */
  endpointSuspected: (endpoint: Endpoint) => void;
  /** A suspected endpoint answered (a request or a health probe): reads go to it again. */
  endpointCleared: (endpoint: Endpoint) => void;
}

const WRITE_METHODS = new Set(['PUT', 'POST', 'DELETE', 'PATCH']);

/** A write or a `quorum=true` read (or `quorum=1`, any spelling etcd takes): what a degraded member (no leader) can't serve. */
export function needsQuorum(method: string, url: string): boolean {
  return WRITE_METHODS.has(method) || queryFlag(url, 'quorum');
}

/**
 * Holds the cluster's client URLs as {@link Endpoint}s and tells each request
 * in which order to try them.
 *
 * - Each request picks its first endpoint at request time with the strategy
 *   (default: fewest requests in flight), so load spreads over the members;
 *   etcd's proxy sends everything to one member until its next refresh.
 * - Writes go to the leader first (`leaderWrites`).
 * - An endpoint that fails is taken out; after `failureWait` it is probed
 *   (`GET /health`), and only a healthy answer readmits it; probes back off
 *   up to `probeMaxInterval`. etcd's proxy readmits it blindly on a timer
 *   (etcd-io/etcd#3541).
 * - While every endpoint is down they are still all offered, oldest failure
 *   first, so that a cluster that comes back is used at once (etcd's proxy
 *   answers 503 for the whole `failureWait`).
 * @public
 */
export class EndpointBalancer extends EventEmitter<EndpointBalancerEvents> {
  /** ms a failed endpoint waits for its first probe. */
  readonly failureWait: number;
  /** ms an idle pooled connection is kept. */
  readonly idleTimeout: number;
  /** The strategy choosing each request's first endpoint. */
  readonly strategy: BalancerStrategy;
  /** Whether writes go to the leader first. */
  readonly leaderWrites: boolean;
  private readonly probeTimeout: number;
  private readonly tlsOptions: UpstreamTlsOptions | undefined;
  private readonly tls: UpstreamTls | undefined;
  private readonly probeMaxInterval: number;
  private readonly leaderRefreshInterval: number;
  private list: Endpoint[] = [];
  private cachedOrder: readonly Endpoint[] | undefined = undefined;
  private cachedCandidates: Candidates | undefined = undefined;
  private readonly probes = new Map<Endpoint, { timer: NodeJS.Timeout; delay: number; count: number; since: number }>();
  /** The health probes of suspected endpoints (see {@link EndpointBalancer.suspect}). */
  private readonly suspectProbes = new Map<Endpoint, NodeJS.Timeout | undefined>();
  private leaderEndpoint: Endpoint | undefined;
  private leaderTimer: NodeJS.Timeout | undefined;
  private leaderLookup: Promise<void> | undefined;
  private readonly closer = new AbortController();
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.close();
  private readonly leaderLookupHook: LeaderLookup;

  constructor(options: EndpointBalancerOptions = {}) {
    super();
    this.failureWait = durationOption('failureWait', options.failureWait, 5000);
    this.idleTimeout = durationOption('idleTimeout', options.idleTimeout, 30000, 1);
    this.tls = upstreamTlsOption(options.tls, 'tls');
    this.tlsOptions = options.tls;
    this.probeTimeout = durationOption('probeTimeout', options.probeTimeout, 2000, 1);
    this.probeMaxInterval = durationOption('probeMaxInterval', options.probeMaxInterval, 30000, 1);
    this.leaderRefreshInterval = durationOption('leaderRefreshInterval', options.leaderRefreshInterval, 30000, 1);
    this.strategy = strategyOption(options.strategy);
    if (options.leaderWrites !== undefined && typeof options.leaderWrites !== 'boolean') {
      throw new InvalidOptionError('leaderWrites', `expected true or false, got ${describe(options.leaderWrites)}`);
    }
    this.leaderWrites = options.leaderWrites ?? true;
    if (options.leaderLookup !== undefined && typeof options.leaderLookup !== 'function') {
      throw new InvalidOptionError('leaderLookup', `expected a function, got ${describe(options.leaderLookup)}`);
    }
    this.leaderLookupHook = options.leaderLookup ?? ((e, signal) => this.askV2Leader(e, signal));
    this.signal = signalOption(options.signal);
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (options.endpoints !== undefined) this.setEndpoints(options.endpoints);
    if (this.signal?.aborted) this.close();
  }

  /** All endpoints, whatever their state. */
  get endpoints(): readonly Endpoint[] {
    return this.list;
  }

  /** Endpoints that are not down (up or degraded). */
  get available(): Endpoint[] {
    return this.list.filter((e) => e.available);
  }

  /** The leader's endpoint, once learned (with `leaderWrites`). */
  get leader(): Endpoint | undefined {
    return this.leaderEndpoint;
  }

  /**
   * Looks the leader up now rather than at the next refresh: the caller
   * knows it changed (a leadership transfer it forwarded). No-op without
   * `leaderWrites`.
   */
  relearnLeader(): void {
    this.lookUpLeaderSoon(0);
  }

  /**
   * Replaces the set of client URLs. Endpoints whose URL stays keep their
   * state and connections; new ones start up; removed ones stop getting
   * requests, and their pool closes when their last request ends. The list
   * is shuffled, as etcd's proxy does, so that many proxies using
   * `first-available` do not all pick the same member.
   */
  setEndpoints(urls: readonly string[]): void {
    if (this.closer.signal.aborted) return;
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
      next.push(existing ?? new Endpoint(parsed.url, this.idleTimeout, this.tlsOptions));
    }
    for (const gone of byUrl.values()) {
      this.stopProbing(gone);
      this.unsuspect(gone, false);
      gone.state = 'down';
      gone.retired = true;
      if (gone.inFlight === 0) gone.close();
      if (gone === this.leaderEndpoint) this.setLeader(undefined);
    }
    for (let i = next.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [next[i], next[j]] = [next[j]!, next[i]!];
    }
    const changed = next.length !== this.list.length || next.some((e) => !this.list.includes(e));
    this.list = next;
    this.invalidate();
    if (changed) {
      debug('endpoints %o', next.map((e) => e.url));
      this.emit('endpoints', next.map((e) => e.url));
      if (this.leaderWrites) this.lookUpLeaderSoon(0);
    }
  }

  /**
   * The endpoints in their base order: those not down in list order, then
   * the down ones, oldest failure first. Empty only when no endpoint is known.
   * The array is shared: do not modify it. Requests use {@link EndpointBalancer.plan}.
   */
  order(): readonly Endpoint[] {
    if (this.cachedOrder !== undefined) return this.cachedOrder;
    const up = this.list.filter((e) => e.available);
    const down = this.list.filter((e) => !e.available).sort((a, b) => a.failedAt - b.failedAt);
    this.cachedOrder = down.length === 0 ? up : up.concat(down);
    return this.cachedOrder;
  }

  /**
   * The endpoints one request should try, in order: the strategy's pick (the
   * leader for a write), then the other usable endpoints, then the rest
   * (down ones, oldest failure first) as a last resort. A degraded endpoint
   * serves plain reads only, not writes nor `quorum=true` reads. A GET or
   * HEAD goes to a {@link Endpoint.suspected} endpoint only after the others
   * (and still before the down ones), unless every candidate is suspected.
   */
  plan(method: string, url: string): readonly Endpoint[] {
    const write = WRITE_METHODS.has(method);
    const quorum = needsQuorum(method, url);
    const sets = (this.cachedCandidates ??= candidatesOf(this.list));
    let candidates = quorum ? sets.plain : sets.all;
    if (sets.suspects && (method === 'GET' || method === 'HEAD')) {
      const trusted = quorum ? sets.plainTrusted : sets.allTrusted;
      if (trusted.length > 0) candidates = trusted;
    }
    if (candidates.length === 0) return this.order();
    const leader = this.leaderEndpoint;
    const first =
      write && leader !== undefined && leader.state === 'up' ? leader : this.strategy.pick(candidates, { method, write } as PickContext);
    const base = this.order();
    if (base[0] === first && candidates.length === base.length) return base;
    const out = [first];
    for (const e of candidates) if (e !== first) out.push(e);
    for (const e of base) if (!out.includes(e)) out.push(e);
    return out;
  }

  /**
   * Records that `endpoint` lost a hedged read by more than the hedge
   * delay: it had waited longer than the delay when another member's
   * answer came (forward-request.ts). It is {@link Endpoint.suspected}:
   * new reads go to the other members first until it answers again, a
   * request's response head or a health probe (`GET /health`, sent at once
   * and again 1 s after each that gets no answer within `probeTimeout`).
   * A down endpoint is not suspected (it is out already).
   */
  suspect(endpoint: Endpoint): void {
    if (this.closer.signal.aborted || !this.list.includes(endpoint) || endpoint.state === 'down' || endpoint.suspected) return;
    endpoint.suspected = true;
    this.invalidate();
    debug('suspecting endpoint %s: it lost a hedged read', endpoint.url);
    this.emit('endpointSuspected', endpoint);
    this.probeSuspect(endpoint, 0);
  }

  /**
   * Records that `endpoint` failed (a member's failure, never a client's):
   * it gets no request until a probe after `failureWait` ms finds it healthy.
   */
  reportFailure(endpoint: Endpoint, reason: Error): void {
    endpoint.lastError = reason;
    if (this.closer.signal.aborted || !this.list.includes(endpoint)) return;
    // Down says more than suspected; its own probes bring it back.
    this.unsuspect(endpoint, false);
    endpoint.consecutiveFailures++;
    endpoint.failedAt = Date.now();
    this.invalidate();
    if (endpoint === this.leaderEndpoint) this.lookUpLeaderSoon(0);
    if (endpoint.state === 'down') return;
    endpoint.state = 'down';
    debug('marked endpoint %s down: %s', endpoint.url, reason.message);
    this.scheduleProbe(endpoint, this.failureWait, Date.now());
    this.emit('endpointDown', endpoint, reason);
  }

  /**
   * Records that a down or suspected endpoint answered a request (a down one
   * tried as a last resort): that is evidence, so a down one's health probe
   * runs now instead of at its next turn, and a suspected one is no longer.
   */
  reportAnswer(endpoint: Endpoint): void {
    if (endpoint.suspected) this.unsuspect(endpoint, true);
    const probe = this.probes.get(endpoint);
    if (endpoint.state !== 'down' || probe === undefined || probe.delay === 0) return;
    clearTimeout(probe.timer);
    this.scheduleProbe(endpoint, 0, probe.since);
  }

  /** Stops probes and leader look-ups and closes every endpoint's connections, including open watches. Idempotent. */
  close(): void {
    if (this.closer.signal.aborted) return;
    this.closer.abort();
    this.signal?.removeEventListener('abort', this.onAbort);
    for (const e of this.list) this.stopProbing(e);
    for (const timer of this.suspectProbes.values()) clearTimeout(timer);
    this.suspectProbes.clear();
    clearTimeout(this.leaderTimer);
    for (const e of this.list) e.close();
    this.cachedOrder = [];
    this.cachedCandidates = candidatesOf([]);
    this.removeAllListeners();
  }

  private invalidate(): void {
    this.cachedOrder = undefined;
    this.cachedCandidates = undefined;
  }

  private stopProbing(endpoint: Endpoint): void {
    const probe = this.probes.get(endpoint);
    if (probe !== undefined) clearTimeout(probe.timer);
    this.probes.delete(endpoint);
  }

  private scheduleProbe(endpoint: Endpoint, delay: number, since: number): void {
    const count = this.probes.get(endpoint)?.count ?? 0;
    const timer = setTimeout(() => void this.probe(endpoint), delay);
    timer.unref();
    this.probes.set(endpoint, { timer, delay, count, since });
  }

  /** `GET /health` on the endpoint: `true` readmits it, `false` makes it degraded, no answer keeps it down. */
  private async probe(endpoint: Endpoint): Promise<void> {
    const state = this.probes.get(endpoint);
    if (state === undefined || this.closer.signal.aborted) return;
    state.count++;
    let health: string | undefined;
    let detail: string;
    try {
      const res = await getJson(`${endpoint.url}/health`, {
        dialTimeout: this.probeTimeout,
        timeout: this.probeTimeout,
        signal: this.closer.signal,
        tls: this.tls,
      });
      health = (res.body as { health?: unknown } | undefined)?.health === 'true' ? 'true' : 'false';
      detail = `GET /health answered ${res.status} ${res.text.trim()}`;
    } catch (err) {
      detail = `GET /health failed: ${(err as Error).message}`;
    }
    if (this.probes.get(endpoint) !== state || this.closer.signal.aborted) return; // retired or closed meanwhile
    debug('probe %d of %s: %s', state.count, endpoint.url, detail);
    if (health === 'true') {
      this.probes.delete(endpoint);
      this.unsuspect(endpoint, false);
      endpoint.state = 'up';
      endpoint.consecutiveFailures = 0;
      this.invalidate();
      debug('endpoint %s is back after %d ms', endpoint.url, Date.now() - state.since);
      this.emit('endpointUp', endpoint, { outForMs: Date.now() - state.since, reason: endpoint.lastError, probes: state.count });
      return;
    }
    if (health === 'false' && endpoint.state !== 'degraded') {
      endpoint.state = 'degraded';
      this.invalidate();
      this.emit('endpointDegraded', endpoint, detail);
    }
    this.scheduleProbe(endpoint, Math.min(Math.max(state.delay, this.failureWait, 100) * 2, this.probeMaxInterval), state.since);
  }

  /** Ends `endpoint`'s suspicion (`answered`: it answered; else it went down or away). */
  private unsuspect(endpoint: Endpoint, answered: boolean): void {
    const timer = this.suspectProbes.get(endpoint);
    clearTimeout(timer);
    this.suspectProbes.delete(endpoint);
    if (!endpoint.suspected) return;
    endpoint.suspected = false;
    this.invalidate();
    if (answered && !this.closer.signal.aborted) {
      debug('suspected endpoint %s answered', endpoint.url);
      this.emit('endpointCleared', endpoint);
    }
  }

  /** Probes a suspected endpoint after `delay` ms: any HTTP answer to `GET /health` ends the suspicion. */
  private probeSuspect(endpoint: Endpoint, delay: number): void {
    const timer = setTimeout(() => {
      this.suspectProbes.set(endpoint, undefined);
      getJson(`${endpoint.url}/health`, { dialTimeout: this.probeTimeout, timeout: this.probeTimeout, signal: this.closer.signal, tls: this.tls }).then(
        () => {
          if (this.suspectProbes.has(endpoint) && this.suspectProbes.get(endpoint) === undefined) this.reportAnswer(endpoint);
        },
        (err: Error) => {
          if (!endpoint.suspected || this.closer.signal.aborted || this.suspectProbes.get(endpoint) !== undefined) return;
          debug('probe of suspected endpoint %s: %s', endpoint.url, err.message);
          this.probeSuspect(endpoint, 1000);
        },
      );
    }, delay);
    timer.unref();
    this.suspectProbes.set(endpoint, timer);
  }

  /** Sets which endpoint is the leader (by client URL). */
  private setLeader(endpoint: Endpoint | undefined): void {
    if (endpoint === this.leaderEndpoint) return;
    if (this.leaderEndpoint !== undefined) this.leaderEndpoint.isLeader = false;
    this.leaderEndpoint = endpoint;
    if (endpoint !== undefined) endpoint.isLeader = true;
    debug('leader %s', endpoint?.url ?? 'unknown');
    this.emit('leader', endpoint?.url);
  }

  private lookUpLeaderSoon(delay: number): void {
    if (!this.leaderWrites || this.closer.signal.aborted) return;
    clearTimeout(this.leaderTimer);
    this.leaderTimer = setTimeout(() => {
      this.leaderLookup ??= this.lookUpLeader().finally(() => {
        this.leaderLookup = undefined;
        // No usable leader yet (an election in progress): look again soon.
        const known = this.leaderEndpoint !== undefined && this.leaderEndpoint.state === 'up';
        this.lookUpLeaderSoon(known ? this.leaderRefreshInterval : Math.min(1000, this.leaderRefreshInterval));
      });
    }, delay);
    this.leaderTimer.unref();
  }

  /** Asks the usable endpoints, in turn, for the leader (`leaderLookup`) and matches its client URLs to an endpoint. */
  private async lookUpLeader(): Promise<void> {
    for (const e of this.list) {
      if (e.state !== 'up' || this.closer.signal.aborted) continue;
      try {
        const urls = await this.leaderLookupHook(e, this.closer.signal);
        if (urls === undefined) continue;
        const normalized = new Set(urls.map((u) => (typeof u === 'string' ? parseHostPortUrl(u).url : undefined)));
        if (this.closer.signal.aborted) return;
        this.setLeader(this.list.find((x) => normalized.has(x.url)));
        return;
      } catch {
        // try the next one
      }
    }
    if (!this.closer.signal.aborted) this.setLeader(undefined);
  }

  /** The default leader look-up: `GET /v2/members/leader` on the endpoint. */
  private async askV2Leader(e: Endpoint, signal: AbortSignal): Promise<readonly string[] | undefined> {
    const res = await getJson(`${e.url}/v2/members/leader`, { dialTimeout: this.probeTimeout, timeout: this.probeTimeout, signal, tls: this.tls });
    const urls = (res.body as { clientURLs?: unknown } | undefined)?.clientURLs;
    if (res.status !== 200 || !Array.isArray(urls)) return undefined;
    return urls.filter((u): u is string => typeof u === 'string');
  }
}

/** The endpoints each kind of request may be sent to, cached until the states change. */
interface Candidates {
  /** Up or degraded: plain reads. */
  all: Endpoint[];
  /** Up: writes and quorum reads. */
  plain: Endpoint[];
  /** Some endpoint is suspected. */
  suspects: boolean;
  /** `all` without the suspected ones. */
  allTrusted: Endpoint[];
  /** `plain` without the suspected ones. */
  plainTrusted: Endpoint[];
}

function candidatesOf(list: readonly Endpoint[]): Candidates {
  const all = list.filter((e) => e.state === 'up' || e.state === 'degraded');
  const plain = list.filter((e) => e.state === 'up');
  const suspects = all.some((e) => e.suspected);
  return {
    all,
    plain,
    suspects,
    allTrusted: suspects ? all.filter((e) => !e.suspected) : all,
    plainTrusted: suspects ? plain.filter((e) => !e.suspected) : plain,
  };
}
