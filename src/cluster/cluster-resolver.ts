import type { LookupFunction } from 'node:net';
import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import pRetry from 'p-retry';
import { ClusterUnreachableError, EtcdProxyError, InvalidOptionError } from '../errors.js';
import { getJson } from './get-json.js';
import { initialClusterPeerUrls } from './initial-cluster.js';
import { upstreamTlsOption } from '../tls-options.js';
import type { UpstreamTls, UpstreamTlsOptions } from '../tls-options.js';
import { describe, durationOption, parseHostPortUrl, signalOption } from '../validate-options.js';

const debug = createDebug('etcd-v2-proxy:resolver');

/**
 * One member as etcd's peer API `GET /members` lists it.
 * @public
 */
export interface ClusterMember {
  /** Member ID in hex, as `etcdctl member list` prints it. */
  readonly id: string;
  /** Member name (empty for a member added but not started yet). */
  readonly name: string;
  /** URLs the member talks to its peers on. */
  readonly peerUrls: readonly string[];
  /** Empty for a member added but not started yet. */
  readonly clientUrls: readonly string[];
}

/**
 * What the resolver knows of the cluster at one time.
 * @public
 */
export interface ClusterSnapshot {
  /** The members, as `GET /members` listed them. */
  readonly members: readonly ClusterMember[];
  /** Every member's peer URLs, sorted, without duplicates. */
  readonly peerUrls: readonly string[];
  /** Every member's client URLs, sorted, without duplicates. */
  readonly clientUrls: readonly string[];
}

/**
 * Options of {@link ClusterResolver}. Give `peerUrls` or `initialCluster`.
 * @public
 */
export interface ClusterResolverOptions {
  /** Peer URLs to ask for the member list, e.g. from a cluster file. */
  peerUrls?: readonly string[];
  /** etcd flag: `--initial-cluster`, `name=peerURL[,name=peerURL...]`. Used when `peerUrls` is not given. */
  initialCluster?: string;
  /**
   * ms between membership refreshes. etcd flag: `--proxy-refresh-interval`.
   * Default: 30000. While no client URL is known, refreshes come every
   * second (as etcd does) unless this is shorter.
   */
  refreshInterval?: number;
  /** ms to connect to a peer. etcd flag: `--proxy-dial-timeout`. Default: 1000. */
  dialTimeout?: number;
  /** ms for one `GET /members` to one peer, connection included. Default: 5000. */
  requestTimeout?: number;
  /**
   * Bound on {@link ClusterResolver.start}, in ms: it retries with backoff
   * until a peer answers or this much time has passed, then rejects with a
   * {@link ClusterUnreachableError}. Default: 15000.
   */
  startTimeout?: number;
  /** Aborting it closes the resolver and cuts a pending `start()` short. */
  signal?: AbortSignal;
  /**
   * Resolves peer host names, e.g. {@link createDnsLookup} for names only
   * some DNS servers know. Not an etcd flag. Default: the system's `dns.lookup`.
   */
  lookup?: LookupFunction;
  /**
   * TLS for `https://` peer URLs: the client certificate shown to peers that
   * require one and the CA their certificates must chain to. etcd flags:
   * `--peer-cert-file`, `--peer-key-file`, `--peer-trusted-ca-file`.
   * Default: no client certificate, Node's bundled CAs, verification on.
   */
  tls?: UpstreamTlsOptions;
}

/**
 * Events of {@link ClusterResolver}.
 * @public
 */
export interface ClusterResolverEvents {
  /** The member list changed (and on the first successful resolution). */
  members: (snapshot: ClusterSnapshot, previous: ClusterSnapshot | undefined) => void;
  /** A periodic refresh failed; the last known members are kept. */
  error: (error: ClusterUnreachableError) => void;
  /**
   * No known peer answered `/members`: the members (and the client URLs
   * requests go to) are the last known ones, and refreshes now come every
   * second. Emitted once when refreshes start failing, after `error`.
   */
  stale: (error: ClusterUnreachableError, lastKnown: ClusterSnapshot | undefined) => void;
  /** A peer answered again after `stale`; emitted after `members` when the list changed meanwhile. */
  fresh: (snapshot: ClusterSnapshot) => void;
}

/**
 * Learns the cluster's members by asking its peers (`GET <peerURL>/members`,
 * etcd's peer API), trying each known peer in turn, and keeps the list fresh.
 * Members added or removed at run time (`etcdctl member add/remove`) show up
 * at the next refresh; the peers asked follow the members' own peer URLs, so
 * the configured ones may all be gone later.
 *
 * A refresh that fails keeps the last known members (etcd's proxy drops every
 * endpoint then and answers 503 until a refresh succeeds), emits `stale`, and
 * is retried every second until a peer answers again (then `fresh`).
 * @public
 */
