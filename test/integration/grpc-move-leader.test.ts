/**
 * `etcdctl move-leader` through the proxy: etcdctl asks the endpoint's
 * Status, which the proxy sends to the leader it knows, and refuses unless
 * that member is the leader. The balancer learned a new leader only at its
 * next refresh (30 s by default), so a second move-leader right after a
 * first one failed with "no leader endpoint given" for up to 30 s (and
 * `endpoint status` showed the old leader). A transfer the proxy forwarded
 * now makes it look the leader up at once. Found by comparing etcdctl v3
 * through the proxy with etcdctl direct.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, cluster, eventually, proxy, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';
import { ctl3 } from './grpc-client.js';

describe('etcdctl move-leader through the proxy', { skip: skipWithoutEtcd }, () => {
  let members: LocalEtcd[];
  let p: Awaited<ReturnType<typeof proxy>>;
  before(async () => {
    members = await cluster(3);
    // The default refresh interval (30 s): the test's bounds are far below it.
    p = await proxy({ initialCluster: members.map((m) => `${m.name}=${m.peerUrl}`).join(','), dataDir: await tempDir() });
  });
  after(cleanup);

  it('twice in a row: the proxy knows the new leader within seconds, and the second transfer works', { timeout: 60000 }, async () => {
    const endpoint = new URL(p.url).host;
    await eventually(() => p.balancer.leader !== undefined, 10000, 'the proxy to know the leader');
    const ids = new Map<string, string>();
    // "<hex id>, started, <name>, <peer URL>, <client URL>, <learner>" (the JSON form's IDs do not fit a double).
    for (const line of (await ctl3(endpoint, ['member', 'list'])).stdout.trim().split('\n')) {
      const [id, , , , clientUrl] = line.split(', ');
      ids.set(clientUrl!, id!);
    }
    for (let round = 1; round <= 2; round++) {
      const leader = p.balancer.leader!.url;
      const target = members.find((m) => m.clientUrl !== leader)!.clientUrl;
      const moved = await ctl3(endpoint, ['move-leader', ids.get(target)!]);
      assert.equal(moved.code, 0, `round ${round}: ${moved.stderr}`);
      assert.match(moved.stdout, /Leadership transferred from/);
      await eventually(() => p.balancer.leader?.url === target, 5000, `round ${round}: the proxy to know ${target} leads`);
    }
  });
});
