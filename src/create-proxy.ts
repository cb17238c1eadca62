import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Registry, RegistryContentType } from 'prom-client';
import { networkInterfaces } from 'node:os';
import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import { bootstrapPeers, planBootstrap } from './cluster/bootstrap-peers.js';
import type { PeerUrlsSource } from './cluster/bootstrap-peers.js';
import { clusterFilePath, writeClusterFile } from './cluster/cluster-file.js';
import { ClusterResolver } from './cluster/cluster-resolver.js';
import type { ClusterSnapshot } from './cluster/cluster-resolver.js';
import type { DiscoveryProgress, DiscoveryRetry } from './cluster/discovery.js';
import type { BalancerStrategy, StrategyName } from './balancer/balancer-strategy.js';
import { EndpointBalancer } from './balancer/endpoint-balancer.js';
import { InvalidOptionError, ListenError, V2DisabledError } from './errors.js';
import { getJson } from './cluster/get-json.js';
import { V3Backend } from './v3-backend/v3-backend.js';
import { describe, durationOption, signalOption } from './validate-options.js';
import { hedgeDelayOption } from './forwarding/hedge-delay.js';
import { refusingStreams, sortConnections, V3_REFUSAL_MESSAGE } from './transport/v3-client-refusal.js';
import { GrpcForwarder } from './grpc-forwarding/grpc-forwarder.js';
import { ClientConnections } from './transport/client-connection.js';
import { METRICS_PATH, ProxyMetrics } from './metrics/proxy-metrics.js';
import { explainTlsClientError, hasClientCertificate, listenerTlsOption, upstreamTlsOption } from './tls-options.js';
import type { ListenerTls, UpstreamTlsOptions } from './tls-options.js';
import { directRoute, isPath, V2ProxyHandler } from './handler/v2-proxy-handler.js';
import type { MembershipView, ProxyMode } from './handler/v2-proxy-handler.js';

const debug = createDebug('etcd-v2-proxy:proxy');

/**
 * Options of {@link createProxy}. Durations are in milliseconds.
 * @public
 */
