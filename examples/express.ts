/**
 * The v2 proxy mounted in an Express 5 app under `/etcd`, next to a route of
 * the app's own. Express strips the mount path from `req.url` before the
 * handler sees it, so `/etcd/v2/keys/foo` reaches the cluster as `/v2/keys/foo`.
 *
 *   npx tsx examples/express.ts --listen http://127.0.0.1:8080 \
 *       --initial-cluster myetcd1=http://127.0.0.1:12380
 *   curl -X PUT http://127.0.0.1:8080/etcd/v2/keys/foo -d value=bar
 *   curl http://127.0.0.1:8080/etcd/v2/keys/foo
 *   curl http://127.0.0.1:8080/healthz
 *
 * Settings (argv or environment, see example-settings.ts): --listen / LISTEN_URL,
 * --initial-cluster / ETCD_INITIAL_CLUSTER, --readonly / PROXY_MODE=readonly.
 * It prints `listening on http://host:port` once it serves, and closes on
 * SIGINT/SIGTERM.
 */
import http from 'node:http';
import express from 'express';
// In your code: from 'etcd-v2-proxy'.
import { ClusterResolver, EndpointBalancer, EtcdProxyError, refuseV3Clients, V2ProxyHandler } from '../src/index.js';
import { closeOnSignals, closeServer, fail, listen, readSettings } from './example-settings.js';

const settings = readSettings();

const balancer = new EndpointBalancer({ failureWait: 5000 });
const resolver = new ClusterResolver({ initialCluster: settings.initialCluster });
resolver.on('members', (snapshot) => balancer.setEndpoints(snapshot.clientUrls));
resolver.on('error', (err) => process.stderr.write(`membership refresh failed, keeping the last known members: ${err.message}\n`));
const handler = new V2ProxyHandler({ balancer, mode: settings.mode });

const app = express();
app.disable('x-powered-by');

// A route of the app's own.
app.get('/healthz', (_req, res) => {
  res.json({ ok: true, etcdEndpoints: balancer.available.map((e) => e.url) });
});

// The proxy under /etcd. Mount no body parser (express.json(), express.urlencoded())
// before it: the handler forwards the request body as it arrives, and a parser
// would have consumed it. The handler answers every request itself and never calls next().
app.use('/etcd', handler.handle);

const server = http.createServer(app);
refuseV3Clients(server);

try {
  await resolver.start();
  await listen(server, settings.listen);
} catch (err) {
  resolver.close();
  balancer.close();
  fail(1, err instanceof EtcdProxyError ? err.message : String(err));
}

closeOnSignals(async () => {
  handler.close();
  await closeServer(server);
  resolver.close();
  balancer.close();
});
