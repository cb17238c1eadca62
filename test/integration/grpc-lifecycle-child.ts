/**
 * Child process for grpc-forwarding.test.ts's lifecycle test. It never calls
 * process.exit(): the test checks that it exits by itself once the proxy
 * and the client are closed, which proves that nothing of the gRPC
 * forwarding (the members' HTTP/2 connections, the clients' sessions,
 * timers) is left holding the event loop.
 *
 * Usage: node --import tsx test/integration/grpc-lifecycle-child.ts '<json {initialCluster}>'
 * Prints one JSON line per step: {"event": "watching"}, then, once its
 * stdin ends and the proxy is closed, {"event": "closed", closeMs, watchCode}.
 */
import { createProxy } from '../../src/index.js';
import { etcdGrpc, unary } from './grpc-client.js';
import type { grpc } from './grpc-client.js';

const { initialCluster } = JSON.parse(process.argv[2] ?? '{}') as { initialCluster: string };
const say = (event: string, data: Record<string, unknown> = {}): void => void process.stdout.write(`${JSON.stringify({ event, ...data })}\n`);

const proxy = await createProxy({ listenClientUrls: ['http://127.0.0.1:0'], initialCluster, refreshInterval: 200, shutdownTimeout: 300 });
const g = etcdGrpc(proxy.addresses[0]!.url);
const put = await unary(g.kv, 'Put', { key: Buffer.from('lifecycle/v3'), value: Buffer.from('1') });
const get = await unary(g.kv, 'Range', { key: Buffer.from('lifecycle/v3') });
const call = (g.watch.Watch as () => grpc.ClientDuplexStream<object, { created: boolean }>)();
const ended = new Promise<number>((resolve) => call.on('error', (err: grpc.ServiceError) => resolve(err.code)));
await new Promise<void>((resolve) => {
  call.on('data', (res) => res.created && resolve());
  call.write({ create_request: { key: Buffer.from('lifecycle/v3') } });
});
say('watching', { put: put.ok, get: get.ok });
process.stdin.resume();
process.stdin.once('end', async () => {
  const t0 = Date.now();
  await proxy.close();
  const closeMs = Date.now() - t0;
  const watchCode = await ended;
  g.close();
  say('closed', { closeMs, watchCode });
});