export interface CreateProxyOptions {
  /** etcd flag: `--proxy on` (`readwrite`) or `--proxy readonly`. Default: `readwrite`. */
  mode?: ProxyMode;
  /**
   * URLs to serve clients on, `http://host:port` or `https://host:port`
   * (https needs `certFile` and `keyFile`; port 0 picks a free port; see
   * {@link EtcdV2Proxy.addresses}). etcd flag: `--listen-client-urls`.
   * Default: `['http://localhost:2379']`.
   */
  listenClientUrls?: readonly string[];
  /**
   * The cluster to proxy, `name=peerURL[,name=peerURL...]`. etcd flag:
   * `--initial-cluster`. Give exactly one of `initialCluster`, `discovery`
   * and `discoverySrv` (two at once is an {@link InvalidOptionError} naming
   * both); a cluster file in `dataDir` wins over all three, as etcd does.
   * Default: none.
   */
  initialCluster?: string;
  /**
   * A discovery URL to learn the cluster from, with etcd's v2 discovery
   * protocol (see {@link discoverCluster}), e.g.
   * `http://host:2379/v2/keys/discovery/<token>`. etcd flag: `--discovery`.
   * Default: none.
   */
  discovery?: string;
  /** `http://host:port` proxy for the discovery traffic. etcd flag: `--discovery-proxy`. Default: none. */
  discoveryProxy?: string;
  /**
   * Bound on discovery (`discovery` or `discoverySrv`), retries and the wait
   * for members to register included; 0 waits forever, as etcd does. Not an
   * etcd flag. Default: 300000 (5 min).
   */
  discoveryTimeout?: number;
  /**
   * A domain whose DNS SRV records list the peers (see {@link discoverSrv}):
   * `_etcd-server-ssl._tcp.<domain>` (https) and `_etcd-server._tcp.<domain>`
   * (http). etcd flag: `--discovery-srv`. Default: none.
   */
  discoverySrv?: string;
  /** SRV service name suffix: `_etcd-server-<name>._tcp...`. etcd flag: `--discovery-srv-name`. Default: none. */
  discoverySrvName?: string;
  /**
   * DNS servers (`ip` or `ip:port`) for `discoverySrv` and for the peers'
   * host names (see {@link createDnsLookup}). Not an etcd flag. Default: the
   * system's resolver.
   */
  dnsServers?: readonly string[];
  /**
   * Listeners attached before anything starts, so that events emitted while
   * `createProxy` is still pending (discovery retries, warnings, the first
   * cluster file write) are seen too. Default: none.
   */
  listeners?: Partial<EtcdV2ProxyEvents>;
  /**
   * Where the learned peer URLs are persisted, as `<dataDir>/proxy/cluster`
   * in etcd's own format. etcd flag: `--data-dir`. Default: none (nothing is
   * persisted).
   */
  dataDir?: string;
  /** etcd flag: `--proxy-failure-wait`. Default: 5000. See {@link EndpointBalancerOptions.failureWait}. */
  failureWait?: number;
  /** etcd flag: `--proxy-refresh-interval`. Default: 30000. See {@link ClusterResolverOptions.refreshInterval}. */
  refreshInterval?: number;
  /** etcd flag: `--proxy-dial-timeout`. Default: 1000. */
  dialTimeout?: number;
  /** etcd flag: `--proxy-write-timeout`. Default: 5000. */
  writeTimeout?: number;
  /** etcd flag: `--proxy-read-timeout`. Default: 0 (none). */
  readTimeout?: number;
  /** See {@link EndpointBalancerOptions.strategy}. Default: `least-in-flight`. */
  strategy?: StrategyName | BalancerStrategy;
  /** See {@link EndpointBalancerOptions.leaderWrites}. Default: true. */
  leaderWrites?: boolean;
  /** See {@link EndpointBalancerOptions.idleTimeout}. Default: 30000. */
  idleTimeout?: number;
  /** See {@link V2ProxyHandlerOptions.responseTimeout}. Default: 10000. */
  responseTimeout?: number;
  /** See {@link V2ProxyHandlerOptions.maxBodyBytes}. Default: 10 MiB. */
  maxBodyBytes?: number;
  /** See {@link V2ProxyHandlerOptions.pipelineReads}. CLI: `--pipeline-reads`. Default: 1 (no pipelining). */
  pipelineReads?: number;
  /** See {@link V2ProxyHandlerOptions.hedgeDelay}. CLI: `--hedge-delay`. Default: `'auto'` (0 turns hedging off). */
  hedgeDelay?: number | 'auto';
  /**
   * ms a client may take to send its request headers; a client that trickles
   * them is disconnected. Default: 10000.
   */
  clientHeadersTimeout?: number;
  /**
   * ms a client may take to send its whole request, body included; after it
   * the request gets 408 and nothing is forwarded. Default: 30000.
   */
  clientRequestTimeout?: number;
  /**
   * ms a client's keep-alive connection may stay idle between requests
   * before the proxy closes it. etcd's proxy never closes one; node:http's
   * default is 5 s, shorter than what HTTP clients keep an idle connection
   * for (Go's: 90 s), so a client could send a write on a connection the
   * proxy was closing. Default: 120000 (longer than Go's); 0: never.
   */
  clientKeepAliveTimeout?: number;
  /**
   * ms `close()` lets requests in flight finish before aborting what is left,
   * open watches included. Default: 5000.
   */
  shutdownTimeout?: number;
  /** See {@link ClusterResolverOptions.startTimeout}: how long `createProxy` waits for the cluster. Default: 15000. */
  startTimeout?: number;
  /**
   * PEM certificate of the `https://` listeners. As with etcd's proxy, it is
   * also the client certificate shown to members on `https://` client URLs
   * (so it needs clientAuth as well as serverAuth in its extended key usage
   * when members ask for client certificates). etcd flag: `--cert-file`.
   * Default: none.
   */
  certFile?: string;
  /** PEM private key of `certFile`. etcd flag: `--key-file`. Default: none. */
  keyFile?: string;
  /**
   * PEM CA bundle: clients of the `https://` listeners must show a
   * certificate signed by it (as etcd does, setting it turns on
   * `clientCertAuth`), and members on `https://` client URLs must too.
   * etcd flag: `--trusted-ca-file`. Default: none (no client certificate
   * asked; members verified against Node's bundled CAs).
   */
  trustedCaFile?: string;
  /**
   * Refuse, at the TLS handshake, clients of the `https://` listeners
   * without a valid certificate signed by `trustedCaFile` (required with it).
   * The `tlsClientError` event says why each was refused. Needs an https://
   * listen URL. etcd flag: `--client-cert-auth`. Default: false.
   */
  clientCertAuth?: boolean;
  /**
   * PEM client certificate for `https://` peer URLs (`GET /members`), and
   * for forwarding to `https://` client URLs when `certFile` and `keyFile`
   * are not set, as etcd's proxy falls back. etcd flag: `--peer-cert-file`.
   * Default: none.
   */
  peerCertFile?: string;
  /** PEM private key of `peerCertFile`. etcd flag: `--peer-key-file`. Default: none. */
  peerKeyFile?: string;
  /**
   * PEM CA bundle the peers' certificates must chain to (and the members'
   * client URLs', when the `--peer-*` settings are used for forwarding).
   * etcd flag: `--peer-trusted-ca-file`. Default: Node's bundled CAs.
   */
  peerTrustedCaFile?: string;
  /**
   * Do not verify the members' and peers' certificates: anyone on the path
   * can read and change the traffic. For tests and first setups only. Not an
   * etcd member flag (etcdctl's `--insecure-skip-tls-verify`; the CLI takes
   * that name). Default: false: certificates and host names are verified.
   */
  insecureSkipVerify?: boolean;
  /** See {@link V2ProxyHandlerOptions.cors}. etcd flag: `--cors`. Default: not set (members' CORS headers pass through). */
  cors?: string | readonly string[];
  /**
   * The prom-client registry for the metrics served on `GET /metrics` (see
   * {@link ProxyMetrics}); pass yours to add your own metrics or Node's
   * default ones. Default: a new registry with the proxy's metrics only.
   */
  metricsRegistry?: Registry<RegistryContentType>;
  /**
   * Where v2 requests are served from. `v2`: forwarded to the members' own v2
   * API (etcd's `--proxy`); start-up fails with {@link V2DisabledError} when
   * the members answer `/v2/keys` with 404. `v3`: answered by this proxy from
   * the cluster's v3 API ({@link V3Backend}), for etcd 3.5 without
   * `--enable-v2` and etcd 3.6. Never detected: two proxies that disagree
   * would split the data. CLI: `--backend`. Default: `v2`.
   */
  backend?: 'v2' | 'v3';
  /**
   * With `backend: 'v3'`: the v3 key prefix under which the v2 tree lives
   * (etcd 3.4/3.5's `--experimental-enable-v2v3` layout). Every proxy of a
   * cluster must use the same. CLI: `--v3-prefix`. Default: `/v2`.
   */
  v3Prefix?: string;
  /** With `backend: 'v3'` on a cluster with v3 auth enabled: the v3 user. CLI: `--v3-user name:password`. Default: none. */
  v3Username?: string;
  /** Password of `v3Username`. */
  v3Password?: string;
  /**
   * etcd v3 clients (gRPC over HTTP/2: h2c on `http://` listeners, ALPN `h2`
   * on `https://` ones) on the same port as v2. `forward`: their calls are
   * forwarded to the members with the same membership, balancing, failover,
   * TLS, metrics and events as v2 (see {@link GrpcForwarder}). `refuse`:
   * each call is answered at once with UNIMPLEMENTED and
   * {@link V3_REFUSAL_MESSAGE}, for sites that want v2 only. CLI:
   * `--v3-clients`. Default: `forward`.
   */
  v3Clients?: 'forward' | 'refuse';
  /** Aborting it closes the proxy. */
  signal?: AbortSignal;
}

