import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import { clusterFilePath, readClusterFile, writeClusterFile } from './cluster-file.js';
import { ClusterResolver } from './cluster-resolver.js';
import type { ClusterSnapshot } from './cluster-resolver.js';
import { EndpointBalancer } from './endpoint-balancer.js';
import { InvalidOptionError } from './errors.js';
import { initialClusterPeerUrls } from './initial-cluster.js';
import { describe, signalOption } from './validate-options.js';
import { refuseV3Clients } from './v3-client-refusal.js';
import { V2ProxyHandler } from './v2-proxy-handler.js';
import type { ProxyMode } from './v2-proxy-handler.js';

const debug = createDebug('etcd-v2-proxy:proxy');

/**
 * Options of {@link createProxy}. Durations are in milliseconds.
 * @public
 */
export interface CreateProxyOptions {
  /** etcd flag: `--proxy on` (`readwrite`) or `--proxy readonly`. Default: `readwrite`. */
  mode?: ProxyMode;
  /**
   * URLs to serve clients on, `http://host:port` (port 0 picks a free port;
   * see {@link EtcdV2Proxy.addresses}). etcd flag: `--listen-client-urls`.
   * Default: `['http://localhost:2379']`.
   */
  listenClientUrls?: readonly string[];
  /**
   * The cluster to proxy, `name=peerURL[,name=peerURL...]`. etcd flag:
   * `--initial-cluster`. Required unless `dataDir` holds a cluster file,
   * which is then used instead, as etcd does.
   */
  initialCluster?: string;
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
  /** See {@link V2ProxyHandlerOptions.maxBodyBytes}. Default: 10 MiB. */
  maxBodyBytes?: number;
  /** See {@link ClusterResolverOptions.startTimeout}: how long `createProxy` waits for the cluster. Default: 15000. */
  startTimeout?: number;
  /** Aborting it closes the proxy. */
  signal?: AbortSignal;
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
}

/**
 * A running proxy, as returned by {@link createProxy}.
 * @public
 */
export interface EtcdV2Proxy extends EventEmitter<EtcdV2ProxyEvents> {
  /** The bound listen addresses, in the order of `listenClientUrls`. */
  readonly addresses: readonly ProxyAddress[];
  /** Where the first peer URLs came from. */
  readonly peerUrlsSource: 'cluster-file' | 'initial-cluster';
  /** The peer URLs first asked for the members (from the cluster file or `initialCluster`). */
  readonly bootstrapPeerUrls: readonly string[];
  /** The cluster file path, when a `dataDir` was given. */
  readonly clusterFile: string | undefined;
  /** Learns and refreshes the members. */
  readonly resolver: ClusterResolver;
  /** Holds the members' client URLs and their health. */
  readonly balancer: EndpointBalancer;
  /** The `(req, res)` handler the listeners serve. */
  readonly handler: V2ProxyHandler;
  /** The node:http servers, one per listen URL. */
  readonly servers: readonly Server[];
  /**
   * Stops listening, aborts requests in flight (open watches included), stops
   * refreshing, waits for a pending cluster file write and resolves when all
   * of it is done. Idempotent.
   */
  close(): Promise<void>;
}

