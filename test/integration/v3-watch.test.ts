/**
 * WatchHub (src/v3-backend/watch-hub.ts) against real v3-only etcd members:
 * v2 events from writes in the v2v3 key layout (set, create, update,
 * compareAndSwap, delete, compareAndDelete, expire of a TTL lease), v2's
 * matching (recursive, hidden, /foo vs /foobar, a directory's removal),
 * waitIndex in the past and the future, 401 for a compacted index, 1,000
 * watchers on one stream, close(), and a SIGKILL of the stream's member in a
 * 3-member cluster with every event delivered exactly once, in order.
 *
 * Writes go through raw v3 transactions in the layout (what V3Store writes:
 * the node's key, the directories created on the way, and the action key).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EndpointBalancer } from '../../src/balancer/endpoint-balancer.js';
import type { KeyValue, RequestOp, WatchResponse } from '../../src/v3-backend/rpc-types.js';
import { KeyLayout } from '../../src/v3-backend/key-layout.js';
import { V2Error } from '../../src/v3-backend/v2-error.js';
import type { V2Event } from '../../src/v3-backend/v2-events.js';
import { V3Client } from '../../src/v3-backend/v3-client.js';
import { V3Store } from '../../src/v3-backend/v3-store.js';
import { WatchHub } from '../../src/v3-backend/watch-hub.js';
import type { V2Watch } from '../../src/v3-backend/watch-hub.js';
import { cleanup, cluster, eventually, http, member, onCleanup, skipWithoutEtcd } from './harness.js';
import type { LocalEtcd } from './harness.js';

const P = '/v2';
const b = (s: string): Buffer => Buffer.from(s);

const L = new KeyLayout(P);

function layoutKey(path: string, dir = false): string {
  return (dir ? L.dirKey(path) : L.fileKey(path)).toString();
}

function balancerOf(urls: readonly string[]): EndpointBalancer {
  const balancer = new EndpointBalancer({ endpoints: urls, leaderWrites: false });
  onCleanup(() => balancer.close());
  return balancer;
}

function clientOf(urls: readonly string[]): V3Client {
  const c = new V3Client({ balancer: balancerOf(urls) });
  onCleanup(() => c.close());
  return c;
}

function hubOf(c: V3Client, options: { idleTimeout?: number } = {}): WatchHub {
  const hub = new WatchHub({ client: c, prefix: P, ...options });
  onCleanup(() => hub.close());
  return hub;
}

/** Writes v2 operations as v3 transactions in the layout; each resolves to the v2 index of the write. */
class LayoutWriter {
  constructor(private readonly c: V3Client) {}

  private async txn(ops: RequestOp[], action: string | undefined): Promise<number> {
    const success = [...ops];
    if (action !== undefined) success.push({ requestPut: { key: b(`${P}/act`), value: b(action) } });
    const r = await this.c.txn({ compare: [], success, failure: [] });
    return Number(r.header.revision) - 1;
  }

  /** A file (and the directories above it, when `parents`). */
  put(path: string, value: string, action = 'set', o: { lease?: number; parents?: boolean } = {}): Promise<number> {
    const ops: RequestOp[] = [];
    if (o.parents === true) {
      const parts = path.split('/').filter((x) => x !== '');
      for (let i = 1; i < parts.length; i++) ops.push({ requestPut: { key: b(layoutKey('/' + parts.slice(0, i).join('/'), true)), value: b('') } });
    }
    ops.push({ requestPut: { key: b(layoutKey(path)), value: b(value), ...(o.lease === undefined ? {} : { lease: o.lease }) } });
    return this.txn(ops, action);
  }

  mkdir(path: string, o: { lease?: number } = {}): Promise<number> {
    return this.txn([{ requestPut: { key: b(layoutKey(path, true)), value: b(''), ...(o.lease === undefined ? {} : { lease: o.lease }) } }], 'set');
  }

