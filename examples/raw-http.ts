/**
 * The v2 proxy handler on a plain node:http server: what `createProxy()` does
 * for you, written out, for when you want your own server.
 *
 *   npx tsx examples/raw-http.ts --listen http://127.0.0.1:22379 \
 *       --initial-cluster myetcd1=http://127.0.0.1:12380
 *   curl -X PUT http://127.0.0.1:22379/v2/keys/foo -d value=bar
 *   curl http://127.0.0.1:22379/v2/keys/foo
 *
 * Settings (argv or environment, see example-settings.ts): --listen / LISTEN_URL,
 * --initial-cluster / ETCD_INITIAL_CLUSTER, --readonly / PROXY_MODE=readonly.
 * It prints `listening on http://host:port` once it serves, and closes on
 * SIGINT/SIGTERM.
 */
import http from 'node:http';
// In your code: from 'etcd-v2-proxy'.
import { ClusterResolver, EndpointBalancer, EtcdProxyError, refuseV3Clients, V2ProxyHandler } from '../src/index.js';
import { closeOnSignals, closeServer, fail, listen, readSettings } from './example-settings.js';

const settings = readSettings();

// The three parts: who the members are, which of them to try, and the (req, res) handler.
const balancer = new EndpointBalancer({ failureWait: 5000 });
const resolver = new ClusterResolver({ initialCluster: settings.initialCluster });
resolver.on('members', (snapshot) => balancer.setEndpoints(snapshot.clientUrls));
resolver.on('error', (err) => process.stderr.write(`membership refresh failed, keeping the last known members: ${err.message}\n`));
const handler = new V2ProxyHandler({ balancer, mode: settings.mode });

const server = http.createServer(handler.handle);
// etcd v3 (gRPC) clients get UNIMPLEMENTED at once instead of a 5-second timeout.
refuseV3Clients(server);

try {
  // Resolves once a peer listed the members (retrying for up to 15 s).
  await resolver.start();
  await listen(server, settings.listen);
} catch (err) {
  resolver.close();
  balancer.close();
  fail(1, err instanceof EtcdProxyError ? err.message : String(err));
}

closeOnSignals(async () => {
  handler.close(); // aborts upstream requests in flight, open watches included
  await closeServer(server);
  resolver.close(); // stops refreshing
  balancer.close(); // closes the connection pools
});