/**
 * A client's TLS connection to an `https://` listener failed, e.g. refused
 * by `clientCertAuth`. Nothing was read from it.
 * @public
 */
export interface TlsClientErrorEvent {
  /** The client's address, when known. */
  readonly remoteAddress: string | undefined;
  /**
   * The certificate verification code (`CERT_HAS_EXPIRED`,
   * `UNABLE_TO_VERIFY_LEAF_SIGNATURE`...) or the error's code
   * (`ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE`, `ECONNRESET`...).
   */
  readonly code: string;
  /** What was wrong, e.g. "missing client certificate: ..." or "the client's certificate has expired". */
  readonly message: string;
  /** The error node:tls reported. */
  readonly error: Error;
}

/**
 * One address the proxy listens on.
 * @public
 */
export interface ProxyAddress {
  /** The URL clients use, with the port actually bound. */
  readonly url: string;
  /** The host bound (IPv6 without brackets). */
  readonly host: string;
  /** The port bound. */
  readonly port: number;
}

/**
 * Events of {@link EtcdV2Proxy}.
 * @public
 */
export interface EtcdV2ProxyEvents {
  /** The cluster file was (re)written with these peer URLs. */
  clusterFileWritten: (path: string, peerUrls: readonly string[]) => void;
  /** Writing the cluster file failed; the proxy keeps serving. */
  clusterFileError: (error: Error) => void;
  /**
   * Something is misconfigured but the proxy goes on (e.g. a member advertises
   * this proxy's own address, or `discovery`/`discoverySrv` are ignored
   * because the data dir has a cluster file: said once, naming the file).
   */
  warning: (message: string) => void;
  /** An attempt to reach the discovery service failed and will be retried after `retry.delay` ms. */
  discoveryRetry: (retry: DiscoveryRetry) => void;
  /** Fewer than the cluster size have registered with the discovery service; waiting for `progress.missing` more. */
  discoveryWaiting: (progress: DiscoveryProgress) => void;
  /** A client's TLS handshake with an `https://` listener failed (no, expired or untrusted client certificate...). */
  tlsClientError: (event: TlsClientErrorEvent) => void;
}

