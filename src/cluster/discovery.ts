import createDebug from 'debug';
import pRetry, { AbortError } from 'p-retry';
import { DiscoveryError, InitialClusterError, InvalidOptionError } from '../errors.js';
import { getJson } from './get-json.js';
import type { JsonResponse } from './get-json.js';
import { parseInitialCluster } from './initial-cluster.js';
import { describe, durationOption, signalOption } from '../validate-options.js';

const debug = createDebug('etcd-v2-proxy:discovery');

/**
 * Options of {@link discoverCluster}. Durations are in milliseconds.
 * @public
 */
export interface DiscoveryOptions {
  /**
   * The discovery URL: a directory of an etcd v2 keys API, e.g.
   * `http://127.0.0.1:2379/v2/keys/discovery/<token>` (or a public discovery
   * service's URL). etcd flag: `--discovery`. Required.
   */
  url: string;
  /**
   * An `http://host:port` forward proxy for the discovery traffic (CONNECT
   * for an https:// discovery URL); `host:port` alone means http. etcd flag:
   * `--discovery-proxy`. Default: none (direct).
   */
  proxy?: string;
  /**
   * Bound on the whole discovery: retries of an unreachable service and the
   * wait for members to register included. 0 waits forever, as etcd does.
   * Not an etcd flag. Default: 300000 (5 min).
   */
  timeout?: number;
  /**
   * ms to connect to the discovery service (or its proxy). Not an etcd flag
   * (etcd allows 30 s); `createProxy` passes its `dialTimeout`
   * (`--proxy-dial-timeout`). Default: 1000.
   */
  dialTimeout?: number;
  /** ms for one request that is not a watch. Not an etcd flag. Default: 5000 (etcd's client default). */
  requestTimeout?: number;
  /** Aborting it stops the discovery; the promise rejects with reason `aborted`. */
  signal?: AbortSignal;
  /** Called before each retry after a failed attempt (also logged with `DEBUG=etcd-v2-proxy:discovery`). */
  onRetry?: (retry: DiscoveryRetry) => void;
  /** Called each time fewer than `size` members are registered and the discovery waits for more. */
  onWaiting?: (progress: DiscoveryProgress) => void;
}

/**
 * One failed attempt to talk to the discovery service, about to be retried.
 * @public
 */
export interface DiscoveryRetry {
  /** The discovery URL. */
  readonly url: string;
  /** What was being done: reading the size and the registrations, or watching for more. */
  readonly step: 'cluster status check' | 'waiting for other members';
  /** 1 for the first failure of this step. */
  readonly attempt: number;
  /** ms until the next attempt. */
  readonly delay: number;
  /** What went wrong; the message names the request and what came back. */
  readonly error: Error;
}

/**
 * How many members have registered with the discovery service so far.
 * @public
 */
export interface DiscoveryProgress {
  /** The discovery URL. */
  readonly url: string;
  /** The cluster size (`<url>/_config/size`). */
  readonly size: number;
  /** The registered members' names, oldest registration first. */
  readonly registered: readonly string[];
  /** How many are still missing: `size - registered.length`. */
  readonly missing: number;
}

/**
 * The cluster a discovery URL gave: its first `size` registrations, as an
 * `--initial-cluster` would list them.
 * @public
 */
export interface DiscoveredCluster {
  /** The discovery URL. */
  readonly url: string;
  /** The cluster size read from `<url>/_config/size`. */
  readonly size: number;
  /** Member name to its peer URLs, oldest registration first. */
  readonly members: ReadonlyMap<string, readonly string[]>;
  /** The same as etcd's `--initial-cluster` value: `name=peerURL,...`. */
  readonly initialCluster: string;
  /** Every peer URL, sorted, without duplicates. */
  readonly peerUrls: readonly string[];
}

interface Registration {
  key: string;
  value: string;
  createdIndex: number;
}

interface ClusterStatus {
  size: number;
  registrations: Registration[];
  /** X-Etcd-Index of the listing: watch from the next one. */
  index: number;
}

/**
 * Checks a discovery URL eagerly: `http://` or `https://`, a host, a path
 * (the token directory), no query, fragment or credentials.
 * @returns the URL without a trailing slash.
 * @throws {@link InvalidOptionError} naming `option`.
 * @internal
 */
