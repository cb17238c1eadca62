/**
 * Changing the TTL of a directory with more than about 124 levels below it
 * cannot fit etcd's transaction limit (its last transaction compares each
 * level). The store sent an empty "step" transaction instead, again and
 * again, some 50 a second for about three minutes, then answered 300 and
 * revoked the new lease. It now answers 300 at once, naming the limit, and
 * writes nothing. Found in review.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EndpointBalancer } from '../../src/balancer/endpoint-balancer.js';
import { V2Error } from '../../src/v3-backend/v2-error.js';
import { V3Client } from '../../src/v3-backend/v3-client.js';
import { V3Store } from '../../src/v3-backend/v3-store.js';
import { cleanup, member, onCleanup, skipWithoutEtcd } from './harness.js';
import type { LocalEtcd } from './harness.js';

describe('v3 mode: the TTL of a very deep directory', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  before(async () => {
    m = await member({ enableV2: false });
  });
  after(cleanup);

  test('a clear 300 at once, nothing written, the subtree kept', { timeout: 30000 }, async () => {
    const balancer = new EndpointBalancer({ endpoints: [m.clientUrl], leaderWrites: false });
    const client = new V3Client({ balancer });
    const store = new V3Store({ client, prefix: '/deep' });
    onCleanup(() => {
      store.close();
      client.close();
      balancer.close();
    });
    const path = (depth: number): string => `/d/${Array.from({ length: depth }, (_, i) => String(i)).join('/')}`;
    // One PUT makes at most about 120 missing directories: three of them.
    await store.put(`${path(60)}/a`, { value: 'a' });
    await store.put(`${path(120)}/b`, { value: 'b' });
    const leaf = await store.put(`${path(130)}/f`, { value: 'f' });
    const before = (await store.currentIndex({ quorum: true })).index;
    await assert.rejects(
      store.put('/d', { dir: true, prevExist: true, ttl: 1000 }),
      (err: unknown) => err instanceof V2Error && err.errorCode === 300 && /levels below it cannot have its TTL changed/.test(err.cause ?? ''),
    );
    assert.equal((await store.currentIndex({ quorum: true })).index, before, 'no write');
    const f = await store.get(`${path(130)}/f`);
    assert.equal(f.node.value, 'f');
    assert.equal(f.node.ttl, undefined);
    assert.equal(f.node.modifiedIndex, leaf.node.modifiedIndex);
    assert.equal((await store.get('/d')).node.ttl, undefined);
  });
});
