/**
 * A v3 call whose client gives up while the proxy is still making its
 * connection to the member (a TLS member that does not answer the
 * handshake yet) no longer counts as a call on that connection once the
 * connection is made: the connection goes idle and is closed after
 * idleTimeout. It used to stay counted forever: the connection was never
 * idle, a member taken off the list kept it, and keepalive PINGs went on
 * with no call open (etcd answers those with GOAWAY ENHANCE_YOUR_CALM,
 * which marks the member down). Found in review.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { connectionsTo } from '../../bench/procfs.js';
import { EndpointBalancer, GrpcForwarder } from '../../src/index.js';
import type { GrpcFinishedEvent } from '../../src/index.js';
import { cleanup, eventually, freeze, onCleanup, skipWithoutEtcd } from './harness.js';
import type { LocalEtcd } from './harness.js';
import { etcdGrpc, serveForwarder, tlsMember, unary } from './grpc-client.js';
import type { TlsFixture } from './tls-certs.js';

describe('gRPC forwarding: a call cancelled while its connection to the member is being made', { skip: skipWithoutEtcd }, () => {
  let certs: TlsFixture;
  let m: LocalEtcd;

  before(async () => {
    ({ certs, m } = await tlsMember('etcd-v2-proxy-grpc-dial-'));
  });
  after(cleanup);

  it('does not keep the connection once made: it goes idle and is closed', async () => {
    const balancer = new EndpointBalancer({ endpoints: [m.clientUrl] });
    onCleanup(() => balancer.close());
    // Longer than the call lives: the connection is not closed as idle while the call is still waiting for it.
    const idleTimeout = 1500;
    const fwd = new GrpcForwarder({
      balancer,
      dialTimeout: 30000,
      idleTimeout,
      tls: { trustedCaFile: certs.ca, certFile: certs.client.cert, keyFile: certs.client.key },
    });
    onCleanup(() => fwd.close());
    const finished: GrpcFinishedEvent[] = [];
    fwd.on('finished', (e) => finished.push(e));
    const g = etcdGrpc(await serveForwarder(fwd));
    onCleanup(() => g.close());
    const memberPort = Number(new URL(m.clientUrl).port);

    // Stopped, the member's kernel still accepts the TCP connection, but nothing answers the TLS handshake.
    let stopped = true;
    onCleanup(() => stopped && m.signal('SIGCONT'));
    await freeze(m);
    const outcome = await unary(g.kv, 'Range', { key: Buffer.from('k') }, { deadlineMs: 300 });
    assert.equal(outcome.ok, false);
    if (!outcome.ok) assert.equal(outcome.error.code, grpc.status.DEADLINE_EXCEEDED, outcome.error.message);
    await eventually(() => finished.length === 1, 5000, 'the proxy to end the cancelled call');
    assert.equal(finished[0]!.grpcStatus, grpc.status.CANCELLED);
    // (The balancer's own look-up of the leader, over HTTP/1.1, may be waiting on the member too.)
    assert.ok(connectionsTo(process.pid, [memberPort]) >= 1, 'the connection to the member is still being made');

    m.signal('SIGCONT');
    stopped = false;
    // Made now, with no call on it: closed after idleTimeout (it stayed open before the fix).
    await eventually(() => connectionsTo(process.pid, [memberPort]) === 0, 10000, 'the idle connection to the member to be closed');
    // And a new call still gets through, on a new connection.
    assert.ok((await unary(g.kv, 'Range', { key: Buffer.from('k') })).ok);
  });
});