export class ClusterResolver extends EventEmitter<ClusterResolverEvents> {
  /** ms between refreshes. */
  readonly refreshInterval: number;
  private readonly dialTimeout: number;
  private readonly requestTimeout: number;
  private readonly startTimeout: number;
  private readonly signal: AbortSignal | undefined;
  private readonly lookup: LookupFunction | undefined;
  private readonly tls: UpstreamTls | undefined;
  private readonly closer = new AbortController();
  private readonly onAbort = (): void => this.close();
  private known: ClusterSnapshot | undefined;
  private askPeers: readonly string[];
  private timer: NodeJS.Timeout | undefined;
  private refreshedAt: Date | undefined;
  private failing = false;

  constructor(options: ClusterResolverOptions) {
    super();
    if (options === null || typeof options !== 'object') {
      throw new InvalidOptionError('options', `expected an object with peerUrls or initialCluster, got ${describe(options)}`);
    }
    if (options.peerUrls !== undefined) {
      if (!Array.isArray(options.peerUrls) || options.peerUrls.length === 0) {
        throw new InvalidOptionError('peerUrls', `expected a non-empty array of peer URLs, got ${describe(options.peerUrls)}`);
      }
      this.askPeers = options.peerUrls.map((u: unknown, i) => {
        const checked = typeof u === 'string' ? parseHostPortUrl(u) : { error: `${describe(u)} is not a string` };
        if (checked.error !== undefined) throw new InvalidOptionError(`peerUrls[${i}]`, checked.error);
        return checked.url;
      });
    } else if (options.initialCluster !== undefined) {
      this.askPeers = initialClusterPeerUrls(options.initialCluster);
    } else {
      throw new InvalidOptionError('peerUrls', 'give peerUrls or initialCluster: where is the cluster?');
    }
    this.refreshInterval = durationOption('refreshInterval', options.refreshInterval, 30000, 1);
    this.dialTimeout = durationOption('dialTimeout', options.dialTimeout, 1000, 1);
    this.requestTimeout = durationOption('requestTimeout', options.requestTimeout, 5000, 1);
    this.startTimeout = durationOption('startTimeout', options.startTimeout, 15000, 1);
    if (options.lookup !== undefined && typeof options.lookup !== 'function') {
      throw new InvalidOptionError('lookup', `expected a dns.lookup-like function, got ${describe(options.lookup)}`);
    }
    this.lookup = options.lookup;
    this.tls = upstreamTlsOption(options.tls, 'tls');
    this.signal = signalOption(options.signal);
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (this.signal?.aborted) this.close();
  }

  /** The latest member list, or `undefined` before the first successful resolution. */
  get snapshot(): ClusterSnapshot | undefined {
    return this.known;
  }

  /** Peer URLs to ask next: the members' peer URLs once known, the configured ones before. */
  get peerUrls(): readonly string[] {
    return this.askPeers;
  }

  /** The members' client URLs (empty before the first resolution). */
  get clientUrls(): readonly string[] {
    return this.known?.clientUrls ?? [];
  }

  /** When the member list was last fetched successfully. */
  get lastRefresh(): Date | undefined {
    return this.refreshedAt;
  }

  /** True while the latest refresh failed and the members are the last known ones. */
  get stale(): boolean {
    return this.failing;
  }

  /**
   * Resolves the members for the first time, retrying with backoff for up
   * to `startTimeout` ms, then keeps refreshing every `refreshInterval` ms
   * until {@link ClusterResolver.close}.
   * @throws {@link ClusterUnreachableError} naming the peers asked and the last failure.
   */
  async start(): Promise<ClusterSnapshot> {
    const deadline = AbortSignal.timeout(this.startTimeout);
    const signal = AbortSignal.any([this.closer.signal, deadline]);
    let lastError: unknown;
    try {
      // The backoff timer stays ref'd: the caller is awaiting start(), and a
      // process with nothing else to do must not exit while it waits.
      await pRetry(() => this.refresh(signal), {
        retries: Number.POSITIVE_INFINITY,
        minTimeout: 100,
        maxTimeout: 2000,
        factor: 2,
        signal,
        onFailedAttempt: ({ error, attemptNumber }) => {
          // An attempt cut short by the deadline says less than the one before it (a TLS or HTTP error): keep that one.
          if (!signal.aborted || lastError === undefined) lastError = error;
          debug('start: attempt %d failed: %s', attemptNumber, error.message);
        },
      });
    } catch (err) {
      const why = this.closer.signal.aborted
        ? 'the resolver was closed'
        : deadline.aborted
          ? `no usable answer within ${this.startTimeout} ms (startTimeout); last error: ${messageOf(lastError ?? err)}`
          : messageOf(err);
      throw new ClusterUnreachableError(this.askPeers, why, { cause: lastError ?? err });
    }
    this.schedule();
    return this.known!;
  }