  /** A file, or a directory and its subtree (one range per depth below it). */
  remove(path: string, action = 'delete', o: { dir?: boolean } = {}): Promise<number> {
    const ops: RequestOp[] = [];
    if (o.dir === true) {
      ops.push({ requestDeleteRange: { key: b(layoutKey(path, true)) } });
      const depth = KeyLayout.depth(path);
      for (let d = depth + 1; d <= depth + 4; d++) {
        const prefix = L.levelPrefix(path, d);
        ops.push({ requestDeleteRange: { key: prefix, rangeEnd: KeyLayout.prefixEnd(prefix) } });
      }
    } else {
      ops.push({ requestDeleteRange: { key: b(layoutKey(path)) } });
    }
    return this.txn(ops, action);
  }
}

/** A v2 watcher's record: its events, its end. */
interface Recorded {
  events: V2Event[];
  ended: boolean;
  endError: Error | undefined;
  watch: V2Watch;
}

async function record(hub: WatchHub, path: string, o: { recursive?: boolean; stream?: boolean; waitIndex?: number } = {}): Promise<Recorded> {
  const rec = { events: [] as V2Event[], ended: false, endError: undefined as Error | undefined } as Recorded;
  rec.watch = await hub.watch(
    path,
    { recursive: o.recursive ?? false, stream: o.stream ?? true, ...(o.waitIndex === undefined ? {} : { waitIndex: o.waitIndex }) },
    (ev) => rec.events.push(ev),
    (err) => {
      rec.ended = true;
      rec.endError = err;
    },
  );
  return rec;
}

const summary = (evs: readonly V2Event[]): string[] => evs.map((e) => `${e.action} ${e.node.key}@${e.node.modifiedIndex}`);

/** etcd's count of Watch streams a member started serving. */
async function watchStreamsStarted(m: LocalEtcd): Promise<number> {
  const text = (await http(`${m.clientUrl}/metrics`)).body;
  const match = /^grpc_server_started_total\{grpc_method="Watch",[^}]*\} (\d+)$/m.exec(text);
  return match === null ? 0 : Number(match[1]);
}

