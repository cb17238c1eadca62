import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { routeOf } from '../../src/grpc-forwarding/grpc-routes.js';
import { grpcCodeName, parseGrpcStatus, percentEncode } from '../../src/grpc-forwarding/grpc-status.js';

describe('routeOf: where each etcd v3 method goes', () => {
  it('writes and the cluster administration go to the leader; they change the cluster and need a leader', () => {
    for (const path of ['/etcdserverpb.KV/Put', '/etcdserverpb.KV/DeleteRange', '/etcdserverpb.KV/Txn', '/etcdserverpb.KV/Compact', '/etcdserverpb.Lease/LeaseGrant', '/etcdserverpb.Lease/LeaseRevoke', '/etcdserverpb.Cluster/MemberAdd', '/etcdserverpb.Auth/UserAdd', '/etcdserverpb.Maintenance/Defragment']) {
      const r = routeOf(path);
      assert.equal(r.kind, 'leader', path);
      assert.equal(r.mutates, true, path);
      assert.equal(r.quorum, true, path);
    }
    assert.deepEqual(routeOf('/etcdserverpb.Cluster/MemberList'), { service: 'etcdserverpb.Cluster', method: 'MemberList', kind: 'leader', type: 'unary', mutates: false, quorum: true, movesLeader: false });
    assert.equal(routeOf('/etcdserverpb.Maintenance/Status').kind, 'leader');
    assert.equal(routeOf('/etcdserverpb.Maintenance/MoveLeader').movesLeader, true, 'the balancer looks the leader up again after it');
    assert.equal(routeOf('/etcdserverpb.Auth/Authenticate').mutates, false);
  });

  it('Range is spread like v2 reads, kept off members without a leader (it is linearizable unless asked otherwise)', () => {
    assert.deepEqual(routeOf('/etcdserverpb.KV/Range'), { service: 'etcdserverpb.KV', method: 'Range', kind: 'read', type: 'unary', mutates: false, quorum: true, movesLeader: false });
    assert.equal(routeOf('/etcdserverpb.Lease/LeaseTimeToLive').kind, 'read');
  });

  it('Watch and LeaseKeepAlive are streams: spread, and kept on their member', () => {
    assert.deepEqual(routeOf('/etcdserverpb.Watch/Watch'), { service: 'etcdserverpb.Watch', method: 'Watch', kind: 'stream', type: 'bidi_stream', mutates: false, quorum: false, movesLeader: false });
    const keepAlive = routeOf('/etcdserverpb.Lease/LeaseKeepAlive');
    assert.equal(keepAlive.kind, 'stream');
    assert.equal(keepAlive.mutates, true, 'a readonly proxy does not renew leases');
    assert.equal(routeOf('/etcdserverpb.Maintenance/Snapshot').type, 'server_stream');
  });

  it('an unknown method is sent like a write (never to a second member once sent), labelled unknown', () => {
    for (const path of ['/etcdserverpb.KV/Frobnicate', '/other.Service/Put', '', undefined]) {
      assert.deepEqual(routeOf(path), { service: 'unknown', method: 'unknown', kind: 'leader', type: 'unary', mutates: true, quorum: true, movesLeader: false });
    }
  });
});

describe('grpc-status helpers', () => {
  it('percent-encodes grpc-message as gRPC does', () => {
    assert.equal(percentEncode('plain ascii: ok'), 'plain ascii: ok');
    assert.equal(percentEncode('50% é\n'), '50%25 %C3%A9%0A');
  });

  it('reads grpc-status and names codes as go-grpc-prometheus does', () => {
    assert.equal(parseGrpcStatus('14'), 14);
    assert.equal(parseGrpcStatus(undefined), 2);
    assert.equal(parseGrpcStatus('x'), 2);
    assert.equal(grpcCodeName(0), 'OK');
    assert.equal(grpcCodeName(1), 'Canceled');
    assert.equal(grpcCodeName(14), 'Unavailable');
    assert.equal(grpcCodeName(99), 'Unknown');
  });
});
