export { ClusterResolver } from './cluster-resolver.js';
export type { ClusterMember, ClusterResolverEvents, ClusterResolverOptions, ClusterSnapshot } from './cluster-resolver.js';
export { EndpointBalancer } from './endpoint-balancer.js';
export type { EndpointBalancerEvents, EndpointBalancerOptions, ReadmissionInfo } from './endpoint-balancer.js';
export { Endpoint } from './endpoint.js';
export type { EndpointState } from './endpoint.js';
export type { BalancerStrategy, PickContext, StrategyName } from './balancer-strategy.js';
export { PROXY_READY_PATH, V2ProxyHandler } from './v2-proxy-handler.js';
export type { MembershipView, ProxyMode, ProxyReadiness, V2ProxyHandlerOptions } from './v2-proxy-handler.js';
export { METRICS_PATH, ProxyMetrics } from './proxy-metrics.js';
export type { ProxyingError, ProxyMetricsOptions } from './proxy-metrics.js';
export type { UpstreamTlsOptions } from './tls-options.js';
export type {
  ClientAbortedEvent,
  DropReason,
  DroppedEvent,
  ForwardedEvent,
  RetriedEvent,
  V2ProxyHandlerEvents,
} from './proxy-events.js';
export { createProxy } from './create-proxy.js';
export type { CreateProxyOptions, EtcdV2Proxy, EtcdV2ProxyEvents, ProxyAddress, TlsClientErrorEvent } from './create-proxy.js';
export { clusterFilePath, readClusterFile, writeClusterFile } from './cluster-file.js';
export { parseInitialCluster } from './initial-cluster.js';
export { discoverCluster } from './discovery.js';
export type { DiscoveredCluster, DiscoveryOptions, DiscoveryProgress, DiscoveryRetry } from './discovery.js';
export { createDnsLookup, discoverSrv, srvServiceNames } from './srv-discovery.js';
export type { SrvCluster, SrvDiscoveryOptions, SrvPeer } from './srv-discovery.js';
export type { PeerUrlsSource } from './bootstrap-peers.js';
export { refuseV3Clients, V3_REFUSAL_MESSAGE } from './v3-client-refusal.js';
export {
  ClusterFileError,
  ClusterUnreachableError,
  DiscoveryError,
  EtcdProxyError,
  InitialClusterError,
  InvalidOptionError,
  MemberDataDirError,
  SrvDiscoveryError,
  UpstreamError,
} from './errors.js';
export type { DiscoveryErrorReason } from './errors.js';