describe('WatchHub on a v3-only member', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  let c: V3Client;
  let hub: WatchHub;
  let w: LayoutWriter;

  before(async () => {
    m = await member({ enableV2: false });
    c = clientOf([m.clientUrl]);
    hub = hubOf(c);
    w = new LayoutWriter(c);
  });
  after(cleanup);

  test('set, create, update, compareAndSwap, delete, compareAndDelete: actions, nodes and prevNodes as v2', async () => {
    const rec = await record(hub, '/ops', { recursive: true });
    const i1 = await w.put('/ops/a', '1', 'create', { parents: true });
    const i2 = await w.put('/ops/a', '2', 'set');
    const i3 = await w.put('/ops/a', '3', 'update');
    const i4 = await w.put('/ops/a', '4', 'compareAndSwap');
    const i5 = await w.remove('/ops/a', 'compareAndDelete');
    const i6 = await w.put('/ops/b', 'x', 'create');
    const i7 = await w.remove('/ops/b', 'delete');
    await eventually(() => rec.events.length === 7, 5000, '7 events');
    assert.deepEqual(
      rec.events.map((e) => ({ action: e.action, node: e.node, prevNode: e.prevNode })),
      [
        { action: 'create', node: { key: '/ops/a', value: '1', modifiedIndex: i1, createdIndex: i1 }, prevNode: undefined },
        { action: 'set', node: { key: '/ops/a', value: '2', modifiedIndex: i2, createdIndex: i1 }, prevNode: { key: '/ops/a', value: '1', modifiedIndex: i1, createdIndex: i1 } },
        { action: 'update', node: { key: '/ops/a', value: '3', modifiedIndex: i3, createdIndex: i1 }, prevNode: { key: '/ops/a', value: '2', modifiedIndex: i2, createdIndex: i1 } },
        { action: 'compareAndSwap', node: { key: '/ops/a', value: '4', modifiedIndex: i4, createdIndex: i1 }, prevNode: { key: '/ops/a', value: '3', modifiedIndex: i3, createdIndex: i1 } },
        { action: 'compareAndDelete', node: { key: '/ops/a', modifiedIndex: i5, createdIndex: i1 }, prevNode: { key: '/ops/a', value: '4', modifiedIndex: i4, createdIndex: i1 } },
        { action: 'create', node: { key: '/ops/b', value: 'x', modifiedIndex: i6, createdIndex: i6 }, prevNode: undefined },
        { action: 'delete', node: { key: '/ops/b', modifiedIndex: i7, createdIndex: i6 }, prevNode: { key: '/ops/b', value: 'x', modifiedIndex: i6, createdIndex: i6 } },
      ],
    );
    rec.watch.cancel();
  });

  test('a revision with only the action key (a delete of nothing) or foreign keys is skipped; watchers keep going', async () => {
    const rec = await record(hub, '/', { recursive: true });
    await c.txn({ compare: [], success: [{ requestPut: { key: b(`${P}/act`), value: b('delete') } }], failure: [] });
    await c.put({ key: b(`${P}/auth/enabled`), value: b('false') });
    await c.put({ key: b('/elsewhere'), value: b('x') });
    const i = await w.put('/after-act', 'v', 'create');
    await eventually(() => rec.events.length >= 1, 5000, 'the event after the act-only revision');
    assert.deepEqual(summary(rec.events), [`create /after-act@${i}`]);
    rec.watch.cancel();
  });

  test('matching: recursive or not, hidden keys, /foo does not see /foobar, a removed directory notifies the watchers under it', async () => {
    await w.put('/m/foo/x', 'x', 'create', { parents: true });
    await w.put('/m/foo/_h', 'h', 'create');
    const rec = await record(hub, '/m/foo', { recursive: true });
    const flat = await record(hub, '/m/foo');
    const child = await record(hub, '/m/foo/x');
    const hidden = await record(hub, '/m/foo/_h');
    const sibling = await record(hub, '/m/foobar', { recursive: true });
    const root = await record(hub, '/', { recursive: true });
    const iBar = await w.put('/m/foobar', 'b', 'create');
    const iHid = await w.put('/m/foo/_h', 'h2', 'set');
    const iHid2 = await w.put('/m/foo/_d/y', 'y', 'create', { parents: true });
    const iX = await w.put('/m/foo/x', 'x2', 'set');
    const iDel = await w.remove('/m/foo', 'delete', { dir: true });
    await eventually(() => flat.events.length === 1 && root.events.length === 3, 5000, 'the directory delete');
    assert.deepEqual(summary(rec.events), [`set /m/foo/x@${iX}`, `delete /m/foo@${iDel}`]);
    assert.deepEqual(summary(flat.events), [`delete /m/foo@${iDel}`]);
    assert.deepEqual(summary(child.events), [`set /m/foo/x@${iX}`, `delete /m/foo@${iDel}`], 'the child gets the delete of its directory');
    assert.deepEqual(summary(hidden.events), [`set /m/foo/_h@${iHid}`, `delete /m/foo@${iDel}`]);
    assert.deepEqual(summary(sibling.events), [`create /m/foobar@${iBar}`]);
    assert.deepEqual(summary(root.events), [`create /m/foobar@${iBar}`, `set /m/foo/x@${iX}`, `delete /m/foo@${iDel}`]);
    assert.equal(root.events.some((e) => e.node.modifiedIndex === iHid2), false, 'the hidden directory stays hidden');
    assert.equal(root.events[2]!.node.dir, true);
    assert.deepEqual(root.events[2]!.prevNode, { key: '/m/foo', dir: true, modifiedIndex: root.events[2]!.prevNode!.modifiedIndex, createdIndex: root.events[2]!.prevNode!.createdIndex });
    for (const r of [rec, flat, child, hidden, sibling, root]) r.watch.cancel();
  });

  test('stream=false: one event, then the watch ends (onEnd) and its v3 watch is gone', async () => {
    const i0 = await w.put('/once', 'a', 'create');
    const rec = await record(hub, '/once', { stream: false });
    const past = await record(hub, '/once', { stream: false, waitIndex: i0 });
    await eventually(() => past.ended, 5000, 'the past event');
    assert.deepEqual(summary(past.events), [`create /once@${i0}`]);
    const i1 = await w.put('/once', 'b', 'set');
    await w.put('/once', 'c', 'set');
    await eventually(() => rec.ended, 5000, 'the one event');
    assert.deepEqual(summary(rec.events), [`set /once@${i1}`]);
    assert.equal(rec.endError, undefined);
    await eventually(() => hub.v3Watches === 1, 5000, 'only the shared v3 watch left');
  });

  test('waitIndex in the past: history from v3 (index = revision - 1, not one early); a stream then moves to the shared watch', async () => {
    const i1 = await w.put('/hist', '1', 'create');
    const i2 = await w.put('/hist', '2', 'set');
    await w.put('/other', 'o', 'create');
    const i3 = await w.put('/hist', '3', 'set');
    const from2 = await record(hub, '/hist', { stream: false, waitIndex: i2 });
    const after1 = await record(hub, '/hist', { stream: false, waitIndex: i1 + 1 });
    const all = await record(hub, '/hist', { stream: true, waitIndex: i1 });
    await eventually(() => from2.ended && after1.ended && all.events.length === 3, 5000, 'the history');
    assert.deepEqual(summary(from2.events), [`set /hist@${i2}`]);
    assert.deepEqual(summary(after1.events), [`set /hist@${i2}`], 'waitIndex = modifiedIndex + 1 gives the next event, not the same one');
    assert.deepEqual(summary(all.events), [`create /hist@${i1}`, `set /hist@${i2}`, `set /hist@${i3}`]);
    const i4 = await w.put('/hist', '4', 'set');
    await eventually(() => all.events.length === 4, 5000, 'the live event');
    assert.equal(all.events[3]!.node.modifiedIndex, i4);
    await eventually(() => hub.v3Watches === 1, 5000, 'the stream watcher moved to the shared v3 watch');
    const i5 = await w.put('/hist', '5', 'set');
    await eventually(() => all.events.length === 5, 5000, 'an event through the shared watch');
    assert.deepEqual(all.events.map((e) => e.node.modifiedIndex), [i1, i2, i3, i4, i5], 'each once, in order');
    all.watch.cancel();
  });

  test('waitIndex in the future: events from that index on', async () => {
    const now = await w.put('/fut', '0', 'create');
    const rec = await record(hub, '/fut', { stream: true, waitIndex: now + 3 });
    const i1 = await w.put('/fut', '1', 'set');
    const i2 = await w.put('/fut', '2', 'set');
    const i3 = await w.put('/fut', '3', 'set');
    const i4 = await w.put('/fut', '4', 'set');
    assert.equal(i3, now + 3);
    await eventually(() => rec.events.length === 2, 5000, 'two events');
    assert.deepEqual(rec.events.map((e) => e.node.modifiedIndex), [i3, i4]);
    assert.ok(i1 < i3 && i2 < i3);
    rec.watch.cancel();
  });

  test('from now: a write acknowledged before watch() is not delivered', async () => {
    for (let k = 0; k < 20; k++) {
      await w.put('/now', String(k), 'set');
      const rec = await record(hub, '/now', { stream: false });
      const next = await w.put('/now', `${k}b`, 'set');
      await eventually(() => rec.ended, 5000, 'the next write');
      assert.equal(rec.events[0]!.node.modifiedIndex, next);
      assert.ok(rec.watch.startIndex < next);
    }
  });

  test('expire: a TTL lease that runs out is one "expire" event for the node (and a directory takes its subtree)', async () => {
    const ttl = 2;
    const expiry = Date.now() + ttl * 1000;
    const id = expiry * 2048 + Math.floor(Math.random() * 2048);
    await c.leaseGrant(ttl, id);
    const created = await w.mkdir('/exp', {});
    const dirRec = await record(hub, '/exp', { recursive: true });
    const childRec = await record(hub, '/exp/d/f');
    const iDir = await c
      .txn({
        compare: [],
        success: [
          { requestPut: { key: b(layoutKey('/exp/d', true)), value: b(''), lease: id } },
          { requestPut: { key: b(layoutKey('/exp/d/f')), value: b('v'), lease: id } },
          { requestPut: { key: b(`${P}/act`), value: b('create') } },
        ],
        failure: [],
      })
      .then((r) => Number(r.header.revision) - 1);
    await eventually(() => dirRec.events.length === 2, 8000, 'the create and the expiry');
    const [create, expire] = dirRec.events;
    assert.ok(created < iDir);
    assert.equal(create!.action, 'create');
    assert.equal(create!.node.key, '/exp/d/f');
    // On its directory's lease: it goes with the directory, and v2 shows no TTL on it.
    assert.equal(create!.node.ttl, undefined);
    assert.equal(create!.node.expiration, undefined);
    assert.ok(expire!.prevNode!.expiration === new Date(expiry).toISOString().replace(/\.?0+Z$/, 'Z'), 'the directory has its TTL');
    assert.equal(expire!.action, 'expire');
    assert.deepEqual(expire!.node, { key: '/exp/d', dir: true, modifiedIndex: expire!.node.modifiedIndex, createdIndex: iDir });
    assert.equal(expire!.prevNode!.key, '/exp/d');
    assert.equal(expire!.prevNode!.dir, true);
    await eventually(() => childRec.events.length === 2, 5000, 'the child watcher');
    assert.deepEqual(summary(childRec.events), [`create /exp/d/f@${iDir}`, `expire /exp/d@${expire!.node.modifiedIndex}`]);
    dirRec.watch.cancel();
    childRec.watch.cancel();
  });

  test('1,000 watchers share one stream (one Watch stream on the member) and one write reaches every one', async () => {
    const before = await watchStreamsStarted(m);
    assert.equal(hub.streams, 1);
    const recs = await Promise.all(Array.from({ length: 1000 }, (_, k) => record(hub, k % 2 === 0 ? '/many' : '/', { recursive: k % 2 === 1, stream: k % 3 !== 0 })));
    const past = await Promise.all(Array.from({ length: 50 }, () => record(hub, '/many', { stream: true, waitIndex: 1 })));
    assert.equal(hub.streams, 1);
    const i = await w.put('/many', 'v', 'create');
    await eventually(() => recs.every((r) => r.events.length === 1), 10000, 'every watcher to get the event');
    await eventually(() => past.every((r) => r.events.some((e) => e.node.modifiedIndex === i)), 10000, 'every past watcher to get the event');
    for (const r of recs) assert.deepEqual(summary(r.events), [`create /many@${i}`]);
    assert.equal(await watchStreamsStarted(m), before, 'no new Watch stream on the member');
    assert.equal(hub.streams, 1);
    for (const r of [...recs, ...past]) r.watch.cancel();
    assert.equal(hub.watchers, 0);
  });

  test('waitIndex older than the compaction: V2Error 401 in v2 form, index = current', async () => {
    const old = await w.put('/cmp', '1', 'create');
    await w.put('/cmp', '2', 'set');
    const last = await w.put('/cmp', '3', 'set');
    await c.compact(last + 1);
    await assert.rejects(
      record(hub, '/cmp', { waitIndex: old }),
      (err: unknown) => {
        assert.ok(err instanceof V2Error, String(err));
        assert.equal(err.errorCode, 401);
        assert.equal(err.message, 'The event in requested index is outdated and cleared');
        assert.equal(err.cause, `the requested history has been cleared [${last}/${old}]`);
        assert.equal(err.index, last);
        return true;
      },
    );
    // The index just at the compaction is still there.
    const ok = await record(hub, '/cmp', { waitIndex: last, stream: false });
    await eventually(() => ok.ended, 5000, 'the event at the compaction');
    assert.deepEqual(summary(ok.events), [`set /cmp@${last}`]);
    assert.equal(hub.watchers, 0);
  });

  test('close(): onEnd for every watcher, no stream, nothing left; watch() then rejects', async () => {
    const c2 = clientOf([m.clientUrl]);
    const h2 = new WatchHub({ client: c2, prefix: P });
    const i = await w.put('/y', 'v', 'set');
    const recs = await Promise.all([record(h2, '/x'), record(h2, '/', { recursive: true }), record(h2, '/y', { waitIndex: i - 1 })]);
    assert.equal(h2.streams, 1);
    h2.close();
    assert.equal(h2.streams, 0);
    assert.equal(h2.watchers, 0);
    assert.ok(recs.every((r) => r.ended && r.endError === undefined));
    await assert.rejects(record(h2, '/x'), V2Error);
  });

  test('the client closed under the hub: every watcher ends with its error, and the hub stops', async () => {
    const c4 = clientOf([m.clientUrl]);
    const h4 = hubOf(c4);
    const recs = await Promise.all([record(h4, '/x'), record(h4, '/', { recursive: true })]);
    c4.close();
    await eventually(() => recs.every((r) => r.ended), 5000, 'every watcher to end');
    assert.ok(recs.every((r) => r.endError !== undefined), 'with an error');
    assert.equal(h4.streams, 0);
    assert.equal(h4.watchers, 0);
    await assert.rejects(record(h4, '/x'), V2Error);
  });

  test('idle: once the last watcher is gone, the stream closes after idleTimeout; the next watch opens one again', async () => {
    const c3 = clientOf([m.clientUrl]);
    const h3 = hubOf(c3, { idleTimeout: 50 });
    const rec = await record(h3, '/idle');
    rec.watch.cancel();
    await eventually(() => h3.streams === 0, 3000, 'the idle stream to close');
    const again = await record(h3, '/idle', { stream: false });
    const i = await w.put('/idle', 'v', 'set');
    await eventually(() => again.ended, 5000, 'the event');
    assert.equal(again.events[0]!.node.modifiedIndex, i);
  });
});

