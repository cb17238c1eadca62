// The published .d.ts uses Node's types (node:http, node:tls...): it says so itself, so that
// consumers whose `types` does not list node (TypeScript 6's default) still resolve them.
/// <reference types="node" preserve="true" />
export { ClusterResolver } from './cluster/cluster-resolver.js';
export type { ClusterMember, ClusterResolverEvents, ClusterResolverOptions, ClusterSnapshot } from './cluster/cluster-resolver.js';
export { EndpointBalancer } from './balancer/endpoint-balancer.js';
export type { EndpointBalancerEvents, EndpointBalancerOptions, LeaderLookup, ReadmissionInfo } from './balancer/endpoint-balancer.js';
export { Endpoint } from './balancer/endpoint.js';
export type { EndpointState } from './balancer/endpoint.js';
export type { BalancerStrategy, PickContext, StrategyName } from './balancer/balancer-strategy.js';
export { PROXY_READY_PATH, V2ProxyHandler } from './handler/v2-proxy-handler.js';
export type { MembershipView, ProxyMode, ProxyReadiness, V2ProxyHandlerOptions } from './handler/v2-proxy-handler.js';
export { METRICS_PATH, ProxyMetrics } from './metrics/proxy-metrics.js';
export type { ProxyingError, ProxyMetricsOptions } from './metrics/proxy-metrics.js';
export type { UpstreamTlsOptions } from './tls-options.js';
export type {
  ClientAbortedEvent,
  DropReason,
  DroppedEvent,
  ForwardedEvent,
  HedgedEvent,
  HedgeOutcome,
  RetriedEvent,
  V2ProxyHandlerEvents,
} from './handler/proxy-events.js';
export { createProxy } from './create-proxy.js';
export type { CreateProxyOptions, EtcdV2Proxy, EtcdV2ProxyEvents, ProxyAddress, TlsClientErrorEvent } from './create-proxy.js';
export { clusterFilePath, readClusterFile, writeClusterFile } from './cluster/cluster-file.js';
export { parseInitialCluster } from './cluster/initial-cluster.js';
export { discoverCluster } from './cluster/discovery.js';
export type { DiscoveredCluster, DiscoveryOptions, DiscoveryProgress, DiscoveryRetry } from './cluster/discovery.js';
export { createDnsLookup, discoverSrv, srvServiceNames } from './cluster/srv-discovery.js';
export type { SrvCluster, SrvDiscoveryOptions, SrvPeer } from './cluster/srv-discovery.js';
export type { PeerUrlsSource } from './cluster/bootstrap-peers.js';
export { DEFAULT_V3_PREFIX, V3Backend } from './v3-backend/v3-backend.js';
export type { V3BackendOptions } from './v3-backend/v3-backend.js';
export { V2Error } from './v3-backend/v2-error.js';
export type { V2ErrorJson } from './v3-backend/v2-error.js';
export { V3RpcError } from './v3-backend/v3-client.js';
export { refuseV3Clients, V3_REFUSAL_MESSAGE } from './transport/v3-client-refusal.js';
export { GrpcForwarder } from './grpc-forwarding/grpc-forwarder.js';
export type { GrpcForwarderOptions } from './grpc-forwarding/grpc-forwarder.js';
export type {
  GrpcClientAbortedEvent,
  GrpcDropReason,
  GrpcDroppedEvent,
  GrpcFinishedEvent,
  GrpcForwardedEvent,
  GrpcForwarderEvents,
  GrpcRetriedEvent,
} from './grpc-forwarding/grpc-events.js';
export {
  ClusterFileError,
  ClusterUnreachableError,
  DiscoveryError,
  EtcdProxyError,
  InitialClusterError,
  InvalidOptionError,
  ListenError,
  MemberDataDirError,
  SrvDiscoveryError,
  UpstreamError,
  V2DisabledError,
  V3BackendStartError,
} from './errors.js';
export type { DiscoveryErrorReason } from './errors.js';