export function parseDiscoveryUrl(raw: unknown, option = 'discovery'): string {
  if (typeof raw !== 'string' || raw === '') {
    throw new InvalidOptionError(option, `expected a discovery URL such as http://host:2379/v2/keys/discovery/<token>, got ${describe(raw)}`);
  }
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new InvalidOptionError(option, `${describe(raw)} is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new InvalidOptionError(option, `${describe(raw)} must use http:// or https://`);
  if (u.username !== '' || u.password !== '') throw new InvalidOptionError(option, `${describe(raw)} must not carry credentials`);
  if (u.search !== '' || u.hash !== '') throw new InvalidOptionError(option, `${describe(raw)} must not have a query or fragment`);
  if (u.pathname.replace(/\/+$/, '') === '') {
    throw new InvalidOptionError(option, `${describe(raw)} has no path: expected the token's directory, e.g. ${u.origin}/v2/keys/discovery/<token>`);
  }
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
}

/**
 * Checks a discovery proxy eagerly, as etcd reads it: `http://host[:port]`,
 * or `host:port` meaning http.
 * @throws {@link InvalidOptionError} naming `option`.
 * @internal
 */
export function parseDiscoveryProxy(raw: unknown, option = 'discoveryProxy'): URL {
  if (typeof raw !== 'string' || raw === '') throw new InvalidOptionError(option, `expected http://host:port, got ${describe(raw)}`);
  let u: URL | undefined;
  for (const candidate of /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? [raw] : [`http://${raw}`]) {
    try {
      u = new URL(candidate);
    } catch {
      u = undefined;
    }
  }
  if (u === undefined || u.hostname === '') throw new InvalidOptionError(option, `${describe(raw)} is not a URL or host:port`);
  if (u.protocol !== 'http:') throw new InvalidOptionError(option, `${describe(raw)}: only http:// proxies are supported`);
  if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '') {
    throw new InvalidOptionError(option, `${describe(raw)} must not have a path or query`);
  }
  if (u.username !== '' || u.password !== '') throw new InvalidOptionError(option, `${describe(raw)}: proxy credentials are not supported`);
  return u;
}

/**
 * Reads the cluster from a discovery URL, with etcd's v2 discovery
 * protocol as a proxy (which never registers itself) uses it: reads the
 * cluster size from `<url>/_config/size`, lists the registrations (values
 * `name=peerURL[,name=peerURL...]`) oldest first, waits for more with a
 * watch while fewer than `size` have registered, and takes the first `size`.
 *
 * An unreachable service (connection errors, timeouts, 5xx answers) is
 * retried with exponential backoff (250 ms doubling to 8 s; etcd doubles
 * from 1 s to 256 s), each retry reported through `onRetry`, until
 * `timeout`.
 *
 * @throws {@link InvalidOptionError} for bad options (before any request).
 * @throws {@link DiscoveryError} naming the URL asked and what came back.
 * @public
 */
export async function discoverCluster(options: DiscoveryOptions): Promise<DiscoveredCluster> {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError('options', `expected an object with url, got ${describe(options)}`);
  }
  const url = parseDiscoveryUrl(options.url, 'url');
  const proxy = options.proxy === undefined ? undefined : parseDiscoveryProxy(options.proxy, 'proxy');
  const timeout = durationOption('timeout', options.timeout, 300000, 0);
  const dialTimeout = durationOption('dialTimeout', options.dialTimeout, 1000, 1);
  const requestTimeout = durationOption('requestTimeout', options.requestTimeout, 5000, 1);
  const userSignal = signalOption(options.signal);
  for (const hook of ['onRetry', 'onWaiting'] as const) {
    if (options[hook] !== undefined && typeof options[hook] !== 'function') {
      throw new InvalidOptionError(hook, `expected a function, got ${describe(options[hook])}`);
    }
  }
  const run = new DiscoveryRun(url, proxy, dialTimeout, requestTimeout, options);
  const deadline = timeout > 0 ? AbortSignal.timeout(timeout) : undefined;
  const signal = AbortSignal.any([userSignal, deadline].filter((s): s is AbortSignal => s !== undefined));
  try {
    return await run.discover(signal);
  } catch (err) {
    if (err instanceof DiscoveryError) throw err;
    if (userSignal?.aborted) {
      throw new DiscoveryError(url, 'aborted', 'aborted before the cluster was known', { cause: err });
    }
    if (deadline?.aborted) throw run.timedOut(timeout);
    throw new DiscoveryError(url, 'unreachable', messageOf(err), { cause: err });
  }
}

class DiscoveryRun {
  /** The latest complete status read, to tell "incomplete" from "unreachable" when the bound hits. */
  private lastStatus: ClusterStatus | undefined;
  private lastError: unknown;
  private attempts = 0;
  /** Set when the latest attempt failed; cleared by a successful one. */
  private failing = false;

  constructor(
    private readonly url: string,
    private readonly proxy: URL | undefined,
    private readonly dialTimeout: number,
    private readonly requestTimeout: number,
    private readonly hooks: Pick<DiscoveryOptions, 'onRetry' | 'onWaiting'>,
  ) {}