/**
 * A running proxy, as returned by {@link createProxy}.
 * @public
 */
export interface EtcdV2Proxy extends EventEmitter<EtcdV2ProxyEvents> {
  /** The bound listen addresses, in the order of `listenClientUrls`. */
  readonly addresses: readonly ProxyAddress[];
  /** Where the first peer URLs came from. */
  readonly peerUrlsSource: PeerUrlsSource;
  /** The peer URLs first asked for the members (from the cluster file, `initialCluster`, `discovery` or `discoverySrv`). */
  readonly bootstrapPeerUrls: readonly string[];
  /** The cluster file path, when a `dataDir` was given. */
  readonly clusterFile: string | undefined;
  /** Learns and refreshes the members. */
  readonly resolver: ClusterResolver;
  /** Holds the members' client URLs and their health. */
  readonly balancer: EndpointBalancer;
  /** The `(req, res)` handler the listeners serve. */
  readonly handler: V2ProxyHandler;
  /** With `backend: 'v3'`: what serves the v2 API from the v3 API; undefined when forwarding. */
  readonly v3Backend: V3Backend | undefined;
  /** The metrics served on `GET /metrics` (see {@link METRICS_PATH}). */
  readonly metrics: ProxyMetrics;
  /** What forwards etcd v3 clients' gRPC calls; undefined with `v3Clients: 'refuse'`. */
  readonly grpc: GrpcForwarder | undefined;
  /**
   * The node:http (or node:https, for https:// URLs) servers, one per listen
   * URL. The requests the proxy only forwards are read by its own HTTP/1.1
   * reader (after the TLS handshake, on https://), not by the server: they
   * do not pass through the server's `request` event (the handler's
   * `request` event sees every request).
   */
  readonly servers: readonly (Server | HttpsServer)[];
  /**
   * Stops listening and refreshing, aborts open watches at once, lets other
   * requests in flight finish for up to `shutdownTimeout` ms and aborts what
   * is left, waits for a pending cluster file write, and resolves when all of
   * it is done. Idempotent.
   */
  close(): Promise<void>;
}

/**
 * Starts an etcd v2 proxy: learns the cluster (from the data dir's cluster
 * file if there is one, else from `initialCluster`, `discovery` or
 * `discoverySrv`), listens on every listen
 * URL and persists the peer URLs it learns. Resolves once the cluster
 * answered and every listener is bound.
 *
 * @throws {@link InvalidOptionError} or {@link InitialClusterError} for bad options,
 *   {@link ClusterFileError} for an unreadable cluster file (left untouched),
 *   {@link ClusterUnreachableError} when no peer answers within `startTimeout`,
 *   {@link DiscoveryError} or {@link SrvDiscoveryError} when discovery gave no cluster.
 * @public
 */
