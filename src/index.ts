export { ClusterResolver } from './cluster-resolver.js';
export type { ClusterMember, ClusterResolverEvents, ClusterResolverOptions, ClusterSnapshot } from './cluster-resolver.js';
export { EndpointBalancer, Endpoint } from './endpoint-balancer.js';
export type { EndpointBalancerEvents, EndpointBalancerOptions } from './endpoint-balancer.js';
export { V2ProxyHandler } from './v2-proxy-handler.js';
export type { ProxyMode, V2ProxyHandlerOptions } from './v2-proxy-handler.js';
export { createProxy } from './create-proxy.js';
export type { CreateProxyOptions, EtcdV2Proxy, EtcdV2ProxyEvents, ProxyAddress } from './create-proxy.js';
export { clusterFilePath, readClusterFile, writeClusterFile } from './cluster-file.js';
export { parseInitialCluster } from './initial-cluster.js';
export { refuseV3Clients, V3_REFUSAL_MESSAGE } from './v3-client-refusal.js';
export {
  ClusterFileError,
  ClusterUnreachableError,
  EtcdProxyError,
  InitialClusterError,
  InvalidOptionError,
  MemberDataDirError,
  UpstreamError,
} from './errors.js';