  async discover(signal: AbortSignal): Promise<DiscoveredCluster> {
    for (;;) {
      const status = await this.retrying('cluster status check', signal, () => this.checkCluster(signal));
      const { size, registrations } = status;
      if (registrations.length >= size) {
        if (registrations.length > size) {
          debug('%s: %d registered, taking the first %d', this.url, registrations.length, size);
        }
        return this.toCluster(registrations.slice(0, size), size);
      }
      const registered = registrations.map((r) => nameOf(r.value));
      debug('%s: found %d peer(s), waiting for %d more', this.url, registrations.length, size - registrations.length);
      this.hooks.onWaiting?.({ url: this.url, size, registered, missing: size - registrations.length });
      await this.retrying('waiting for other members', signal, () => this.watch(status.index, signal));
    }
  }

  /** The error to throw when the bound was hit. */
  timedOut(timeout: number): DiscoveryError {
    if (!this.failing && this.lastStatus !== undefined) {
      const { size, registrations } = this.lastStatus;
      const names = registrations.map((r) => nameOf(r.value)).join(', ') || 'none';
      return new DiscoveryError(
        this.url,
        'incomplete',
        `only ${registrations.length} of ${size} members registered within ${timeout} ms (the discovery timeout); registered: ${names}`,
      );
    }
    const last = this.lastError === undefined ? 'none' : messageOf(this.lastError);
    return new DiscoveryError(
      this.url,
      'unreachable',
      `no usable answer within ${timeout} ms (the discovery timeout) after ${this.attempts} attempt(s); last error: ${last}`,
      { cause: this.lastError },
    );
  }

  private retrying<T>(step: DiscoveryRetry['step'], signal: AbortSignal, attempt: () => Promise<T>): Promise<T> {
    const minTimeout = 250;
    const maxTimeout = 8000;
    const factor = 2;
    return pRetry(
      async () => {
        this.attempts++;
        try {
          const result = await attempt();
          this.failing = false;
          return result;
        } catch (err) {
          // A request cut short by the bound or the caller is not the service's failure.
          if (!signal.aborted) {
            this.failing = true;
            this.lastError = err;
          }
          // p-retry rethrows the DiscoveryError itself, without retrying.
          if (err instanceof DiscoveryError) throw new AbortError(err);
          throw err;
        }
      },
      {
        retries: Number.POSITIVE_INFINITY,
        minTimeout,
        maxTimeout,
        factor,
        signal,
        onFailedAttempt: ({ error, attemptNumber, retriesConsumed }) => {
          if (signal.aborted) return;
          const delay = Math.min(Math.round(minTimeout * factor ** retriesConsumed), maxTimeout);
          debug('%s: %s failed (attempt %d), retrying in %d ms: %s', this.url, step, attemptNumber, delay, error.message);
          this.hooks.onRetry?.({ url: this.url, step, attempt: attemptNumber, delay, error });
        },
      },
    );
  }

  private get(path: string, signal: AbortSignal, timeout = this.requestTimeout): Promise<JsonResponse> {
    return getJson(`${this.url}${path}`, { dialTimeout: this.dialTimeout, timeout, signal, proxy: this.proxy }).catch((err: unknown) => {
      throw new Error(`GET ${this.url}${path}: ${messageOf(err)}`, { cause: err });
    });
  }

  private async checkCluster(signal: AbortSignal): Promise<ClusterStatus> {
    const sizeKey = `${this.url}/_config/size`;
    const sizeRes = await this.get('/_config/size', signal);
    const sizeNode = this.etcdNode(sizeRes, `GET ${sizeKey}`);
    if (sizeNode === 'not-found') {
      throw new DiscoveryError(
        this.url,
        'size-not-found',
        `the size key is missing: GET ${sizeKey} answered ${sizeRes.status} ${oneLine(sizeRes.text)}; ` +
          `create it first (curl -X PUT ${sizeKey} -d value=<cluster size>)`,
      );
    }
    if (sizeNode.dir === true || typeof sizeNode.value !== 'string' || !/^\d+$/.test(sizeNode.value) || Number(sizeNode.value) < 1) {
      const got = sizeNode.dir === true ? 'a directory' : describe(sizeNode.value);
      throw new DiscoveryError(
        this.url,
        'bad-size',
        `the size key is bad: GET ${sizeKey} holds ${got}, not a positive whole number of members`,
      );
    }
    const size = Number(sizeNode.value);

    const listRes = await this.get('', signal);
    const dir = this.etcdNode(listRes, `GET ${this.url}`);
    if (dir === 'not-found') {
      throw new DiscoveryError(this.url, 'bad-answer', `GET ${this.url} answered ${listRes.status} ${oneLine(listRes.text)} although its size key exists`);
    }
    const nodes = Array.isArray(dir.nodes) ? (dir.nodes as unknown[]) : [];
    const registrations: Registration[] = [];
    let highest = 0;
    for (const raw of nodes) {
      const n = raw as { key?: unknown; value?: unknown; dir?: unknown; createdIndex?: unknown; modifiedIndex?: unknown } | null;
      if (n === null || typeof n !== 'object' || typeof n.key !== 'string') continue;
      if (typeof n.modifiedIndex === 'number') highest = Math.max(highest, n.modifiedIndex);
      const base = n.key.slice(n.key.lastIndexOf('/') + 1);
      if (base === '_config' || n.dir === true) continue;
      if (typeof n.value !== 'string') continue;
      registrations.push({ key: n.key, value: n.value, createdIndex: typeof n.createdIndex === 'number' ? n.createdIndex : 0 });
    }
    registrations.sort((a, b) => a.createdIndex - b.createdIndex);
    const header = Number(listRes.headers['x-etcd-index']);
    const index = Number.isSafeInteger(header) && header > 0 ? header : highest;
    const status = { size, registrations, index };
    this.lastStatus = status;
    return status;
  }

