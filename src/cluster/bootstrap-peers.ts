import type { LookupFunction } from 'node:net';
import createDebug from 'debug';
import { clusterFilePath, readClusterFile } from './cluster-file.js';
import { discoverCluster, parseDiscoveryProxy, parseDiscoveryUrl } from './discovery.js';
import type { DiscoveryProgress, DiscoveryRetry } from './discovery.js';
import { InvalidOptionError } from '../errors.js';
import { initialClusterPeerUrls } from './initial-cluster.js';
import { createDnsLookup, discoverSrv, dnsResolver, parseSrvDomain, parseSrvName } from './srv-discovery.js';
import { describe, durationOption } from '../validate-options.js';

/**
 * Where a proxy's first peer URLs come from, in etcd's order of precedence:
 * a cluster file in the data dir wins over everything; otherwise exactly one
 * of `initialCluster`, `discovery` and `discoverySrv`.
 */

const debug = createDebug('etcd-v2-proxy:bootstrap');

/** Where the first peer URLs came from. @public */
export type PeerUrlsSource = 'cluster-file' | 'initial-cluster' | 'discovery' | 'discovery-srv';

/** The bootstrap options of `createProxy`, as given. */
export interface BootstrapOptions {
  initialCluster?: string | undefined;
  discovery?: string | undefined;
  discoveryProxy?: string | undefined;
  discoverySrv?: string | undefined;
  discoverySrvName?: string | undefined;
  dnsServers?: readonly string[] | undefined;
  discoveryTimeout?: number | undefined;
  dialTimeout?: number | undefined;
}

/** The bootstrap options, checked. */
export interface BootstrapPlan {
  readonly initialPeers: string[] | undefined;
  readonly discovery: string | undefined;
  readonly discoveryProxy: string | undefined;
  readonly discoverySrv: string | undefined;
  readonly discoverySrvName: string | undefined;
  readonly dnsServers: readonly string[] | undefined;
  readonly discoveryTimeout: number;
  readonly dialTimeout: number | undefined;
  /** Resolves peer host names through `dnsServers`, when given. */
  readonly lookup: LookupFunction | undefined;
}

export interface BootstrapHooks {
  signal?: AbortSignal | undefined;
  onWarning(message: string): void;
  onDiscoveryRetry(retry: DiscoveryRetry): void;
  onDiscoveryWaiting(progress: DiscoveryProgress): void;
}

export interface BootstrapResult {
  peerUrls: string[];
  source: PeerUrlsSource;
  /** The cluster file's contents when it was used. */
  fromFile: string[] | undefined;
}

const BOOTSTRAP_OPTIONS = ['initialCluster', 'discovery', 'discoverySrv'] as const;

/**
 * Checks the bootstrap options eagerly, before any I/O. Two of
 * `initialCluster`, `discovery` and `discoverySrv` at once is an error
 * naming both (etcd: "multiple discovery or bootstrap flags are set"),
 * whether or not a cluster file exists, so that a mistake does not wait for
 * the day the file is gone.
 */
export function planBootstrap(options: BootstrapOptions): BootstrapPlan {
  const given = BOOTSTRAP_OPTIONS.filter((name) => options[name] !== undefined);
  if (given.length > 1) {
    throw new InvalidOptionError(
      given[1]!,
      `${given.join(' and ')} are both given: give exactly one of initialCluster, discovery or discoverySrv (etcd: multiple discovery or bootstrap flags are set)`,
    );
  }
  // Validate initialCluster even when a cluster file will win: a typo should not wait for the day the file is gone.
  const initialPeers = options.initialCluster === undefined ? undefined : initialClusterPeerUrls(options.initialCluster);
  const discovery = options.discovery === undefined ? undefined : parseDiscoveryUrl(options.discovery, 'discovery');
  if (options.discoveryProxy !== undefined && discovery === undefined) {
    throw new InvalidOptionError('discoveryProxy', `${describe(options.discoveryProxy)} is given without discovery: it only carries discovery traffic`);
  }
  if (options.discoveryProxy !== undefined) parseDiscoveryProxy(options.discoveryProxy, 'discoveryProxy');
  const discoverySrv = options.discoverySrv === undefined ? undefined : parseSrvDomain(options.discoverySrv, 'discoverySrv');
  const discoverySrvName = parseSrvName(options.discoverySrvName, 'discoverySrvName');
  if (discoverySrvName !== undefined && discoverySrv === undefined) {
    throw new InvalidOptionError('discoverySrvName', `${describe(discoverySrvName)} is given without discoverySrv: it is the SRV service suffix`);
  }
  const dnsServers = options.dnsServers;
  if (dnsServers !== undefined) dnsResolver(dnsServers, 5000, 'dnsServers');
  return {
    initialPeers,
    discovery,
    discoveryProxy: options.discoveryProxy,
    discoverySrv,
    discoverySrvName,
    dnsServers,
    discoveryTimeout: durationOption('discoveryTimeout', options.discoveryTimeout, 300000, 0),
    dialTimeout: options.dialTimeout,
    lookup: dnsServers === undefined ? undefined : createDnsLookup(dnsServers),
  };
}

/**
 * The first peer URLs: the data dir's cluster file when there is one (with
 * one warning when discovery or SRV options are therefore ignored), else
 * the one bootstrap option given.
 */
export async function bootstrapPeers(plan: BootstrapPlan, dataDir: string | undefined, hooks: BootstrapHooks): Promise<BootstrapResult> {
  const fromFile = dataDir === undefined ? undefined : await readClusterFile(dataDir);
  if (fromFile !== undefined) {
    const file = clusterFilePath(dataDir!);
    debug('using peer URLs %o from cluster file %s', fromFile, file);
    const ignored = plan.discovery !== undefined ? 'discovery' : plan.discoverySrv !== undefined ? 'discoverySrv' : undefined;
    if (ignored !== undefined) {
      const what = ignored === 'discovery' ? `discovery URL ${plan.discovery}` : `DNS SRV discovery of ${plan.discoverySrv}`;
      hooks.onWarning(`${what} ignored since the proxy has already been initialized: using the cluster file ${file}`);
    }
    return { peerUrls: fromFile, source: 'cluster-file', fromFile };
  }
  if (plan.discovery !== undefined) {
    const found = await discoverCluster({
      url: plan.discovery,
      proxy: plan.discoveryProxy,
      timeout: plan.discoveryTimeout,
      dialTimeout: plan.dialTimeout,
      signal: hooks.signal,
      onRetry: (retry) => hooks.onDiscoveryRetry(retry),
      onWaiting: (progress) => hooks.onDiscoveryWaiting(progress),
    });
    debug('discovery %s gave %s', plan.discovery, found.initialCluster);
    return { peerUrls: [...found.peerUrls], source: 'discovery', fromFile };
  }
  if (plan.discoverySrv !== undefined) {
    const found = await discoverSrv({
      domain: plan.discoverySrv,
      serviceName: plan.discoverySrvName,
      dnsServers: plan.dnsServers,
      signal: hooks.signal,
    });
    debug('DNS SRV of %s gave %s', plan.discoverySrv, found.initialCluster);
    return { peerUrls: [...found.peerUrls], source: 'discovery-srv', fromFile };
  }
  if (plan.initialPeers !== undefined) return { peerUrls: plan.initialPeers, source: 'initial-cluster', fromFile };
  throw new InvalidOptionError(
    'initialCluster',
    dataDir === undefined
      ? 'required: name=peerURL[,name=peerURL...]'
      : `required: ${clusterFilePath(dataDir)} does not exist yet, so give name=peerURL[,name=peerURL...]`,
  );
}
