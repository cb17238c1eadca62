/**
 * EndpointBalancer against a real 3-member cluster: load spread per request,
 * readmission only on a healthy probe, and writes sent to the leader.
 * Each member's own counters (`etcd_http_received_total` in its /metrics)
 * tell where requests went.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { startEtcd, waitHealthy } from '../../examples/local-etcd.js';
import { applied, cleanup, cluster, eventually, freeze, http, onCleanup, proxy, requestsReceived, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';

async function counts(members: LocalEtcd[], method: string): Promise<number[]> {
  return Promise.all(members.map((m) => requestsReceived(m.clientUrl, method, 3000)));
}

/** Runs `total` requests with `concurrency` in flight at a time. */
async function load(total: number, concurrency: number, one: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await one(next++);
    }),
  );
}

const initialCluster = (members: LocalEtcd[]): string => members.map((m) => `${m.name}=${m.peerUrl}`).join(',');

describe('EndpointBalancer with a real 3-member cluster', { skip: skipWithoutEtcd }, () => {
  after(cleanup);

  test('reads spread within 20% of the mean by default; etcd\'s first-available pins one member', async () => {
    const members = await cluster(3);
    const spread = await proxy({ initialCluster: initialCluster(members), dataDir: await tempDir() });
    const pinned = await proxy({ initialCluster: initialCluster(members), dataDir: await tempDir(), strategy: 'first-available' });
    assert.equal((await http(`${spread.url}/v2/keys/spread?value=x`, { method: 'PUT' })).status, 201);
    await applied(members, 'spread');

    const share = async (url: string): Promise<number[]> => {
      const before = await counts(members, 'GET');
      await load(600, 6, async () => assert.equal((await http(`${url}/v2/keys/spread`)).status, 200));
      const afterCounts = await counts(members, 'GET');
      return afterCounts.map((n, i) => n - before[i]!);
    };
    const even = await share(spread.url);
    const skewed = await share(pinned.url);
    process.stdout.write(`GETs per member: least-in-flight ${JSON.stringify(even)}, first-available ${JSON.stringify(skewed)}\n`);
    const mean = 600 / 3;
    for (const n of even) assert.ok(Math.abs(n - mean) <= 0.2 * mean, `least-in-flight: ${JSON.stringify(even)}`);
    assert.ok(Math.max(...skewed) >= 0.9 * 600, `first-available should pin one member: ${JSON.stringify(skewed)}`);
  });

  test('a SIGSTOPped member is ejected after its first timeout, gets nothing while stopped, and is readmitted by a probe after SIGCONT', async () => {
    const members = await cluster(3);
    // Hedging off: this is the responseTimeout path (with hedging, reads go round a stopped member without
    // waiting for it, and it is suspected rather than ejected: hedged-reads.test.ts).
    const p = await proxy({ initialCluster: initialCluster(members), dataDir: await tempDir(), responseTimeout: 800, failureWait: 500, hedgeDelay: 0 });
    const target = members[1]!;
    const endpoint = () => p.balancer.endpoints.find((e) => e.url === target.clientUrl)!;
    const attempts: string[] = [];
    p.handler.on('forwarded', (e) => attempts.push(e.endpoint));
    p.handler.on('retried', (e) => attempts.push(e.from));
    const ups: number[] = [];
    p.balancer.on('endpointUp', (e, info) => e.url === target.clientUrl && ups.push(info.outForMs));

    const before = await requestsReceived(target.clientUrl, 'GET', 3000);
    onCleanup(() => target.signal('SIGCONT'));
    await freeze(target);
    const stoppedAt = Date.now();
    await load(300, 3, async (i) => assert.equal((await http(`${p.url}/v2/keys/?i=${i}`)).status, 200));
    assert.equal(endpoint().state, 'down');
    const sentWhileStopped = attempts.filter((u) => u === target.clientUrl).length;
    // Only the requests that were on their way when it stopped (at most one per client in flight).
    assert.ok(sentWhileStopped >= 1 && sentWhileStopped <= 3, `${sentWhileStopped} requests sent to the stopped member`);
    await new Promise((r) => setTimeout(r, Math.max(0, 3000 - (Date.now() - stoppedAt))));
    assert.equal(endpoint().state, 'down', 'no blind readmission while stopped');

    target.signal('SIGCONT');
    const contAt = Date.now();
    await eventually(() => endpoint().state === 'up', 10000, 'readmission after SIGCONT');
    const readmittedIn = Date.now() - contAt;
    process.stdout.write(`readmitted ${readmittedIn} ms after SIGCONT (out for ${ups[0]} ms)\n`);
    // The member processed exactly what was sent before it was ejected, nothing more.
    await eventually(async () => (await requestsReceived(target.clientUrl, 'GET', 3000)) - before === sentWhileStopped, 5000, 'the stopped member to process its backlog');
    assert.equal(ups.length, 1);
  });

  test('a member without a leader is probed as degraded: it keeps serving plain reads, and is up again once the cluster is', async () => {
    const members = await cluster(3);
    const [a, b, c] = members as [LocalEtcd, LocalEtcd, LocalEtcd];
    const p = await proxy({ initialCluster: initialCluster(members), dataDir: await tempDir(), responseTimeout: 700, failureWait: 300 });
    assert.equal((await http(`${p.url}/v2/keys/deg?value=before`, { method: 'PUT' })).status, 201);
    // a must have the value before the leader may be frozen: without a leader it can never apply it.
    await applied(members, 'deg');
    const degraded: string[] = [];
    p.balancer.on('endpointDegraded', (e, detail) => degraded.push(`${e.url} ${detail}`));
    // Two of three stopped: the third has no quorum and soon no leader; its /health says "false".
    onCleanup(() => b.signal('SIGCONT'));
    onCleanup(() => c.signal('SIGCONT'));
    await Promise.all([freeze(b), freeze(c)]);
    const endpointOf = (m: LocalEtcd) => p.balancer.endpoints.find((e) => e.url === m.clientUrl)!;
    // Quorum reads fail everywhere now, which takes every member out; the probes then sort them.
    await eventually(async () => {
      await http(`${p.url}/v2/keys/deg?quorum=true`, { timeout: 5000 }).catch(() => undefined);
      return endpointOf(a).state === 'degraded';
    }, 20000, 'the leaderless member to be probed as degraded');
    assert.match(degraded.join('\n'), new RegExp(`${a.clientUrl} GET /health answered \\d+ .*"health":"false"`));
    assert.equal(endpointOf(b).state, 'down');
    // A plain read is still served, by the degraded member.
    const plain = await http(`${p.url}/v2/keys/deg`, { timeout: 5000 });
    assert.equal(plain.status, 200);
    assert.equal((plain.json() as { node: { value: string } }).node.value, 'before');
    b.signal('SIGCONT');
    c.signal('SIGCONT');
    await eventually(() => members.every((m) => endpointOf(m).state === 'up'), 20000, 'every member up again');
    assert.equal((await http(`${p.url}/v2/keys/deg?value=after`, { method: 'PUT' })).status, 200);
  });

  test('writes go to the leader; after the leader is killed they find the new one, and no acknowledged write is lost', async () => {
    const members = await cluster(3);
    const p = await proxy({ initialCluster: initialCluster(members), dataDir: await tempDir(), refreshInterval: 1000 });
    await eventually(() => p.balancer.leader !== undefined, 5000, 'the leader to be known');
    const leaderOf = async (): Promise<LocalEtcd> => {
      const info = (await http(`${members[0]!.clientUrl}/v2/members/leader`)).json() as { clientURLs: string[] };
      return members.find((m) => info.clientURLs.includes(m.clientUrl))!;
    };
    const leader = await leaderOf();
    assert.equal(p.balancer.leader?.url, leader.clientUrl);

    const acked = new Map<string, string>();
    const put = async (i: number): Promise<void> => {
      const key = `lw${i}`;
      const res = await http(`${p.url}/v2/keys/${key}?value=v${i}`, { method: 'PUT' }).catch(() => undefined);
      if (res !== undefined && (res.status === 200 || res.status === 201)) acked.set(key, `v${i}`);
    };
    const before = await counts(members, 'PUT');
    await load(200, 4, put);
    const deltas = (await counts(members, 'PUT')).map((n, i) => n - before[i]!);
    assert.ok(deltas[members.indexOf(leader)]! >= 200, `PUTs per member ${JSON.stringify(deltas)}: all to the leader`);

    leader.signal('SIGKILL');
    let i = 200;
    const killedAt = Date.now();
    while (Date.now() - killedAt < 4000) await put(i++);
    const survivors = members.filter((m) => m !== leader);
    await eventually(async () => {
      const info = (await http(`${survivors[0]!.clientUrl}/v2/members/leader`).catch(() => undefined))?.json() as { clientURLs?: string[] } | undefined;
      return info?.clientURLs !== undefined && survivors.some((m) => info.clientURLs!.includes(m.clientUrl)) && p.balancer.leader?.state === 'up';
    }, 10000, 'a new leader, known to the proxy');
    const newLeader = survivors.find((m) => m.clientUrl === p.balancer.leader!.url)!;
    const before2 = await Promise.all(survivors.map((m) => requestsReceived(m.clientUrl, 'PUT', 3000)));
    await load(100, 4, (n) => put(i + n));
    const deltas2 = (await Promise.all(survivors.map((m) => requestsReceived(m.clientUrl, 'PUT', 3000)))).map((n, k) => n - before2[k]!);
    assert.ok(deltas2[survivors.indexOf(newLeader)]! >= 100, `after the kill, PUTs per surviving member ${JSON.stringify(deltas2)}`);

    for (const [key, value] of acked) {
      const got = (await http(`${newLeader.clientUrl}/v2/keys/${key}?quorum=true`)).json() as { node: { value: string } };
      assert.equal(got.node.value, value, `${key}: acknowledged ${value}`);
    }
    // Restart the killed member so the cluster is whole for clean-up.
    const again = await startEtcd({ name: leader.name, clientPort: leader.clientPort, peerPort: leader.peerPort, dataDir: leader.dataDir, initialCluster: initialCluster(members), waitHealthy: false });
    onCleanup(() => again.stop());
    await waitHealthy(again.clientUrl, 20000);
  });
});