  /** Waits for any change under the directory after `index` (or about a minute, then the status is read again). */
  private async watch(index: number, signal: AbortSignal): Promise<void> {
    const pause = AbortSignal.timeout(60000);
    const path = `?wait=true&recursive=true&waitIndex=${index + 1}`;
    let res: JsonResponse;
    try {
      res = await this.get(path, AbortSignal.any([signal, pause]), 0);
    } catch (err) {
      if (pause.aborted && !signal.aborted) return;
      throw err;
    }
    const body = res.body as { errorCode?: unknown } | undefined;
    // 401: the index fell out of etcd's event history; read the status again.
    if (res.status === 400 && body?.errorCode === 401) return;
    if (res.status >= 500) throw new Error(`GET ${this.url}${path} answered ${res.status} ${oneLine(res.text)}`);
    if (res.status !== 200 || body === undefined) {
      throw new DiscoveryError(this.url, 'bad-answer', `GET ${this.url}${path} answered ${res.status} ${oneLine(res.text)}, not an etcd v2 watch event`);
    }
  }

  /**
   * The `node` of an etcd v2 keys API answer, `not-found` for etcd's 404
   * "Key not found". Throws a retryable Error for 5xx answers and a
   * {@link DiscoveryError} for anything that is not etcd's keys API.
   */
  private etcdNode(res: JsonResponse, request: string): Record<string, unknown> | 'not-found' {
    const body = res.body as { node?: unknown; errorCode?: unknown } | undefined;
    if (res.status >= 500) throw new Error(`${request} answered ${res.status} ${oneLine(res.text)}`);
    if (res.status === 404 && body?.errorCode === 100) return 'not-found';
    if (res.status !== 200 || body === undefined || body === null || typeof body.node !== 'object' || body.node === null) {
      const what = body === undefined ? 'a body that is not JSON' : oneLine(res.text);
      throw new DiscoveryError(this.url, 'bad-answer', `${request} answered ${res.status} with ${what}: is this an etcd v2 keys API directory?`);
    }
    return body.node as Record<string, unknown>;
  }

  private toCluster(registrations: Registration[], size: number): DiscoveredCluster {
    const members = new Map<string, string[]>();
    const keyOf = new Map<string, Registration>();
    for (const r of registrations) {
      let parsed: Map<string, string[]>;
      try {
        parsed = parseInitialCluster(r.value);
      } catch (err) {
        const problem = err instanceof InitialClusterError ? err.message.replace(/^invalid initialCluster:? ?/, '') : messageOf(err);
        throw new DiscoveryError(this.url, 'invalid-member', `registration ${r.key} = ${JSON.stringify(r.value)} is not name=peerURL: ${problem}`);
      }
      for (const [name, urls] of parsed) {
        const earlier = keyOf.get(name);
        if (earlier !== undefined && earlier !== r) {
          throw new DiscoveryError(
            this.url,
            'duplicate-name',
            `found duplicate name "${name}" among the first ${size} registrations: ${earlier.key} = ${JSON.stringify(earlier.value)} and ${r.key} = ${JSON.stringify(r.value)}`,
          );
        }
        keyOf.set(name, r);
        members.set(name, [...(members.get(name) ?? []), ...urls.filter((u) => !members.get(name)?.includes(u))]);
      }
    }
    const initialCluster = [...members].flatMap(([name, urls]) => urls.map((u) => `${name}=${u}`)).join(',');
    const peerUrls = [...new Set([...members.values()].flat())].sort();
    debug('%s: found %d needed peer(s): %s', this.url, members.size, initialCluster);
    return { url: this.url, size, members, initialCluster, peerUrls };
  }
}

/** The member name of a registration value, for messages. */
function nameOf(value: string): string {
  const eq = value.indexOf('=');
  return eq === -1 ? value : value.slice(0, eq);
}

function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > 200 ? `${flat.slice(0, 200)}...` : flat === '' ? '(empty body)' : flat;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
