/**
 * A v2 write with a TTL whose transaction was applied but whose answer was
 * lost (a deadline, a connection cut after the request left) made the store
 * revoke the write's fresh lease, "not used": which deleted the node just
 * written, and the value it replaced with it. Native v2 never deletes on a
 * failed write. The lease is now revoked only once it holds no key. Found in
 * review.
 *
 * A real member applies the write; only the loss of its answer is made up
 * (the client's txn() throws DEADLINE_EXCEEDED after the member answered):
 * a real member cannot be made to lose one answer on demand.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { EndpointBalancer } from '../../src/balancer/endpoint-balancer.js';
import type { TxnRequest } from '../../src/v3-backend/rpc-types.js';
import { V3Client, V3RpcError } from '../../src/v3-backend/v3-client.js';
import type { CallOptions } from '../../src/v3-backend/v3-client.js';
import { V3Store } from '../../src/v3-backend/v3-store.js';
import { cleanup, eventually, member, onCleanup, skipWithoutEtcd } from './harness.js';
import type { LocalEtcd } from './harness.js';

describe('v3 mode: a write whose answer is lost', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  before(async () => {
    m = await member({ enableV2: false });
  });
  after(cleanup);

  /** A store whose client loses the answer of the next write transaction once `loseNext` is set, and records its lease calls. */
  function setUp(): { store: V3Store; client: V3Client; loseNext: () => void; granted: number[]; settled: Map<number, 'revoked' | 'checked'> } {
    const balancer = new EndpointBalancer({ endpoints: [m.clientUrl], leaderWrites: false });
    const client = new V3Client({ balancer });
    const store = new V3Store({ client, prefix: `/lost${Math.random().toString(36).slice(2, 8)}` });
    onCleanup(() => {
      store.close();
      client.close();
      balancer.close();
    });
    let lose = false;
    const granted: number[] = [];
    const settled = new Map<number, 'revoked' | 'checked'>();
    const txn = client.txn.bind(client);
    client.txn = async (req: TxnRequest, opts?: CallOptions) => {
      const resp = await txn(req, opts);
      if (lose && req.success.some((op) => op.requestPut !== undefined)) {
        lose = false;
        throw new V3RpcError('Txn', status.DEADLINE_EXCEEDED, 'Deadline exceeded', m.clientUrl);
      }
      return resp;
    };
    const grant = client.leaseGrant.bind(client);
    client.leaseGrant = async (ttl, id, opts) => {
      const r = await grant(ttl, id, opts);
      granted.push(id);
      return r;
    };
    const revoke = client.leaseRevoke.bind(client);
    client.leaseRevoke = async (id, opts) => {
      await revoke(id, opts).finally(() => settled.set(id, 'revoked'));
    };
    const timeToLive = client.leaseTimeToLive.bind(client);
    client.leaseTimeToLive = async (id, opts) => {
      try {
        return await timeToLive(id, opts);
      } finally {
        if (!settled.has(id)) settled.set(id, 'checked');
      }
    };
    return { store, client, loseNext: () => (lose = true), granted, settled };
  }

  test('the node written stays, with its TTL', async () => {
    const { store, loseNext, granted, settled } = setUp();
    await store.put('/f', { value: 'old' });
    loseNext();
    await assert.rejects(store.put('/f', { value: 'new', ttl: 1000 }), (err: unknown) => err instanceof V3RpcError && err.grpcCode === status.DEADLINE_EXCEEDED);
    assert.equal(granted.length, 1);
    const lease = granted[0]!;
    // The store deals with the lease in the background: wait until it has.
    await eventually(() => settled.has(lease), 5000, 'the store to check or revoke the lease');
    assert.equal(settled.get(lease), 'checked', 'looked at, not revoked: a key holds it');
    const got = await store.get('/f');
    assert.equal(got.node.value, 'new');
    assert.ok(got.node.ttl !== undefined && got.node.ttl > 990, `ttl ${got.node.ttl}`);
  });

  test('a write refused by the cluster still gives its lease back at once', async () => {
    const { store, client, granted, settled } = setUp();
    await store.put('/g', { value: 'there' });
    await assert.rejects(store.put('/g', { value: 'x', ttl: 1000, prevExist: false }), (err: unknown) => (err as { errorCode?: number }).errorCode === 105);
    const lease = granted[0]!;
    await eventually(() => settled.get(lease) === 'revoked', 5000, 'the unused lease to be revoked');
    assert.equal((await client.leaseTimeToLive(lease)).TTL, -1, 'gone from the cluster');
  });
});
