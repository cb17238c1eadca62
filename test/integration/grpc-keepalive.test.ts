/**
 * A member that stops answering but keeps its TCP connection open (cut off
 * by the network, or stopped: SIGSTOP here) is found out by the gRPC
 * forwarder's HTTP/2 PINGs: the calls on it end with UNAVAILABLE, so that
 * their clients call again, and the balancer marks it down. Before, a watch
 * forwarded to such a member waited forever (a watch has no deadline).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { EndpointBalancer, GrpcForwarder } from '../../src/index.js';
import type { GrpcDroppedEvent } from '../../src/index.js';
import { cleanup, eventually, freeze, http, member, onCleanup, skipWithoutEtcd } from './harness.js';
import type { LocalEtcd } from './harness.js';
import { etcdGrpc, serveForwarder, unary } from './grpc-client.js';

const KEEPALIVE_TIME = 1000;
// Generous: a PING's answer read late by a starved test process must not count as none.
const KEEPALIVE_TIMEOUT = 2000;

type WatchResponse = { created: boolean; events: Array<{ kv: { value: Buffer } }> };

describe('gRPC forwarding: HTTP/2 keepalive to the members', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;

  before(async () => {
    // etcd closes the connection of a client that pings more often than --grpc-keepalive-min-time (5 s by default).
    m = await member({ extraArgs: ['--grpc-keepalive-min-time=500ms'] });
  });
  after(cleanup);

  /** A forwarder in front of the member, on a node:http2 server of its own. */
  async function forwarder(): Promise<{ balancer: EndpointBalancer; url: string; dropped: GrpcDroppedEvent[] }> {
    const balancer = new EndpointBalancer({ endpoints: [m.clientUrl], failureWait: 60000 });
    onCleanup(() => balancer.close());
    const fwd = new GrpcForwarder({ balancer, keepaliveTime: KEEPALIVE_TIME, keepaliveTimeout: KEEPALIVE_TIMEOUT });
    onCleanup(() => fwd.close());
    const dropped: GrpcDroppedEvent[] = [];
    fwd.on('dropped', (e) => dropped.push(e));
    return { balancer, url: await serveForwarder(fwd), dropped };
  }

  /** A watch of `prefix` through `url`, once the member created it: the values it sees, and how it ended. */
  async function watch(url: string, prefix: string): Promise<{ values: string[]; ended: () => grpc.ServiceError | undefined }> {
    const g = etcdGrpc(url);
    onCleanup(() => g.close());
    const call = (g.watch.Watch as () => grpc.ClientDuplexStream<object, WatchResponse>)();
    const values: string[] = [];
    let ended: grpc.ServiceError | undefined;
    call.on('error', (err: grpc.ServiceError) => (ended = err));
    let created = false;
    call.on('data', (res: WatchResponse) => (res.created ? (created = true) : values.push(...res.events.map((e) => e.kv.value.toString()))));
    call.write({ create_request: { key: Buffer.from(prefix), range_end: Buffer.from(prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)) } });
    await eventually(() => created, 5000, `the watch of ${prefix} to be created`);
    return { values, ended: () => ended };
  }

  /** Stops the member (resolves once every thread of it is stopped); the function returned starts it again. */
  async function stopMember(): Promise<() => Promise<void>> {
    // Clean-up runs at the suite's end: a test that fails must not leave the member stopped for the next one either.
    let stopped = true;
    const resume = async (): Promise<void> => {
      if (!stopped) return;
      stopped = false;
      m.signal('SIGCONT');
      await eventually(async () => (await http(`${m.clientUrl}/health`, { timeout: 1000 }).catch(() => undefined))?.status === 200, 10000, 'the member to be healthy after SIGCONT');
    };
    onCleanup(resume);
    await freeze(m);
    return resume;
  }

  it('an open watch on a healthy member outlives several keepalive periods, then a member that stops answering ends it with UNAVAILABLE and is marked down', async () => {
    const { balancer, url, dropped } = await forwarder();
    const w = await watch(url, 'ka/');
    const g = etcdGrpc(url);
    onCleanup(() => g.close());
    // The PINGs are answered: writes made over three keepalive periods all reach the open watch (paced, not waiting for anything).
    const writes = Math.ceil((3 * KEEPALIVE_TIME) / 250);
    for (let i = 0; i < writes; i++) {
      assert.ok((await unary(g.kv, 'Put', { key: Buffer.from(`ka/${i}`), value: Buffer.from(String(i)) })).ok);
      await eventually(() => w.values.length === i + 1, 5000, `the watch to see write ${i}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(w.ended(), undefined, 'the watch is still open');
    const resume = await stopMember();
    const stoppedAt = Date.now();
    await eventually(() => w.ended() !== undefined, 15000, 'the watch on the stopped member to end');
    const waited = Date.now() - stoppedAt;
    assert.equal(w.ended()!.code, grpc.status.UNAVAILABLE, w.ended()!.message);
    assert.ok(dropped.some((e) => e.method === '/etcdserverpb.Watch/Watch' && e.reason === 'member-lost'));
    assert.equal(balancer.endpoints[0]!.state, 'down', 'the balancer marked it down, for v2 too');
    process.stdout.write(`watch ended ${waited} ms after SIGSTOP (keepaliveTime ${KEEPALIVE_TIME}, keepaliveTimeout ${KEEPALIVE_TIMEOUT})\n`);
    assert.deepEqual(w.values, Array.from({ length: writes }, (_, i) => String(i)));
    await resume();
  });

  it('a member taken off the endpoint list keeps its open watch, and is still watched: when it stops answering, the watch ends with UNAVAILABLE', async () => {
    const { balancer, url } = await forwarder();
    const w = await watch(url, 'off/');
    // The member leaves the list (as when a refresh no longer lists it): its connection closes once its calls are over.
    balancer.setEndpoints(['http://127.0.0.1:1']);
    const direct = etcdGrpc(m.clientUrl);
    onCleanup(() => direct.close());
    assert.ok((await unary(direct.kv, 'Put', { key: Buffer.from('off/1'), value: Buffer.from('still open') })).ok);
    await eventually(() => w.values.length === 1, 5000, 'the watch to see the write');
    const resume = await stopMember();
    await eventually(() => w.ended() !== undefined, 15000, 'the watch on the stopped member to end');
    assert.equal(w.ended()!.code, grpc.status.UNAVAILABLE, w.ended()!.message);
    assert.deepEqual(w.values, ['still open']);
    await resume();
  });
});