export async function createProxy(options: CreateProxyOptions): Promise<EtcdV2Proxy> {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError('options', `expected an object, got ${describe(options)}`);
  }
  const listen = parseListenUrls(options.listenClientUrls ?? ['http://localhost:2379']);
  const signal = signalOption(options.signal);
  if (options.dataDir !== undefined && (typeof options.dataDir !== 'string' || options.dataDir === '')) {
    throw new InvalidOptionError('dataDir', `expected a directory path, got ${describe(options.dataDir)}`);
  }
  const bootstrap = planBootstrap(options);
  const listeners = listenersOption(options.listeners);
  const tls = tlsSettings(options, listen);
  // The resolver is made once the first peer URLs are known; readiness and metrics read it through this.
  let resolverRef: ClusterResolver | undefined;
  const membership: MembershipView = {
    get snapshot() {
      return resolverRef?.snapshot;
    },
    get lastRefresh() {
      return resolverRef?.lastRefresh;
    },
    get stale() {
      return resolverRef?.stale ?? false;
    },
  };

  // Checked before discovery, which may take minutes, as the resolver will check them.
  durationOption('refreshInterval', options.refreshInterval, 30000, 1);
  durationOption('dialTimeout', options.dialTimeout, 1000, 1);
  durationOption('startTimeout', options.startTimeout, 15000, 1);
  hedgeDelayOption(options.hedgeDelay);
  const backendKind = options.backend ?? 'v2';
  if (backendKind !== 'v2' && backendKind !== 'v3') {
    throw new InvalidOptionError('backend', `expected "v2" or "v3", got ${describe(options.backend)}`);
  }
  const v3Clients = options.v3Clients ?? 'forward';
  if (v3Clients !== 'forward' && v3Clients !== 'refuse') {
    throw new InvalidOptionError('v3Clients', `expected "forward" or "refuse", got ${describe(options.v3Clients)}`);
  }
  if (backendKind === 'v2') {
    for (const name of ['v3Prefix', 'v3Username', 'v3Password'] as const) {
      if (options[name] !== undefined) throw new InvalidOptionError(name, 'only used with backend "v3"');
    }
  }
  let v3: V3Backend | undefined;
  let running: RunningProxy | undefined;
  const balancer = new EndpointBalancer({
    failureWait: options.failureWait,
    idleTimeout: options.idleTimeout,
    strategy: options.strategy,
    leaderWrites: options.leaderWrites,
    leaderRefreshInterval: options.refreshInterval,
    tls: tls.forward,
    ...(backendKind === 'v3' ? { leaderLookup: (_e, lookupSignal) => v3!.lookUpLeader(lookupSignal) } : {}),
  });
  if (backendKind === 'v3') {
    try {
      v3 = new V3Backend({
        balancer,
        prefix: options.v3Prefix,
        tls: tls.forward,
        username: options.v3Username,
        password: options.v3Password,
        // As an etcd v2 member: a verified client certificate names the v2 user of a request without credentials.
        clientCertAuth: tls.listener?.clientCertAuth === true,
        dialTimeout: options.dialTimeout,
        // The members serve no v2: v2 clients that sync their endpoints must stay on the proxy.
        advertiseClientUrls: () => running?.advertisedUrls() ?? [],
      });
    } catch (err) {
      balancer.close();
      throw err;
    }
  }
  const handler = new V2ProxyHandler({
    balancer,
    mode: options.mode,
    dialTimeout: options.dialTimeout,
    writeTimeout: options.writeTimeout,
    readTimeout: options.readTimeout,
    responseTimeout: options.responseTimeout,
    maxBodyBytes: options.maxBodyBytes,
    pipelineReads: options.pipelineReads,
    hedgeDelay: options.hedgeDelay,
    cors: options.cors,
    resolver: membership,
    backend: v3,
  });
  const grpc =
    v3Clients === 'forward'
      ? new GrpcForwarder({ balancer, mode: options.mode, dialTimeout: options.dialTimeout, idleTimeout: options.idleTimeout, tls: tls.forward })
      : undefined;
  let metrics: ProxyMetrics;
  try {
    metrics = new ProxyMetrics({ handler, balancer, resolver: membership, registry: options.metricsRegistry, grpc });
  } catch (err) {
    grpc?.close();
    handler.close();
    v3?.close();
    balancer.close();
    throw err instanceof InvalidOptionError && err.option === 'registry' ? new InvalidOptionError('metricsRegistry', err.message.replace(/^invalid option registry: /, '')) : err;
  }
  const serverTimeouts = {
    headersTimeout: durationOption('clientHeadersTimeout', options.clientHeadersTimeout, 10000, 1),
    requestTimeout: durationOption('clientRequestTimeout', options.clientRequestTimeout, 30000, 1),
    keepAliveTimeout: durationOption('clientKeepAliveTimeout', options.clientKeepAliveTimeout, 120000),
  };
  const shutdownTimeout = durationOption('shutdownTimeout', options.shutdownTimeout, 5000);
  const early = (event: keyof EtcdV2ProxyEvents, arg: unknown): void => (listeners[event] as ((a: unknown) => void) | undefined)?.(arg);
  let found: Awaited<ReturnType<typeof bootstrapPeers>>;
  try {
    found = await bootstrapPeers(bootstrap, options.dataDir, {
      signal,
      onWarning: (message) => early('warning', message),
      onDiscoveryRetry: (retry) => early('discoveryRetry', retry),
      onDiscoveryWaiting: (progress) => early('discoveryWaiting', progress),
    });
  } catch (err) {
    metrics.close();
    grpc?.close();
    handler.close();
    v3?.close();
    balancer.close();
    throw err;
  }
  const { peerUrls, fromFile } = found;
  const resolver = new ClusterResolver({
    peerUrls,
    lookup: bootstrap.lookup,
    refreshInterval: options.refreshInterval,
    dialTimeout: options.dialTimeout,
    startTimeout: options.startTimeout,
    tls: tls.peer,
  });
  resolverRef = resolver;
  const proxy = new RunningProxy(resolver, balancer, handler, options.dataDir, fromFile, peerUrls, shutdownTimeout, found.source, metrics, v3, grpc);
  running = proxy;
  for (const [event, listener] of Object.entries(listeners)) proxy.on(event as keyof EtcdV2ProxyEvents, listener as (...args: unknown[]) => void);
  resolver.on('members', (snapshot) => proxy.onMembers(snapshot));
  const onAbort = (): void => void proxy.close();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    signal?.throwIfAborted();
    // Bind first: a port in use fails fast, and the proxy's own addresses are
    // known before the first member list arrives (see onMembers).
    await proxy.listen(listen, serverTimeouts, tls.listener);
    await resolver.start();
    if (v3 !== undefined) await v3.check(signal);
    else await checkV2Served(balancer, tls.forward, options.startTimeout ?? 15000, signal);
    await proxy.persisting;
    proxy.started();
  } catch (err) {
    signal?.removeEventListener('abort', onAbort);
    await proxy.close();
    throw err;
  }
  return proxy;
}

