/**
 * A member cut off from the others keeps its TCP connections and its watch
 * streams open, and sends no event: v2 watches served from it waited in
 * silence for as long as the cut lasted. The v3 backend's watch stream now
 * asks, as etcd's clientv3 does (`hasleader` metadata), to be ended when its
 * member has no leader; the hub then resumes the watches on another member,
 * from the last revision, and no event is lost or sent twice.
 *
 * The cut is made by stopping the two other members (SIGSTOP): the one left
 * has no leader, as a member behind a network partition.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EndpointBalancer } from '../../src/balancer/endpoint-balancer.js';
import type { V2Event } from '../../src/v3-backend/v2-events.js';
import { V3Client } from '../../src/v3-backend/v3-client.js';
import { V3Store } from '../../src/v3-backend/v3-store.js';
import { WatchHub } from '../../src/v3-backend/watch-hub.js';
import { cleanup, cluster, eventually, freeze, onCleanup, skipWithoutEtcd } from './harness.js';
import type { LocalEtcd } from './harness.js';

describe('v3 mode: a watch on a member that loses its leader', { skip: skipWithoutEtcd }, () => {
  let members: LocalEtcd[];
  before(async () => {
    members = await cluster(3, { enableV2: false });
  });
  after(cleanup);

  test('its stream is ended, and the watch goes on on another member with every event once', { timeout: 60000 }, async () => {
    const balancer = new EndpointBalancer({ endpoints: members.map((m) => m.clientUrl), leaderWrites: false, failureWait: 1000 });
    const client = new V3Client({ balancer });
    const hub = new WatchHub({ client, prefix: '/cut' });
    const store = new V3Store({ client, prefix: '/cut' });
    onCleanup(() => {
      hub.close();
      store.close();
      client.close();
      balancer.close();
    });
    const got: V2Event[] = [];
    await hub.watch('/k', { recursive: false, stream: true }, (ev) => got.push(ev), () => undefined);
    await store.put('/k', { value: 'before' });
    await eventually(() => got.length === 1, 5000, 'the event before the cut');
    const watched = hub.endpoint!;
    const others = members.filter((m) => m.clientUrl !== watched);
    for (const m of others) await freeze(m);
    let thawed = false;
    const thaw = (): void => {
      if (thawed) return;
      thawed = true;
      for (const m of others) m.signal('SIGCONT');
    };
    onCleanup(thaw);
    // etcd ends such streams after three election timeouts (1 s each) without a leader.
    await eventually(() => hub.endpoint !== watched, 15000, `the watch stream to leave ${watched}`);
    thaw();
    await eventually(
      async () => {
        try {
          await store.put('/k', { value: 'after' });
          return true;
        } catch {
          return false;
        }
      },
      20000,
      'a write once the cluster has a leader again',
    );
    await eventually(() => got.length >= 2, 15000, 'the event after the cut');
    assert.deepEqual(
      got.map((ev) => [ev.action, ev.node.value]),
      [
        ['set', 'before'],
        ['set', 'after'],
      ],
    );
  });
});
