/**
 * The v2 proxy as the last middleware of a Koa 3 app. A middleware before it
 * adds a header to every response and logs each request once it is over: the
 * handler composes with Koa's middleware like any other.
 *
 *   npx tsx examples/koa.ts --listen http://127.0.0.1:8080 \
 *       --initial-cluster myetcd1=http://127.0.0.1:12380
 *   curl -i -X PUT http://127.0.0.1:8080/v2/keys/foo -d value=bar   # X-Proxied-By: koa-example
 *
 * Settings (argv or environment, see example-settings.ts): --listen / LISTEN_URL,
 * --initial-cluster / ETCD_INITIAL_CLUSTER, --readonly / PROXY_MODE=readonly.
 * It prints `listening on http://host:port` once it serves, and closes on
 * SIGINT/SIGTERM.
 */
import http from 'node:http';
import Koa from 'koa';
// In your code: from 'etcd-v2-proxy'.
import { ClusterResolver, EndpointBalancer, EtcdProxyError, refuseV3Clients, V2ProxyHandler } from '../src/index.js';
import { closeOnSignals, closeServer, fail, listen, readSettings } from './example-settings.js';

const settings = readSettings();

const balancer = new EndpointBalancer({ failureWait: 5000 });
const resolver = new ClusterResolver({ initialCluster: settings.initialCluster });
resolver.on('members', (snapshot) => balancer.setEndpoints(snapshot.clientUrls));
resolver.on('error', (err) => process.stderr.write(`membership refresh failed, keeping the last known members: ${err.message}\n`));
const handler = new V2ProxyHandler({ balancer, mode: settings.mode });

const app = new Koa();

// Any Koa middleware runs before the proxy. Headers it sets are on the raw
// response already, so they reach the client along with etcd's.
app.use(async (ctx, next) => {
  const started = Date.now();
  ctx.set('X-Proxied-By', 'koa-example');
  await next();
  // Runs once the proxied response is over (see below), with its real status.
  process.stderr.write(`${ctx.method} ${ctx.url} ${ctx.res.statusCode} ${Date.now() - started}ms\n`);
});

// The proxy: tell Koa to leave the response alone, hand over the raw req/res,
// and settle once the response is over (finished or cut), so that the
// middleware above sees the end of the request. A watch stays open as long
// as etcd holds it.
app.use(async (ctx) => {
  ctx.respond = false;
  const closed = new Promise<void>((resolve) => ctx.res.once('close', resolve));
  handler.handle(ctx.req, ctx.res);
  await closed;
});

const server = http.createServer(app.callback());
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