describe('WatchHub with V3Store: each watch event is the write answer', { skip: skipWithoutEtcd }, () => {
  let c: V3Client;
  let hub: WatchHub;
  let store: V3Store;

  before(async () => {
    const m = await member({ enableV2: false });
    c = clientOf([m.clientUrl]);
    hub = hubOf(c);
    store = new V3Store({ client: c, prefix: P });
    onCleanup(() => store.close());
  });
  after(cleanup);

  /** The parts of an event a v2 watcher sees (ttl may tick down by one between the answer and the event). */
  const body = (e: V2Event): unknown => JSON.parse(JSON.stringify({ action: e.action, node: e.node, prevNode: e.prevNode }), (k, v: unknown) => (k === 'ttl' ? 'ttl' : v));

  test('set, create, update, compareAndSwap, POST, TTLs (on a directory and the nodes that go with it), refresh, deletes', async () => {
    const root = await record(hub, '/', { recursive: true });
    const answers: V2Event[] = [];
    const run = async (ev: Promise<V2Event>): Promise<void> => {
      answers.push(await ev);
    };
    await run(store.put('/s/a', { value: '1' }));
    await run(store.put('/s/a', { value: '2' }));
    await run(store.put('/s/a', { value: '3', prevExist: true }));
    await run(store.put('/s/a', { value: '4', prevValue: '3' }));
    await run(store.put('/s/b', { value: 'x', prevExist: false, ttl: 100 }));
    await run(store.post('/q', { value: 'job1' }));
    await run(store.post('/q', { value: 'job2' }));
    await run(store.put('/td', { dir: true, ttl: 60 }));
    await run(store.put('/td/f', { value: 'inherits' }));
    await run(store.put('/td/g', { value: 'own', ttl: 20 }));
    await run(store.put('/td/sub/h', { value: 'deep' }));
    await run(store.put('/td/f', { value: 'again' }));
    const refreshed = await store.put('/td/g', { ttl: 30, refresh: true });
    await run(store.put('/td', { dir: true, ttl: 90, prevExist: true }));
    await run(store.delete('/td/f'));
    await run(store.delete('/s/a', { prevValue: '4' }));
    await run(store.delete('/s', { recursive: true }));
    await run(store.delete('/td', { dir: true, recursive: true }));
    await eventually(() => root.events.length >= answers.length, 5000, `${answers.length} events`);
    assert.deepEqual(root.events.map(body), answers.map(body));
    assert.ok(!root.events.some((e) => e.node.modifiedIndex === refreshed.node.modifiedIndex), 'a refresh is not delivered');
    const inherits = root.events.find((e) => e.node.key === '/td/f')!;
    assert.equal(inherits.node.ttl, undefined, 'a node that goes with its directory shows no TTL');
    assert.equal(typeof root.events.find((e) => e.node.key === '/td/g')!.node.ttl, 'number');
    root.watch.cancel();

    // The same history from a past index (its own v3 watch: directory leases read at each revision).
    const past = await record(hub, '/', { recursive: true, waitIndex: answers[0]!.node.modifiedIndex });
    await eventually(() => past.events.length >= answers.length, 5000, 'the history');
    assert.deepEqual(past.events.map(body), answers.map(body));
    past.watch.cancel();
  });
});

