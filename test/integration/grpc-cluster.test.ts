/**
 * v3 clients through the proxy in front of a real 3-member etcd cluster:
 * writes go through the leader and reads spread (counted by the members
 * themselves, on their own metrics), a watch survives the SIGKILL of its
 * member without missing an event, a Put in flight when its member dies is
 * not sent again, and a member that refuses the connection is passed over.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import type { BalancerStrategy, GrpcDroppedEvent, GrpcForwardedEvent, GrpcRetriedEvent } from '../../src/index.js';
import { cleanup, cluster, eventually, freeze, onCleanup, proxy, skipWithoutEtcd } from './harness.js';
import type { LocalEtcd } from './harness.js';
import { ctl3, etcdGrpc, grpc, memberMetric, unary } from './grpc-client.js';

/** How many calls of `method` (`Put`, `Range`...) each member has handled, by its own count. */
async function handledBy(members: readonly LocalEtcd[], method: string): Promise<number[]> {
  return Promise.all(members.map((m) => memberMetric(m.clientUrl, 'grpc_server_handled_total', { grpc_method: method })));
}

describe('v3 clients through the proxy in front of a 3-member cluster', { skip: skipWithoutEtcd }, () => {
  let members: LocalEtcd[];
  let alive: LocalEtcd[];
  let p: Awaited<ReturnType<typeof proxy>>;
  const forwarded: GrpcForwardedEvent[] = [];
  const dropped: GrpcDroppedEvent[] = [];
  const retried: GrpcRetriedEvent[] = [];

  before(async () => {
    members = await cluster(3);
    alive = [...members];
    p = await proxy({ initialCluster: members.map((m) => `${m.name}=${m.peerUrl}`).join(','), refreshInterval: 500, failureWait: 60000 });
    p.grpc!.on('forwarded', (e) => forwarded.push(e));
    p.grpc!.on('dropped', (e) => dropped.push(e));
    p.grpc!.on('retried', (e) => retried.push(e));
  });
  after(cleanup);

  /** The member the balancer takes for the leader, once it knows one that is alive. */
  async function knownLeader(): Promise<LocalEtcd> {
    await eventually(() => alive.some((m) => m.clientUrl === p.balancer.leader?.url && p.balancer.leader.state === 'up'), 10000, 'the proxy to know the leader');
    return alive.find((m) => m.clientUrl === p.balancer.leader!.url)!;
  }

  it('writes land on the leader, reads spread over the members (as each member counts them)', async () => {
    const leader = await knownLeader();
    const leaderOwn = (await ctl3(leader.clientUrl, ['endpoint', 'status', '-w', 'json'])).stdout;
    const status = JSON.parse(leaderOwn) as Array<{ Status: { header: { member_id: number }; leader: number } }>;
    assert.equal(status[0]!.Status.header.member_id, status[0]!.Status.leader, 'the balancer\'s leader is the cluster\'s');
    const g = etcdGrpc(p.url);
    onCleanup(() => g.close());
    const putsBefore = await handledBy(members, 'Put');
    for (let i = 0; i < 30; i++) assert.ok((await unary(g.kv, 'Put', { key: Buffer.from(`spread/${i}`), value: Buffer.from('v') })).ok);
    const putsAfter = await handledBy(members, 'Put');
    assert.deepEqual(
      putsAfter.map((n, i) => n - putsBefore[i]!),
      members.map((m) => (m === leader ? 30 : 0)),
      'every Put on the leader',
    );
    const rangesBefore = await handledBy(members, 'Range');
    for (let i = 0; i < 60; i++) assert.ok((await unary(g.kv, 'Range', { key: Buffer.from(`spread/${i % 30}`) })).ok);
    const ranges = (await handledBy(members, 'Range')).map((n, i) => n - rangesBefore[i]!);
    assert.equal(ranges.reduce((a, b) => a + b, 0), 60);
    assert.ok(ranges.every((n) => n >= 5), `Ranges per member: ${ranges.join(', ')}`);
  });

  it('SIGKILL of the member under an open watch: the watch resumes through the proxy and misses no event', async () => {
    const watching = new Etcd3({ hosts: p.url });
    onCleanup(() => watching.close());
    const watcher = await watching.watch().prefix('kw/').create();
    const seen: number[] = [];
    watcher.on('put', (kv) => seen.push(Number(kv.value.toString())));
    watcher.on('error', () => undefined);
    // Before the client closes (clean-up runs newest first): etcd3 re-opens a closed client's watches forever.
    onCleanup(() => watcher.cancel());
    const watchEvent = forwarded.filter((e) => e.method === '/etcdserverpb.Watch/Watch').at(-1)!;
    const victim = members.find((m) => m.clientUrl === watchEvent.endpoint)!;
    assert.ok(victim !== undefined, `the watch is on ${watchEvent.endpoint}`);
    const survivors = alive.filter((m) => m !== victim);
    // Written to the surviving members directly, each key once (a create-if-absent is safe to retry).
    const writer = new Etcd3({ hosts: survivors.map((m) => m.clientUrl) });
    onCleanup(() => writer.close());
    const write = async (i: number): Promise<void> => {
      for (let attempt = 0; ; attempt++) {
        try {
          await writer.if(`kw/${i}`, 'Create', '==', 0).then(writer.put(`kw/${i}`).value(String(i))).commit();
          return;
        } catch (err) {
          if (attempt >= 50) throw err;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    };
    for (let i = 0; i < 50; i++) await write(i);
    await eventually(() => seen.length === 50, 5000, 'the first 50 events');
    victim.signal('SIGKILL');
    await victim.exited;
    alive = survivors;
    for (let i = 50; i < 150; i++) await write(i);
    await eventually(() => seen.length >= 150, 20000, `all 150 events (got ${seen.length})`);
    assert.deepEqual(seen, Array.from({ length: 150 }, (_, i) => i));
    assert.ok(
      dropped.some((e) => e.method === '/etcdserverpb.Watch/Watch' && e.reason === 'member-lost' && e.grpcStatus === grpc.status.UNAVAILABLE),
      'the watch on the dead member was ended with UNAVAILABLE',
    );
    assert.equal(p.balancer.endpoints.find((e) => e.url === victim.clientUrl)?.state, 'down', 'the balancer marked it down, for v2 too');
    const resumed = forwarded.filter((e) => e.method === '/etcdserverpb.Watch/Watch').at(-1)!;
    assert.notEqual(resumed.endpoint, victim.clientUrl);
  });

  it('a unary Put in flight when its member dies ends with UNAVAILABLE and is not sent again', async () => {
    const leader = await knownLeader();
    const other = alive.find((m) => m !== leader)!;
    const g = etcdGrpc(p.url);
    onCleanup(() => g.close());
    assert.ok((await unary(g.kv, 'Range', { key: Buffer.from('warm') })).ok);
    await freeze(leader);
    const retriedBefore = retried.length;
    const started = Date.now();
    const put = unary(g.kv, 'Put', { key: Buffer.from('in-flight'), value: Buffer.from('once') }, { deadlineMs: 15000 });
    const endpoint = p.balancer.endpoints.find((e) => e.url === leader.clientUrl)!;
    await eventually(() => endpoint.inFlight > 0, 5000, 'the Put to be on the frozen leader');
    leader.signal('SIGKILL');
    await leader.exited;
    alive = alive.filter((m) => m !== leader);
    const outcome = await put;
    assert.equal(outcome.ok, false);
    if (!outcome.ok) assert.equal(outcome.error.code, grpc.status.UNAVAILABLE, outcome.error.message);
    assert.ok(Date.now() - started < 10000, 'ended by the member\'s death, not by the deadline');
    assert.equal(retried.length, retriedBefore, 'not sent to another member');
    assert.ok(dropped.some((e) => e.method === '/etcdserverpb.KV/Put' && e.reason === 'member-lost'));
    // The last member (no quorum left) answers from its own copy: the Put never reached the cluster.
    const left = await ctl3(other.clientUrl, ['get', 'in-flight', '--consistency=s', '--print-value-only']);
    assert.equal(left.code, 0, left.stderr);
    assert.equal(left.stdout, '');
  });

  it('a member that refuses the connection is passed over: the call goes to the next member', async () => {
    const dead = members.find((m) => !alive.includes(m))!;
    // Always offers the dead member first, while the balancer still takes it for up.
    const deadFirst: BalancerStrategy = { name: 'dead-first', pick: (candidates) => candidates.find((e) => e.url === dead.clientUrl) ?? candidates[0]! };
    const q = await proxy({ initialCluster: alive.map((m) => `${m.name}=${m.peerUrl}`).join(','), strategy: deadFirst, failureWait: 60000 });
    await eventually(() => q.balancer.endpoints.some((e) => e.url === dead.clientUrl && e.state === 'up'), 5000, 'the dead member listed and not yet marked down');
    const tried: GrpcRetriedEvent[] = [];
    q.grpc!.on('retried', (e) => tried.push(e));
    const g = etcdGrpc(q.url);
    onCleanup(() => g.close());
    const read = await unary<{ count: string }>(g.kv, 'Range', { key: Buffer.from('kw/0'), serializable: true });
    assert.ok(read.ok, read.ok ? '' : read.error.message);
    assert.equal(read.response.count, '1');
    // Two members are dead by now: the call may have been refused by both before reaching the live one.
    assert.equal(tried[0]?.from, dead.clientUrl);
    assert.ok(tried.length >= 1 && tried.length <= 2);
    assert.ok(tried.every((e) => e.error.phase === 'connect' && !alive.some((m) => m.clientUrl === e.from)));
    assert.equal(q.balancer.endpoints.find((e) => e.url === dead.clientUrl)?.state, 'down');
  });
});