  /**
   * Fetches the member list once, asking the known peers in turn until one
   * answers, and emits `members` when it changed.
   * @returns whether the member list changed.
   * @throws {@link ClusterUnreachableError} when no peer gave a member list.
   */
  async refresh(signal: AbortSignal = this.closer.signal): Promise<boolean> {
    const failures: string[] = [];
    for (const peer of this.askPeers) {
      if (signal.aborted) break;
      try {
        const members = await this.fetchMembers(peer, signal);
        this.refreshedAt = new Date();
        const wasStale = this.failing;
        this.failing = false;
        const changed = this.update(members);
        if (wasStale) {
          debug('membership fresh again from %s', peer);
          this.emit('fresh', this.known!);
        }
        return changed;
      } catch (err) {
        failures.push(`${peer}: ${messageOf(err)}`);
      }
    }
    if (failures.length === 0) failures.push(messageOf(signal.reason));
    throw new ClusterUnreachableError(this.askPeers, failures.join('; '));
  }

  /** Stops refreshing and aborts a refresh in progress. Idempotent. */
  close(): void {
    if (this.closer.signal.aborted) return;
    this.closer.abort(new EtcdProxyError('ERR_ETCD_PROXY_CLOSED', 'closed'));
    this.signal?.removeEventListener('abort', this.onAbort);
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.closer.signal.aborted) return;
    const fast = this.failing || this.clientUrls.length === 0;
    const wait = fast ? Math.min(1000, this.refreshInterval) : this.refreshInterval;
    this.timer = setTimeout(() => {
      this.refresh().then(
        () => this.schedule(),
        (err: ClusterUnreachableError) => {
          if (this.closer.signal.aborted) return;
          const wasFresh = !this.failing;
          this.failing = true;
          debug('refresh failed, keeping %d known client URL(s): %s', this.clientUrls.length, err.message);
          this.emit('error', err);
          if (wasFresh && !this.closer.signal.aborted) this.emit('stale', err, this.known);
          this.schedule();
        },
      );
    }, wait);
    this.timer.unref();
  }

  private async fetchMembers(peer: string, signal: AbortSignal): Promise<ClusterMember[]> {
    const res = await getJson(`${peer}/members`, {
      dialTimeout: this.dialTimeout,
      timeout: this.requestTimeout,
      signal,
      lookup: this.lookup,
      tls: this.tls,
    });
    if (res.status !== 200) throw new Error(`GET /members answered ${res.status}`);
    // Member IDs are 64-bit: read them as strings, not as lossy JS numbers.
    let list: unknown;
    try {
      list = JSON.parse(res.text.replace(/"id"\s*:\s*(\d+)/g, '"id":"$1"'));
    } catch {
      throw new Error('GET /members did not answer JSON');
    }
    if (!Array.isArray(list)) throw new Error('GET /members did not answer a JSON array');
    return list.map((m: unknown, i): ClusterMember => {
      const raw = m as { id?: unknown; name?: unknown; peerURLs?: unknown; clientURLs?: unknown } | null;
      if (raw === null || typeof raw !== 'object' || !isStringArray(raw.peerURLs)) {
        throw new Error(`GET /members: member ${i} has no peerURLs`);
      }
      return {
        id: typeof raw.id === 'string' ? BigInt(raw.id).toString(16) : String(raw.id ?? ''),
        name: typeof raw.name === 'string' ? raw.name : '',
        peerUrls: raw.peerURLs,
        clientUrls: isStringArray(raw.clientURLs) ? raw.clientURLs : [],
      };
    });
  }

  private update(members: ClusterMember[]): boolean {
    const next: ClusterSnapshot = {
      members,
      peerUrls: sortedUnique(members.flatMap((m) => m.peerUrls)),
      clientUrls: sortedUnique(members.flatMap((m) => m.clientUrls)),
    };
    const previous = this.known;
    if (next.peerUrls.length > 0) this.askPeers = next.peerUrls;
    if (previous !== undefined && sameList(previous.peerUrls, next.peerUrls) && sameList(previous.clientUrls, next.clientUrls)) {
      this.known = next;
      return false;
    }
    this.known = next;
    debug('members: peer URLs %o, client URLs %o', next.peerUrls, next.clientUrls);
    this.emit('members', next, previous);
    return true;
  }
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

function sortedUnique(urls: readonly string[]): string[] {
  return [...new Set(urls)].sort();
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
