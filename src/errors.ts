/**
 * Every error this library throws or emits is an {@link EtcdProxyError} with a
 * stable, literal `code`, so callers can branch on `err.code` instead of
 * parsing messages.
 */

/**
 * Base class of all errors thrown or emitted by etcd-v2-proxy.
 * @public
 */
export class EtcdProxyError extends Error {
  /** Stable machine-readable code, one per subclass. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * An option passed to a constructor, `createProxy()` or the CLI is invalid.
 * The message names the option and what is wrong with it.
 * @public
 */
export class InvalidOptionError extends EtcdProxyError {
  /** Always `ERR_ETCD_PROXY_INVALID_OPTION`. */
  declare readonly code: 'ERR_ETCD_PROXY_INVALID_OPTION';
  /** The option's name, e.g. `failureWait`. */
  readonly option: string;

  constructor(option: string, problem: string) {
    super('ERR_ETCD_PROXY_INVALID_OPTION', `invalid option ${option}: ${problem}`);
    this.option = option;
  }
}

/**
 * An `initialCluster` string (etcd's `--initial-cluster`) could not be parsed.
 * @public
 */
export class InitialClusterError extends EtcdProxyError {
  /** Always `ERR_ETCD_PROXY_INITIAL_CLUSTER`. */
  declare readonly code: 'ERR_ETCD_PROXY_INITIAL_CLUSTER';
  /** The comma-separated part that is wrong (empty string for an empty value). */
  readonly part: string;

  constructor(part: string, problem: string) {
    super(
      'ERR_ETCD_PROXY_INITIAL_CLUSTER',
      part === ''
        ? `invalid initialCluster: ${problem}`
        : `invalid initialCluster entry "${part}": ${problem}`,
    );
    this.part = part;
  }
}

/**
 * No peer answered `GET <peerURL>/members` with a usable member list within
 * the start-up bound.
 * @public
 */
export class ClusterUnreachableError extends EtcdProxyError {
  /** Always `ERR_ETCD_PROXY_CLUSTER_UNREACHABLE`. */
  declare readonly code: 'ERR_ETCD_PROXY_CLUSTER_UNREACHABLE';
  /** The peer URLs that were asked. */
  readonly peerUrls: readonly string[];

  constructor(peerUrls: readonly string[], detail: string, options?: { cause?: unknown }) {
    super(
      'ERR_ETCD_PROXY_CLUSTER_UNREACHABLE',
      `could not get the cluster's members from peer(s) ${peerUrls.join(', ')}: ${detail}`,
      options,
    );
    this.peerUrls = peerUrls;
  }
}

/**
 * A listen URL could not be listened on (its port taken, its address not
 * this host's, no permission): a fault of the host, not of the option, which
 * may go away (the CLI exits 1, as etcd, not 2).
 * @public
 */
export class ListenError extends EtcdProxyError {
  /** Always `ERR_ETCD_PROXY_LISTEN`. */
  declare readonly code: 'ERR_ETCD_PROXY_LISTEN';
  /** The listen URL's origin, e.g. `http://127.0.0.1:2379`. */
  readonly url: string;

  constructor(url: string, options: { cause: Error }) {
    super('ERR_ETCD_PROXY_LISTEN', `cannot listen on ${url}: ${options.cause.message}`, options);
    this.url = url;
  }
}

/**
 * The cluster file `<dataDir>/proxy/cluster` exists but cannot be read or is
 * not etcd's `{"PeerURLs":[...]}` format. The file is left untouched.
 * @public
 */
export class ClusterFileError extends EtcdProxyError {
  /** Always `ERR_ETCD_PROXY_CLUSTER_FILE`. */
  declare readonly code: 'ERR_ETCD_PROXY_CLUSTER_FILE';
  /** Absolute path of the offending file. */
  readonly path: string;

  constructor(path: string, problem: string, options?: { cause?: unknown }) {
    super('ERR_ETCD_PROXY_CLUSTER_FILE', `cluster file ${path}: ${problem}`, options);
    this.path = path;
  }
}

/**
 * The data dir belongs to an etcd member (it has a `member/` directory): a
 * member and a proxy cannot share a data dir. Nothing in it is touched.
 * @public
 */
export class MemberDataDirError extends EtcdProxyError {
  /** Always `ERR_ETCD_PROXY_MEMBER_DATA_DIR`. */
  declare readonly code: 'ERR_ETCD_PROXY_MEMBER_DATA_DIR';
  /** The data dir that was refused. */
  readonly dataDir: string;

  constructor(dataDir: string) {
    super(
      'ERR_ETCD_PROXY_MEMBER_DATA_DIR',
      `data dir ${dataDir} holds an etcd member's data (member/): a member and a proxy cannot share a data dir; use another --data-dir`,
    );
    this.dataDir = dataDir;
  }
}

/**
 * One attempt to reach an upstream etcd endpoint failed. Emitted with
 * `endpointDown`; `phase` says how far the request got, which decides whether
 * it may be sent to another endpoint.
 * @public
 */
export class UpstreamError extends EtcdProxyError {
  /** Always `ERR_ETCD_PROXY_UPSTREAM`. */
  declare readonly code: 'ERR_ETCD_PROXY_UPSTREAM';
  /** The endpoint's client URL. */
  readonly endpoint: string;
  /**
   * `connect`: no connection was made, so the request cannot have reached
   * etcd. `request`: the request may have reached etcd. `response`: etcd's
   * response was cut short.
   */
  readonly phase: 'connect' | 'request' | 'response';
  /** True when the failure was a timeout (dial, write or read). */
  readonly timeout: boolean;