class RunningProxy extends EventEmitter<EtcdV2ProxyEvents> implements EtcdV2Proxy {
  addresses: ProxyAddress[] = [];
  servers: Server[] = [];
  readonly clusterFile: string | undefined;
  readonly peerUrlsSource: PeerUrlsSource;
  /** Settles when the latest cluster file write is over. */
  persisting: Promise<void> = Promise.resolve();
  private written: readonly string[] | undefined;
  private held: Array<() => void> | undefined = [];
  private closing: Promise<void> | undefined;

  constructor(
    readonly resolver: ClusterResolver,
    readonly balancer: EndpointBalancer,
    readonly handler: V2ProxyHandler,
    private readonly dataDir: string | undefined,
    fileContents: readonly string[] | undefined,
    readonly bootstrapPeerUrls: readonly string[],
    private readonly shutdownTimeout: number,
    source: PeerUrlsSource,
    readonly metrics: ProxyMetrics,
    readonly v3Backend: V3Backend | undefined,
    readonly grpc: GrpcForwarder | undefined,
  ) {
    super();
    this.peerUrlsSource = source;
    this.clusterFile = dataDir === undefined ? undefined : clusterFilePath(dataDir);
    this.written = fileContents === undefined ? undefined : [...fileContents].sort();
  }

  /**
   * Events that happen while `createProxy()` is starting are held until it
   * has resolved, then emitted on the next turn of the event loop, so that
   * listeners attached right after `await createProxy()` get them.
   */
  private emitSoon<E extends keyof EtcdV2ProxyEvents>(event: E, ...args: Parameters<EtcdV2ProxyEvents[E]>): void {
    const emit = (): void => void (this.emit as (e: E, ...a: Parameters<EtcdV2ProxyEvents[E]>) => boolean)(event, ...args);
    if (this.held === undefined) emit();
    else this.held.push(emit);
  }

  /** Called when `createProxy()` resolves: releases the events held during start-up. */
  started(): void {
    const held = this.held ?? [];
    this.held = undefined;
    if (held.length > 0) setImmediate(() => held.forEach((emit) => emit()));
  }

  onMembers(snapshot: ClusterSnapshot): void {
    this.balancer.setEndpoints(snapshot.clientUrls.filter((url) => !this.isSelf(url)));
    const peers = snapshot.peerUrls;
    if (this.dataDir === undefined || peers.length === 0 || this.closing !== undefined) return;
    if (this.written !== undefined && this.written.length === peers.length && this.written.every((u, i) => u === peers[i])) return;
    this.written = peers;
    const dataDir = this.dataDir;
    this.persisting = this.persisting.then(() =>
      writeClusterFile(dataDir, peers).then(
        () => {
          debug('wrote %o to %s', peers, this.clusterFile);
          this.emitSoon('clusterFileWritten', this.clusterFile!, peers);
        },
        (err: Error) => {
          this.written = undefined;
          debug('writing %s failed: %s', this.clusterFile, err.message);
          this.emitSoon('clusterFileError', err);
        },
      ),
    );
  }