/**
 * Starts an etcd v2 proxy: learns the cluster (from the data dir's cluster
 * file if there is one, else from `initialCluster`), listens on every listen
 * URL and persists the peer URLs it learns. Resolves once the cluster
 * answered and every listener is bound.
 *
 * @throws {@link InvalidOptionError} or {@link InitialClusterError} for bad options,
 *   {@link ClusterFileError} for an unreadable cluster file (left untouched),
 *   {@link ClusterUnreachableError} when no peer answers within `startTimeout`.
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
  // Validate initialCluster even when a cluster file will win: a typo should not wait for the day the file is gone.
  const initialPeers = options.initialCluster === undefined ? undefined : initialClusterPeerUrls(options.initialCluster);
  const fromFile = options.dataDir === undefined ? undefined : await readClusterFile(options.dataDir);
  const peerUrls = fromFile ?? initialPeers;
  if (peerUrls === undefined) {
    throw new InvalidOptionError(
      'initialCluster',
      options.dataDir === undefined
        ? 'required: name=peerURL[,name=peerURL...]'
        : `required: ${clusterFilePath(options.dataDir)} does not exist yet, so give name=peerURL[,name=peerURL...]`,
    );
  }
  if (fromFile !== undefined) debug('using peer URLs %o from cluster file %s', fromFile, clusterFilePath(options.dataDir!));

  const balancer = new EndpointBalancer({ failureWait: options.failureWait });
  const handler = new V2ProxyHandler({
    balancer,
    mode: options.mode,
    dialTimeout: options.dialTimeout,
    writeTimeout: options.writeTimeout,
    readTimeout: options.readTimeout,
    maxBodyBytes: options.maxBodyBytes,
  });
  const resolver = new ClusterResolver({
    peerUrls,
    refreshInterval: options.refreshInterval,
    dialTimeout: options.dialTimeout,
    startTimeout: options.startTimeout,
  });
  const proxy = new RunningProxy(resolver, balancer, handler, options.dataDir, fromFile, peerUrls);
  resolver.on('members', (snapshot) => proxy.onMembers(snapshot));
  const onAbort = (): void => void proxy.close();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    signal?.throwIfAborted();
    await resolver.start();
    await proxy.persisting;
    await proxy.listen(listen);
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
  readonly peerUrlsSource: 'cluster-file' | 'initial-cluster';
  /** Settles when the latest cluster file write is over. */
  persisting: Promise<void> = Promise.resolve();
  private written: readonly string[] | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    readonly resolver: ClusterResolver,
    readonly balancer: EndpointBalancer,
    readonly handler: V2ProxyHandler,
    private readonly dataDir: string | undefined,
    fileContents: readonly string[] | undefined,
    readonly bootstrapPeerUrls: readonly string[],
  ) {
    super();
    this.peerUrlsSource = fileContents === undefined ? 'initial-cluster' : 'cluster-file';
    this.clusterFile = dataDir === undefined ? undefined : clusterFilePath(dataDir);
    this.written = fileContents === undefined ? undefined : [...fileContents].sort();
  }

  onMembers(snapshot: ClusterSnapshot): void {
    this.balancer.setEndpoints(snapshot.clientUrls);
    const peers = snapshot.peerUrls;
    if (this.dataDir === undefined || peers.length === 0 || this.closing !== undefined) return;
    if (this.written !== undefined && this.written.length === peers.length && this.written.every((u, i) => u === peers[i])) return;
    this.written = peers;
    const dataDir = this.dataDir;
    this.persisting = this.persisting.then(() =>
      writeClusterFile(dataDir, peers).then(
        () => {
          debug('wrote %o to %s', peers, this.clusterFile);
          this.emit('clusterFileWritten', this.clusterFile!, peers);
        },
        (err: Error) => {
          this.written = undefined;
          debug('writing %s failed: %s', this.clusterFile, err.message);
          this.emit('clusterFileError', err);
        },
      ),
    );
  }

  async listen(urls: readonly URL[]): Promise<void> {
    for (const u of urls) {
      const server = createServer(this.handler.handle);
      refuseV3Clients(server);
      this.servers.push(server);
      const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err) => reject(new InvalidOptionError('listenClientUrls', `cannot listen on ${u.origin}: ${err.message}`)));
        server.listen(u.port === '' ? 80 : Number(u.port), host, () => resolve());
      });
      const port = (server.address() as AddressInfo).port;
      const shownHost = host.includes(':') ? `[${host}]` : host;
      this.addresses.push({ url: `http://${shownHost}:${port}`, host, port });
    }
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.resolver.close();
      const closed = this.servers.map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve())));
      this.handler.close();
      for (const s of this.servers) s.closeAllConnections();
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
    throw new InvalidOptionError('listenClientUrls', `expected a non-empty array of http://host:port URLs, got ${describe(urls)}`);
  }
  return urls.map((raw: unknown, i) => {
    const name = `listenClientUrls[${i}]`;
    let u: URL;
    try {
      u = new URL(String(raw));
    } catch {
      throw new InvalidOptionError(name, `${describe(raw)} is not a URL`);
    }
    if (u.protocol === 'https:') throw new InvalidOptionError(name, `${describe(raw)}: https listeners are not supported yet; use http://`);
    if (u.protocol !== 'http:') throw new InvalidOptionError(name, `${describe(raw)} must use http://`);
    if (u.port === '' && !/:\d+\/?$/.test(String(raw))) throw new InvalidOptionError(name, `${describe(raw)} must give a port (host:port)`);
    if (u.pathname !== '/' || u.search !== '') throw new InvalidOptionError(name, `${describe(raw)} must not have a path or query`);
    return u;
  });
}