  constructor(
    endpoint: string,
    phase: 'connect' | 'request' | 'response',
    detail: string,
    options?: { cause?: unknown; timeout?: boolean },
  ) {
    super('ERR_ETCD_PROXY_UPSTREAM', `endpoint ${endpoint}: ${detail}`, options);
    this.endpoint = endpoint;
    this.phase = phase;
    this.timeout = options?.timeout ?? false;
  }
}

/**
 * Why a discovery URL (etcd's `--discovery`) gave no cluster:
 *
 * - `size-not-found`: `<url>/_config/size` does not exist (404).
 * - `bad-size`: the size key is not a positive whole number.
 * - `bad-answer`: the discovery service answered something that is not
 *   etcd's v2 keys API (not JSON, an unexpected status).
 * - `invalid-member`: a registered value is not `name=peerURL[,...]`.
 * - `duplicate-name`: two of the first `size` registrations use one name.
 * - `unreachable`: no usable answer (connection refused, timeouts, 5xx)
 *   within the bound; the last failure is in the message.
 * - `incomplete`: the service answered, but fewer than `size` members had
 *   registered within the bound.
 * - `aborted`: the caller's `signal` was aborted first.
 * @public
 */
export type DiscoveryErrorReason =
  | 'size-not-found'
  | 'bad-size'
  | 'bad-answer'
  | 'invalid-member'
  | 'duplicate-name'
  | 'unreachable'
  | 'incomplete'
  | 'aborted';

/**
 * A discovery URL (etcd flag: `--discovery`) did not give the cluster's
 * members. The message names the URL asked and what came back.
 * @public
 */
export class DiscoveryError extends EtcdProxyError {
  /** Always `ERR_ETCD_PROXY_DISCOVERY`. */
  declare readonly code: 'ERR_ETCD_PROXY_DISCOVERY';
  /** The discovery URL, as given. */
  readonly url: string;
  /** What went wrong, for programs; the message says it for people. */
  readonly reason: DiscoveryErrorReason;

  constructor(url: string, reason: DiscoveryErrorReason, problem: string, options?: { cause?: unknown }) {
    super('ERR_ETCD_PROXY_DISCOVERY', `discovery ${url}: ${problem}`, options);
    this.url = url;
    this.reason = reason;
  }
}

/**
 * A DNS SRV lookup (etcd flag: `--discovery-srv`) found no peer. The message
 * names every SRV name asked, the DNS servers asked and what each answered.
 * @public
 */
export class SrvDiscoveryError extends EtcdProxyError {
  /** Always `ERR_ETCD_PROXY_DISCOVERY_SRV`. */
  declare readonly code: 'ERR_ETCD_PROXY_DISCOVERY_SRV';
  /** The domain, as given (`discoverySrv`). */
  readonly domain: string;
  /** The SRV names asked, e.g. `_etcd-server-ssl._tcp.example.com`, with what each answered. */
  readonly lookups: readonly { readonly name: string; readonly answer: string }[];

  constructor(domain: string, lookups: readonly { readonly name: string; readonly answer: string }[], servers: readonly string[] | undefined) {
    const asked = lookups.map((l) => `${l.name}: ${l.answer}`).join('; ');
    const via = servers === undefined ? "the system's DNS servers" : `DNS server(s) ${servers.join(', ')}`;
    super('ERR_ETCD_PROXY_DISCOVERY_SRV', `discovery-srv ${domain}: no etcd peer found in SRV records (asked ${via}): ${asked}`);
    this.domain = domain;
    this.lookups = lookups;
  }
}

/**
 * The cluster's members do not serve the v2 API (`/v2/keys` answers 404: etcd
 * 3.5 without `--enable-v2`, etcd 3.6), so a forwarding proxy
 * (`backend: 'v2'`) would have nothing to forward to. Start the proxy with
 * `backend: 'v3'` (CLI `--backend v3`) to serve v2 clients from the v3 API.
 * @public
 */
export class V2DisabledError extends EtcdProxyError {
  /** Always `ERR_ETCD_PROXY_V2_DISABLED`. */
  declare readonly code: 'ERR_ETCD_PROXY_V2_DISABLED';
  /** The client URL that answered 404. */
  readonly endpoint: string;

  constructor(endpoint: string) {
    super(
      'ERR_ETCD_PROXY_V2_DISABLED',
      `the cluster does not serve the v2 API (${endpoint}/v2/keys answered 404: etcd 3.6, or 3.5 without --enable-v2): start the proxy with --backend v3`,
    );
    this.endpoint = endpoint;
  }
}

/**
 * The v3 backend could not start: the cluster's v3 API did not answer, refused
 * the credentials, or the `v3Prefix` holds data that is not a v2 tree.
 * @public
 */
export class V3BackendStartError extends EtcdProxyError {
  /** Always `ERR_ETCD_PROXY_V3_BACKEND_START`. */
  declare readonly code: 'ERR_ETCD_PROXY_V3_BACKEND_START';

  constructor(problem: string, cause?: unknown) {
    super('ERR_ETCD_PROXY_V3_BACKEND_START', `v3 backend: ${problem}`, cause === undefined ? undefined : { cause });
  }
}