  /**
   * A member that advertises this proxy's own address as its client URL (easy
   * to do on a host that runs both) would make the proxy forward to itself.
   */
  private isSelf(url: string): boolean {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return false;
    }
    const host = u.hostname.replace(/^\[|\]$/g, '');
    const port = u.port || (u.protocol === 'https:' ? '443' : '80');
    const self = this.addresses.some(
      (a) =>
        String(a.port) === port &&
        (host === a.host ||
          (isLocalHost(host) && isLocalHost(a.host)) ||
          (isWildcard(a.host) && (isLocalHost(host) || localAddresses().has(host)))),
    );
    if (self) {
      const message = `ignoring client URL ${url}: it is this proxy's own address (check the members' --advertise-client-urls)`;
      debug(message);
      this.emitSoon('warning', message);
    }
    return self;
  }

  /** `GET /metrics` is answered here, before the handler, as etcd's proxy serves it beside the proxy on the same port. */
  private readonly serve = (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url;
    if (url !== undefined && isPath(url, METRICS_PATH)) {
      this.metrics.handle(req, res);
      return;
    }
    this.handler.handle(req, res);
  };

  async listen(urls: readonly URL[], timeouts: { headersTimeout: number; requestTimeout: number; keepAliveTimeout: number }, tls: ListenerTls | undefined): Promise<void> {
    for (const u of urls) {
      const httpOptions = { headersTimeout: timeouts.headersTimeout, requestTimeout: timeouts.requestTimeout, connectionsCheckingInterval: 500 };
      const server =
        u.protocol === 'https:' && tls !== undefined
          ? createHttpsServer({ ...tls.serverOptions, ...httpOptions, handshakeTimeout: timeouts.headersTimeout }, this.serve)
          : createServer(httpOptions, this.serve);
      server.keepAliveTimeout = timeouts.keepAliveTimeout;
      if (u.protocol === 'https:') {
        // node:tls closes a connection whose client certificate fails verification before anything
        // reads its address; read it on arrival so that the TCP socket keeps it for the event.
        server.prependListener('connection', (raw: Socket) => void raw.remoteAddress);
        server.on('tlsClientError', (error: Error, socket: TLSSocket) => {
          const { code, message } = explainTlsClientError(error, socket);
          const remoteAddress = socket.remoteAddress ?? (socket as TLSSocket & { _parent?: Socket | null })._parent?.remoteAddress;
          debug('TLS client %s refused: %s', remoteAddress, message);
          this.emitSoon('tlsClientError', { remoteAddress, code, message, error });
        });
      }
      // The listener reads the requests it only forwards itself (client-connection.ts); the rest goes to node:http(s).
      const own = new ClientConnections(directRoute(this.handler), (url) => !isPath(url, METRICS_PATH), server);
      // HTTP/2 (etcd v3 clients, gRPC) on the same port: forwarded, or refused at once.
      sortConnections(server, this.grpc?.handle ?? refusingStreams(V3_REFUSAL_MESSAGE), own);
      this.servers.push(server);
      const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err) => reject(new ListenError(u.origin, { cause: err })));
        // A deep accept queue (Go's is 4096, Node's 511) lets thousands of watchers connect at once.
        server.listen({ port: u.port === '' ? 80 : Number(u.port), host, backlog: 4096 }, () => resolve());
      });
      const port = (server.address() as AddressInfo).port;
      const shownHost = host.includes(':') ? `[${host}]` : host;
      this.addresses.push({ url: `${u.protocol}//${shownHost}:${port}`, host, port });
    }
  }

  /** The URLs v2 clients are told to reach this proxy on: the listen URLs, a wildcard host shown as loopback (a client on this host reaches it there). */
  advertisedUrls(): string[] {
    return this.addresses.map((a) => {
      if (a.host === '0.0.0.0' || a.host === '') return a.url.replace('//0.0.0.0:', '//127.0.0.1:');
      if (a.host === '::') return a.url.replace('//[::]:', '//[::1]:');
      return a.url;
    });
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.resolver.close();
      this.metrics.close();
      const closed = this.servers.map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve())));
      await Promise.all([this.handler.drain(this.shutdownTimeout), this.grpc?.drain(this.shutdownTimeout)]);
      for (const s of this.servers) s.closeAllConnections();
      this.grpc?.close();
      this.v3Backend?.close();
      this.balancer.close();
      await Promise.all(closed);
      await this.persisting;
      this.removeAllListeners();
    })();
    return this.closing;
  }
}