describe("WatchHub reading the writes of etcd 3.4's own v2v3 emulation", { skip: skipWithoutEtcd }, () => {
  after(cleanup);

  test('the emulation writes in its own order; the hub names the same events', async () => {
    // The emulation's /health panics: wait for its keys API instead.
    const m = await member({ extraArgs: ['--experimental-enable-v2v3', P], waitHealthy: false });
    await eventually(async () => (await http(`${m.clientUrl}/v2/keys/`).catch(() => ({ status: 0 }))).status === 200, 20000, 'the emulation to answer');
    const c = clientOf([m.clientUrl]);
    const hub = hubOf(c);
    const root = await record(hub, '/', { recursive: true });
    /** One v2 write on the emulation; its index (X-Etcd-Index: its recursive delete answers without a node). */
    const v2 = async (method: string, path: string, params: Record<string, string> = {}): Promise<number> => {
      const res = await http(`${m.clientUrl}/v2/keys${path}${method === 'GET' || method === 'DELETE' ? `?${new URLSearchParams(params)}` : ''}`, {
        method,
        ...(method === 'PUT' || method === 'POST' ? { body: new URLSearchParams(params).toString() } : {}),
      });
      assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${res.body}`);
      return Number(res.headers['x-etcd-index']);
    };
    const answers = [
      await v2('PUT', '/e/a/b/c', { value: '1' }),
      await v2('PUT', '/e/a/b/c', { value: '2', prevExist: 'true' }),
      await v2('PUT', '/e/a/b/c', { value: '3', prevValue: '2' }),
      await v2('PUT', '/e/a/new', { value: 'n', prevExist: 'false' }),
      await v2('PUT', '/e/d', { dir: 'true' }),
      await v2('DELETE', '/e/a/b/c', { prevValue: '3' }),
      await v2('DELETE', '/e/a', { recursive: 'true' }),
    ];
    await eventually(() => root.events.length >= answers.length, 5000, `${answers.length} events`);
    assert.deepEqual(
      root.events.map((e) => `${e.action} ${e.node.key}${e.node.dir === true ? '/' : ''}@${e.node.modifiedIndex}`),
      [
        `set /e/a/b/c@${answers[0]}`,
        `update /e/a/b/c@${answers[1]}`,
        `compareAndSwap /e/a/b/c@${answers[2]}`,
        `create /e/a/new@${answers[3]}`,
        `set /e/d/@${answers[4]}`,
        `compareAndDelete /e/a/b/c@${answers[5]}`,
        `delete /e/a/@${answers[6]}`,
      ],
    );
    assert.deepEqual(root.events[1]!.prevNode?.value, '1');
    root.watch.cancel();
  });
});

describe('WatchHub failover: SIGKILL of the stream member in a 3-member v3-only cluster', { skip: skipWithoutEtcd }, () => {
  let ms: LocalEtcd[];
  after(cleanup);

  before(async () => {
    ms = await cluster(3, { enableV2: false });
  });

  test('every watcher gets every event exactly once, in order, across the failover', async () => {
    const c = clientOf(ms.map((x) => x.clientUrl));
    const hub = hubOf(c);
    const w = new LayoutWriter(c);
    const N = 120;
    const KILL_AT = 40;
    const start = await w.put('/f/start', 's', 'create', { parents: true });

    const all = await record(hub, '/f', { recursive: true });
    const fromPast = await record(hub, '/f', { recursive: true, waitIndex: start });
    const perKey = await Promise.all(Array.from({ length: 10 }, (_, k) => record(hub, `/f/k${k * 12 + 5}`)));
    const onceLate = await Promise.all(Array.from({ length: 5 }, (_, k) => record(hub, `/f/k${KILL_AT + 10 + k}`, { stream: false })));
    const victim = ms.find((x) => x.clientUrl === hub.endpoint);
    assert.ok(victim !== undefined, `the stream's member ${hub.endpoint}`);

    let lateOwn: Recorded | undefined;
    for (let i = 0; i < N; i++) {
      if (i === KILL_AT) {
        // A watcher on its own v3 watch (history from the start) still catching up when the member dies.
        lateOwn = await record(hub, '/f', { recursive: true, waitIndex: start });
        victim.signal('SIGKILL');
      }
      const deadline = Date.now() + 20000;
      for (;;) {
        try {
          await w.put(`/f/k${i}`, String(i), 'create');
          break;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
    assert.notEqual(hub.endpoint, victim.clientUrl);

    // The truth: the cluster's own history of /f, read with a plain v3 watch from the start on a survivor.
    const truth = await history(c, start + 2);
    const truthAll = truth.filter((t) => t.key.startsWith('/f/'));
    assert.ok(truthAll.length >= N, `${truthAll.length} writes`);
    const expectAll = truthAll.map((t) => `create ${t.key}@${t.index}`);
    await eventually(
      () => all.events.length >= expectAll.length && fromPast.events.length > expectAll.length && lateOwn!.events.length > expectAll.length,
      15000,
      'every event',
    );
    assert.deepEqual(summary(all.events), expectAll);
    assert.deepEqual(summary(fromPast.events), [`create /f/start@${start}`, ...expectAll]);
    assert.deepEqual(summary(lateOwn!.events), [`create /f/start@${start}`, ...expectAll]);
    for (const r of perKey) {
      const key = `/f/k${perKey.indexOf(r) * 12 + 5}`;
      await eventually(() => r.events.length >= truthAll.filter((t) => t.key === key).length, 5000, `the events of ${key}`);
      assert.deepEqual(summary(r.events), truthAll.filter((t) => t.key === key).map((t) => `create ${t.key}@${t.index}`));
    }
    for (const [k, r] of onceLate.entries()) {
      const key = `/f/k${KILL_AT + 10 + k}`;
      await eventually(() => r.ended, 5000, `the one event of ${key}`);
      assert.deepEqual(summary(r.events), [`create ${key}@${truthAll.find((t) => t.key === key)!.index}`]);
    }
    assert.equal(hub.streams, 1);
  });
});

/** Every put of a layout file from `fromRev` to now, from a raw v3 watch (the cluster's history). */
async function history(c: V3Client, fromRev: number): Promise<Array<{ key: string; index: number }>> {
  const now = Number((await c.range({ key: b(`${P}/act`) })).header.revision);
  const stream = c.openWatchStream();
  const out: Array<{ key: string; index: number }> = [];
  try {
    await new Promise<void>((resolve, reject) => {
      stream.on('error', reject);
      stream.on('response', (r: WatchResponse) => {
        for (const ev of r.events) {
          const kv: KeyValue = ev.kv;
          const d = L.decode(kv.key);
          if (ev.type === 'PUT' && d !== undefined && !d.dir) out.push({ key: d.path, index: Number(kv.modRevision) - 1 });
          if (Number(kv.modRevision) >= now) resolve();
        }
      });
      stream.create({ key: b(`${P}/`), rangeEnd: b(`${P}0`), startRevision: fromRev, watchId: 1 });
    });
  } finally {
    stream.close();
  }
  return out;
}
