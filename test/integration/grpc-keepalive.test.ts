/**
 * A member that stops answering but keeps its TCP connection open (cut off
 * by the network, or stopped: SIGSTOP here) is found out by the gRPC
 * forwarder's HTTP/2 PINGs: the calls on it end with UNAVAILABLE, so that
 * their clients call again, and the balancer marks it down. Before, a watch
 * forwarded to such a member waited forever (a watch has no deadline).
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http2';
import type { ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { EndpointBalancer, GrpcForwarder } from '../../src/index.js';
import type { GrpcDroppedEvent } from '../../src/index.js';
import { cleanup, eventually, freeze, member, onCleanup, skipWithoutEtcd } from './harness.js';
import type { LocalEtcd } from './harness.js';
import { etcdGrpc, unary } from './grpc-client.js';

const KEEPALIVE_TIME = 1000;
const KEEPALIVE_TIMEOUT = 1000;

describe('gRPC forwarding: HTTP/2 keepalive to the members', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  let balancer: EndpointBalancer;
  let fwd: GrpcForwarder;
  let url: string;
  const dropped: GrpcDroppedEvent[] = [];

  before(async () => {
    // etcd closes the connection of a client that pings more often than --grpc-keepalive-min-time (5 s by default).
    m = await member({ extraArgs: ['--grpc-keepalive-min-time=500ms'] });
    balancer = new EndpointBalancer({ endpoints: [m.clientUrl], failureWait: 60000 });
    onCleanup(() => balancer.close());
    fwd = new GrpcForwarder({ balancer, keepaliveTime: KEEPALIVE_TIME, keepaliveTimeout: KEEPALIVE_TIMEOUT });
    onCleanup(() => fwd.close());
    fwd.on('dropped', (e) => dropped.push(e));
    const server = createServer();
    server.on('stream', fwd.handle);
    const sessions = new Set<ServerHttp2Session>();
    server.on('session', (s) => sessions.add(s));
    onCleanup(() => new Promise<void>((resolve) => {
      for (const s of sessions) s.destroy();
      server.close(() => resolve());
    }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(cleanup);

  it('an open watch on a healthy member outlives several keepalive periods, then a member that stops answering ends it with UNAVAILABLE and is marked down', async () => {
    const g = etcdGrpc(url);
    onCleanup(() => g.close());
    type WatchResponse = { created: boolean; events: Array<{ kv: { value: Buffer } }> };
    const call = (g.watch.Watch as () => grpc.ClientDuplexStream<object, WatchResponse>)();
    const values: string[] = [];
    let ended: grpc.ServiceError | undefined;
    call.on('error', (err: grpc.ServiceError) => (ended = err));
    const created = new Promise<void>((resolve) => call.on('data', (res: WatchResponse) => (res.created ? resolve() : values.push(...res.events.map((e) => e.kv.value.toString())))));
    call.write({ create_request: { key: Buffer.from('ka/'), range_end: Buffer.from('ka0') } });
    await created;
    // The PINGs are answered: writes made over three keepalive periods all reach the open watch.
    const writes = Math.ceil((3 * KEEPALIVE_TIME) / 250);
    for (let i = 0; i < writes; i++) {
      assert.ok((await unary(g.kv, 'Put', { key: Buffer.from(`ka/${i}`), value: Buffer.from(String(i)) })).ok);
      await eventually(() => values.length === i + 1, 5000, `the watch to see write ${i}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(ended, undefined, 'the watch is still open');
    await freeze(m);
    onCleanup(() => m.signal('SIGCONT'));
    const frozenAt = Date.now();
    await eventually(() => ended !== undefined, 10000, 'the watch on the stopped member to end');
    const waited = Date.now() - frozenAt;
    assert.equal(ended!.code, grpc.status.UNAVAILABLE, ended!.message);
    assert.ok(dropped.some((e) => e.method === '/etcdserverpb.Watch/Watch' && e.reason === 'member-lost'));
    assert.equal(balancer.endpoints[0]!.state, 'down', 'the balancer marked it down, for v2 too');
    process.stdout.write(`watch ended ${waited} ms after SIGSTOP (keepaliveTime ${KEEPALIVE_TIME}, keepaliveTimeout ${KEEPALIVE_TIMEOUT})\n`);
    assert.deepEqual(values, Array.from({ length: writes }, (_, i) => String(i)));
  });
});