function parseListenUrls(urls: unknown): URL[] {
  if (!Array.isArray(urls) || urls.length === 0) {
    throw new InvalidOptionError('listenClientUrls', `expected a non-empty array of http(s)://host:port URLs, got ${describe(urls)}`);
  }
  return urls.map((raw: unknown, i) => {
    const name = `listenClientUrls[${i}]`;
    let u: URL;
    try {
      u = new URL(String(raw));
    } catch {
      throw new InvalidOptionError(name, `${describe(raw)} is not a URL`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new InvalidOptionError(name, `${describe(raw)} must use http:// or https://`);
    if (u.port === '' && !/:\d+\/?$/.test(String(raw))) throw new InvalidOptionError(name, `${describe(raw)} must give a port (host:port)`);
    if (u.pathname !== '/' || u.search !== '') throw new InvalidOptionError(name, `${describe(raw)} must not have a path or query`);
    return u;
  });
}

function listenersOption(value: unknown): Partial<EtcdV2ProxyEvents> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object') {
    throw new InvalidOptionError('listeners', `expected an object of event listeners, got ${describe(value)}`);
  }
  for (const [event, listener] of Object.entries(value)) {
    if (typeof listener !== 'function') throw new InvalidOptionError(`listeners.${event}`, `expected a function, got ${describe(listener)}`);
  }
  return value as Partial<EtcdV2ProxyEvents>;
}

function isLocalHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** This host's interface addresses (a wildcard listener answers on each of them). */
function localAddresses(): Set<string> {
  const all = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) all.add(i.address);
  return all;
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

/**
 * The TLS settings, checked before anything starts: the listeners' (for
 * https:// listen URLs), the peers' (`GET /members`), and the one used to
 * forward to https:// client URLs: the client settings (`certFile`,
 * `keyFile`, `trustedCaFile`), or the peer ones when no client certificate is
 * set and some peer setting is, as etcd's proxy falls back.
 */
/**
 * With the forwarding backend: the first member that answers `GET /v2/keys`
 * must not answer 404 (v2 turned off), or there is nothing to forward to. A
 * member that does not answer at all is not a verdict: the next is asked, and
 * with none answering the proxy starts (members come and go).
 */
async function checkV2Served(balancer: EndpointBalancer, tlsOptions: UpstreamTlsOptions | undefined, timeout: number, signal: AbortSignal | undefined): Promise<void> {
  const tls = upstreamTlsOption(tlsOptions, 'tls');
  for (const e of balancer.available) {
    try {
      const res = await getJson(`${e.url}/v2/keys`, { dialTimeout: Math.min(timeout, 2000), timeout: Math.min(timeout, 5000), signal, tls });
      // A member without v2 answers with Go's mux 404 (text "404 page not found");
      // a 404 of another kind (an HTTP server that is not etcd) is not taken for it.
      if (res.status === 404 && res.text.startsWith('404 page not found')) throw new V2DisabledError(e.url);
      return;
    } catch (err) {
      if (err instanceof V2DisabledError || signal?.aborted === true) throw err;
    }
  }
}

function tlsSettings(
  options: CreateProxyOptions,
  listen: readonly URL[],
): { listener: ListenerTls | undefined; peer: UpstreamTlsOptions | undefined; forward: UpstreamTlsOptions | undefined } {
  const https = listen.some((u) => u.protocol === 'https:');
  const listener = https ? listenerTlsOption(options) : undefined;
  if (!https && options.clientCertAuth === true) {
    throw new InvalidOptionError('clientCertAuth', 'no listenClientUrls entry is https://, so no client would be asked for a certificate');
  }
  const defined = <T extends object>(o: T): T | undefined => (Object.values(o).some((v) => v !== undefined) ? o : undefined);
  const client = defined({ certFile: options.certFile, keyFile: options.keyFile, trustedCaFile: options.trustedCaFile, insecureSkipVerify: options.insecureSkipVerify });
  const peer = defined({ certFile: options.peerCertFile, keyFile: options.peerKeyFile, trustedCaFile: options.peerTrustedCaFile, insecureSkipVerify: options.insecureSkipVerify });
  upstreamTlsOption(client, { certFile: 'certFile', keyFile: 'keyFile', trustedCaFile: 'trustedCaFile', insecureSkipVerify: 'insecureSkipVerify' });
  upstreamTlsOption(peer, { certFile: 'peerCertFile', keyFile: 'peerKeyFile', trustedCaFile: 'peerTrustedCaFile', insecureSkipVerify: 'insecureSkipVerify' });
  const peerSet = options.peerCertFile !== undefined || options.peerKeyFile !== undefined || options.peerTrustedCaFile !== undefined;
  const forward = hasClientCertificate(client) || !peerSet ? client : peer;
  return { listener, peer, forward };
}
