/**
 * Regression test for etcd-io/etcd#2895 ("Proxy Closes Body on First
 * Failure"): etcd's proxy handed the client's body to the first endpoint's
 * transport, which closed it on a connection error, so every later endpoint
 * failed with "invalid Read on closed Body" and a write was lost although a
 * healthy member was there.
 *
 * Here a write whose first endpoint refuses the connection (a real member that
 * was stopped: nothing of the request can have reached etcd) is sent to the
 * next endpoint with its whole body, and applied exactly once.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { RetriedEvent } from '../../src/index.js';
import { cleanup, cluster, form, http, proxy, skipWithoutEtcd, tempDir } from './harness.js';

describe('etcd-io/etcd#2895: the body is replayed to the next endpoint after a refused connection', { skip: skipWithoutEtcd }, () => {
  after(cleanup);

  test('PUT and POST bodies reach the next member whole; the POST creates one key', async () => {
    const members = await cluster(3);
    const [stopped, live] = members as [(typeof members)[0], (typeof members)[0]];
    const p = await proxy({
      initialCluster: members.map((m) => `${m.name}=${m.peerUrl}`).join(','),
      dataDir: await tempDir(),
      // The order below is the test's: no refresh replaces it, no leader goes first.
      refreshInterval: 600000,
      leaderWrites: false,
      strategy: 'first-available',
    });
    await stopped.stop();
    /**
     * Exactly two endpoints: the stopped member's client URL as a new endpoint
     * (state up) first, the live member second (setEndpoints shuffles, as
     * etcd's proxy does: 1 in 2 each time). The third member is left out, so
     * that the retry can only go to the live one.
     */
    const stoppedFirst = (): void => {
      for (let i = 0; i < 64; i++) {
        p.balancer.setEndpoints([live.clientUrl]);
        p.balancer.setEndpoints([stopped.clientUrl, live.clientUrl]);
        if (p.balancer.order()[0]?.url === stopped.clientUrl) break;
      }
      assert.deepEqual(
        p.balancer.order().map((e) => [e.url, e.state]),
        [
          [stopped.clientUrl, 'up'],
          [live.clientUrl, 'up'],
        ],
      );
    };
    stoppedFirst();
    const retried: RetriedEvent[] = [];
    p.handler.on('retried', (e) => retried.push(e));

    // A body of many TCP segments, so that it is read in several chunks.
    const value = 'v'.repeat(256 * 1024);
    const put = await http(`${p.url}/v2/keys/replayed`, { method: 'PUT', body: form({ value }) });
    assert.equal(put.status, 201, put.body);
    assert.equal(retried.length, 1);
    assert.equal(retried[0]!.from, stopped.clientUrl);
    assert.equal(retried[0]!.to, live.clientUrl);
    assert.equal(retried[0]!.error.phase, 'connect');
    const stored = (await http(`${live.clientUrl}/v2/keys/replayed?quorum=true`)).json() as { node: { value: string } };
    assert.equal(stored.node.value.length, value.length);
    assert.equal(stored.node.value, value);

    // The stopped member is down now: make it a new endpoint, first again.
    stoppedFirst();
    const post = await http(`${p.url}/v2/keys/replayed-queue`, { method: 'POST', body: form({ value: 'once' }) });
    assert.equal(post.status, 201, post.body);
    assert.equal(retried.length, 2);
    assert.equal(retried[1]!.error.phase, 'connect');
    const queue = (await http(`${live.clientUrl}/v2/keys/replayed-queue?quorum=true`)).json() as { node: { nodes?: Array<{ value: string }> } };
    assert.deepEqual(queue.node.nodes?.map((n) => n.value), ['once']);
  });
});
