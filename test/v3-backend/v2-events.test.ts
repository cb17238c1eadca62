/**
 * v3 revision -> v2 event translation (v2-events.ts) on handcrafted watch
 * events in the layout of etcd's v2v3 emulation, and v2's watcher matching.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KeyValue, WatchEvent } from '../../src/v3-backend/rpc-types.js';
import { KeyLayout } from '../../src/v3-backend/key-layout.js';
import { groupByRevision, translateRevision, translateResponse, watcherMatches } from '../../src/v3-backend/v2-events.js';
import type { TranslatedEvent } from '../../src/v3-backend/v2-events.js';

const P = '/v2';

const L = new KeyLayout(P);

function layoutKey(path: string, dir = false): string {
  return (dir ? L.dirKey(path) : L.fileKey(path)).toString();
}

function kv(key: string, o: { value?: string; create?: number; mod: number; lease?: number; version?: number }): KeyValue {
  return {
    key: Buffer.from(key),
    value: Buffer.from(o.value ?? ''),
    createRevision: o.create ?? o.mod,
    modRevision: o.mod,
    version: o.version ?? 1,
    lease: o.lease ?? 0,
  };
}

function put(key: string, rev: number, o: { value?: string; create?: number; lease?: number; prev?: KeyValue } = {}): WatchEvent {
  return { type: 'PUT', kv: kv(key, { ...o, mod: rev }), prevKv: o.prev ?? null };
}

function del(key: string, rev: number, prev?: KeyValue): WatchEvent {
  // etcd's delete event: the key and the revision of the delete; the rest zero.
  return { type: 'DELETE', kv: { key: Buffer.from(key), value: Buffer.alloc(0), createRevision: 0, modRevision: rev, version: 0, lease: 0 }, prevKv: prev ?? null };
}

function act(name: string, rev: number): WatchEvent {
  return put(`${P}/act`, rev, { value: name, create: 2 });
}

/** A lease ID of the layout: expiry ms * 2048 + a random part. */
function leaseFor(expiryMs: number): number {
  return expiryMs * 2048 + 77;
}

const NOW = Date.UTC(2030, 0, 1, 0, 0, 0);

function one(events: WatchEvent[], rev: number): TranslatedEvent {
  const out = translateRevision(P, rev, events, { nowMs: NOW });
  assert.equal(out.length, 1, JSON.stringify(out));
  return out[0]!;
}

describe('translateRevision', () => {
  it('create: the deepest key put is the node, the intermediate directories created with it are not', () => {
    const rev = 10;
    const te = one([put(layoutKey('/a', true), rev), put(layoutKey('/a/b', true), rev), put(layoutKey('/a/b/c'), rev, { value: 'v' }), act('create', rev)], rev);
    assert.equal(te.revision, 10);
    assert.deepEqual(te.removed, []);
    assert.deepEqual(te.event, { action: 'create', node: { key: '/a/b/c', value: 'v', modifiedIndex: 9, createdIndex: 9 }, etcdIndex: 9 });
  });

  it('set over an existing file: prevNode from prev_kv; update and compareAndSwap keep createdIndex', () => {
    const prev = kv(layoutKey('/foo'), { value: 'old', create: 4, mod: 6 });
    for (const action of ['set', 'update', 'compareAndSwap']) {
      const te = one([act(action, 12), put(layoutKey('/foo'), 12, { value: 'new', create: 4, prev })], 12);
      assert.deepEqual(te.event, {
        action,
        node: { key: '/foo', value: 'new', modifiedIndex: 11, createdIndex: 3 },
        prevNode: { key: '/foo', value: 'old', modifiedIndex: 5, createdIndex: 3 },
        etcdIndex: 11,
      });
    }
  });

  it("the node among a write's puts does not depend on their order (etcd's emulation writes in any order)", () => {
    const rev = 11;
    const evs = [put(layoutKey('/a/b/c'), rev, { value: 'v' }), act('create', rev), put(layoutKey('/a/b', true), rev), put(layoutKey('/a', true), rev)];
    assert.equal(one(evs, rev).event.node.key, '/a/b/c');
    assert.equal(one([...evs].reverse(), rev).event.node.key, '/a/b/c');
  });

  it("a directory's TTL change: the directory is the node, not the keys of its subtree moved to its new lease", () => {
    const rev = 25;
    const lease = leaseFor(NOW + 30000);
    const prevDir = kv(layoutKey('/t', true), { create: 5, mod: 5, lease: leaseFor(NOW + 1000) });
    const te = one(
      [
        put(layoutKey('/t/x'), rev, { value: '1', create: 6, lease, prev: kv(layoutKey('/t/x'), { value: '1', create: 6, mod: 6 }) }),
        put(layoutKey('/t/u/y'), rev, { value: '2', create: 7, lease }),
        put(layoutKey('/t', true), rev, { create: 5, lease, prev: prevDir }),
        act('update', rev),
      ],
      rev,
    );
    assert.equal(te.event.action, 'update');
    assert.deepEqual(te.event.node, { key: '/t', dir: true, expiration: '2030-01-01T00:00:30Z', ttl: 30, modifiedIndex: 24, createdIndex: 4 });
    assert.equal(te.event.prevNode!.key, '/t');
    assert.equal(te.nodeLease, lease);
  });

  it('a file replaced by a directory (set dir=true): the old file is the prevNode', () => {
    const rev = 33;
    const te = one([del(layoutKey('/s'), rev, kv(layoutKey('/s'), { value: 'f', create: 30, mod: 31 })), put(layoutKey('/s', true), rev), act('set', rev)], rev);
    assert.deepEqual(te.event.node, { key: '/s', dir: true, modifiedIndex: 32, createdIndex: 32 });
    assert.deepEqual(te.event.prevNode, { key: '/s', value: 'f', modifiedIndex: 30, createdIndex: 29 });
  });

  it('a directory node has dir: true and no value', () => {
    const te = one([put(layoutKey('/d', true), 7), act('set', 7)], 7);
    assert.deepEqual(te.event.node, { key: '/d', dir: true, modifiedIndex: 6, createdIndex: 6 });
  });

  it('ttl and expiration from the lease ID (ceiling of the seconds left; Go time format)', () => {
    const expiry = NOW + 4500;
    const te = one([put(layoutKey('/t'), 20, { value: 'x', lease: leaseFor(expiry) }), act('create', 20)], 20);
    assert.equal(te.event.node.ttl, 5);
    assert.equal(te.event.node.expiration, '2030-01-01T00:00:04.5Z');
    const whole = one([put(layoutKey('/t'), 21, { value: 'x', lease: leaseFor(NOW + 60000) }), act('set', 21)], 21);
    assert.equal(whole.event.node.ttl, 60);
    assert.equal(whole.event.node.expiration, '2030-01-01T00:01:00Z');
    // A lease that is not ours (a small ID from etcdctl lease grant): no ttl.
    const foreign = one([put(layoutKey('/t'), 22, { value: 'x', lease: 0x694d7a1b2c3d }), act('set', 22)], 22);
    assert.equal(foreign.event.node.ttl, undefined);
    assert.equal(foreign.event.node.expiration, undefined);
  });

  it('delete of a file: node with the old createdIndex, prevNode with the old value', () => {
    const prev = kv(layoutKey('/foo'), { value: 'bar', create: 3, mod: 5 });
    const te = one([act('delete', 9), del(layoutKey('/foo'), 9, prev)], 9);
    assert.deepEqual(te.event, {
      action: 'delete',
      node: { key: '/foo', modifiedIndex: 8, createdIndex: 2 },
      prevNode: { key: '/foo', value: 'bar', modifiedIndex: 4, createdIndex: 2 },
      etcdIndex: 8,
    });
    assert.deepEqual(te.removed, ['/foo']);
  });

  it('recursive delete: the shallowest key deleted is the node (dir), every removed path is listed', () => {
    const rev = 30;
    const te = one(
      [
        act('delete', rev),
        del(layoutKey('/d', true), rev, kv(layoutKey('/d', true), { create: 10, mod: 10 })),
        del(layoutKey('/d/a'), rev, kv(layoutKey('/d/a'), { value: '1', create: 11, mod: 11 })),
        del(layoutKey('/d/e', true), rev, kv(layoutKey('/d/e', true), { create: 12, mod: 12 })),
        del(layoutKey('/d/e/f'), rev, kv(layoutKey('/d/e/f'), { value: '2', create: 12, mod: 12 })),
      ],
      rev,
    );
    assert.deepEqual(te.event, {
      action: 'delete',
      node: { key: '/d', dir: true, modifiedIndex: 29, createdIndex: 9 },
      prevNode: { key: '/d', dir: true, modifiedIndex: 9, createdIndex: 9 },
      etcdIndex: 29,
    });
    assert.deepEqual([...te.removed].sort(), ['/d', '/d/a', '/d/e', '/d/e/f']);
  });

  it('compareAndDelete', () => {
    const te = one([act('compareAndDelete', 15), del(layoutKey('/c'), 15, kv(layoutKey('/c'), { value: 'v', create: 14, mod: 14 }))], 15);
    assert.equal(te.event.action, 'compareAndDelete');
    assert.deepEqual(te.event.node, { key: '/c', modifiedIndex: 14, createdIndex: 13 });
  });

  it('deletes without the action key are a lease expiry: one "expire" per subtree removed', () => {
    const expiry = NOW - 300;
    const rev = 40;
    const out = translateRevision(
      P,
      rev,
      [
        del(layoutKey('/q', true), rev, kv(layoutKey('/q', true), { create: 30, mod: 30, lease: leaseFor(expiry) })),
        del(layoutKey('/q/x'), rev, kv(layoutKey('/q/x'), { value: 'x', create: 31, mod: 31, lease: leaseFor(expiry) })),
      ],
      { nowMs: NOW },
    );
    assert.equal(out.length, 1);
    assert.deepEqual(out[0]!.event, {
      action: 'expire',
      node: { key: '/q', dir: true, modifiedIndex: 39, createdIndex: 29 },
      prevNode: { key: '/q', dir: true, expiration: '2029-12-31T23:59:59.7Z', modifiedIndex: 29, createdIndex: 29 }, // ttl 0: left out (omitempty)
      etcdIndex: 39,
    });
    assert.deepEqual([...out[0]!.removed].sort(), ['/q', '/q/x']);
    // Two unrelated keys on one lease: two events of the same index.
    const two = translateRevision(P, 41, [del(layoutKey('/b'), 41, kv(layoutKey('/b'), { value: 'b', create: 5, mod: 5 })), del(layoutKey('/a'), 41, kv(layoutKey('/a'), { value: 'a', create: 5, mod: 5 }))], { nowMs: NOW });
    assert.deepEqual(two.map((t) => [t.event.action, t.event.node.key]), [['expire', '/a'], ['expire', '/b']]);
  });

  it('refresh is not delivered', () => {
    assert.deepEqual(translateRevision(P, 50, [act('refresh', 50), put(layoutKey('/r'), 50, { value: 'v', lease: leaseFor(NOW + 9000) })], { nowMs: NOW }), []);
  });

  it('a revision with only the action key, keys outside the layout, or an action without its key change gives nothing (never throws)', () => {
    assert.deepEqual(translateRevision(P, 60, [act('delete', 60)]), []);
    assert.deepEqual(translateRevision(P, 61, [put('/elsewhere', 61, { value: 'x' })]), []);
    assert.deepEqual(translateRevision(P, 62, [put(`${P}/auth/users/root`, 62, { value: '{}' })]), []);
    assert.deepEqual(
      translateRevision(P, 63, [put(`${P}/xyz/k//1/a`, 63), put(`${P}/005/k//1/a`, 63), put(`${P}/002/k/1/noslash`, 63), put(`${P}/002/k//2/a`, 63), put(`${P}/003/k//1/a/../b`, 63)]),
      [],
      'malformed layout keys',
    );
    assert.deepEqual(translateRevision(P, 64, [act('create', 64), del(layoutKey('/a'), 64)]), [], 'a put action with only deletes');
    assert.deepEqual(translateRevision(P, 65, [act('delete', 65), put(layoutKey('/a'), 65)]), [], 'a delete action with only puts');
    assert.deepEqual(translateRevision(P, 66, []), []);
    assert.deepEqual(translateRevision(P, 67, [del(`${P}/act`, 67)]), []);
    // A delete without prev_kv (history compacted under it): no prevNode, createdIndex 0.
    const bare = translateRevision(P, 68, [act('delete', 68), del(layoutKey('/z'), 68)]);
    assert.deepEqual(bare[0]!.event, { action: 'delete', node: { key: '/z', modifiedIndex: 67, createdIndex: 0 }, etcdIndex: 67 });
  });

  it('puts without the action key (written by another program) are "set", one per key put that is not an ancestor of another', () => {
    const out = translateRevision(P, 70, [put(layoutKey('/m', true), 70), put(layoutKey('/m/a'), 70, { value: '1' }), put(layoutKey('/m/b'), 70, { value: '2' })], { nowMs: NOW });
    assert.deepEqual(out.map((t) => [t.event.action, t.event.node.key]), [['set', '/m/a'], ['set', '/m/b']]);
  });

  it('a prefix other than /v2, and keys of another prefix are foreign', () => {
    const q = '/other';
    const out = translateRevision(q, 5, [put(new KeyLayout(q).fileKey('/x').toString(), 5, { value: 'v' }), put(`${q}/act`, 5, { value: 'create' })]);
    assert.equal(out[0]!.event.node.key, '/x');
    assert.deepEqual(translateRevision(q, 6, [put(layoutKey('/x'), 6), act('create', 6)]), []);
  });

  it('etcdIndex is the header revision - 1 when given', () => {
    const out = translateRevision(P, 5, [put(layoutKey('/x'), 5, { value: 'v' })], { headerRevision: 9 });
    assert.equal(out[0]!.event.etcdIndex, 8);
    assert.equal(out[0]!.event.node.modifiedIndex, 4);
  });
});

describe('translateResponse / groupByRevision', () => {
  it('groups a response by revision and keeps the order', () => {
    const events = [act('create', 3), put(layoutKey('/a'), 3, { value: '1' }), act('set', 4), put(layoutKey('/b'), 4, { value: '2' }), act('delete', 5)];
    assert.deepEqual(groupByRevision(events).map((g) => [g.revision, g.events.length]), [[3, 2], [4, 2], [5, 1]]);
    assert.deepEqual(translateResponse(P, events).map((t) => [t.revision, t.event.action, t.event.node.key]), [
      [3, 'create', '/a'],
      [4, 'set', '/b'],
    ]);
  });
});

describe('watcherMatches (v2 watcher hub rules)', () => {
  const ev = (key: string, removed: string[] = []): TranslatedEvent => ({
    revision: 2,
    removed,
    nodeLease: 0,
    prevLease: 0,
    event: { action: removed.length > 0 ? 'delete' : 'set', node: { key, modifiedIndex: 1, createdIndex: 1 }, etcdIndex: 1 },
  });

  it('the watched key itself, recursive or not', () => {
    assert.equal(watcherMatches('/foo', false, ev('/foo')), true);
    assert.equal(watcherMatches('/foo', true, ev('/foo')), true);
  });

  it('a key below: only when recursive; by path component, so /foo does not see /foobar', () => {
    assert.equal(watcherMatches('/foo', true, ev('/foo/bar')), true);
    assert.equal(watcherMatches('/foo', false, ev('/foo/bar')), false);
    assert.equal(watcherMatches('/foo', true, ev('/foobar')), false);
    assert.equal(watcherMatches('/', true, ev('/foobar')), true);
    assert.equal(watcherMatches('/', false, ev('/foobar')), false);
    assert.equal(watcherMatches('/foo/bar', true, ev('/foo')), false);
  });

  it('hidden components below the watched path hide the event; a hidden watched path itself does not', () => {
    assert.equal(watcherMatches('/foo', true, ev('/foo/_h')), false);
    assert.equal(watcherMatches('/foo', true, ev('/foo/_h/x')), false);
    assert.equal(watcherMatches('/', true, ev('/_h')), false);
    assert.equal(watcherMatches('/foo/_h', false, ev('/foo/_h')), true);
    assert.equal(watcherMatches('/_h', true, ev('/_h/x')), true);
    assert.equal(watcherMatches('/foo', true, ev('/foo/a_b')), true);
  });

  it('a directory deleted or expired notifies watchers on the nodes removed with it, even non-recursive and hidden ones', () => {
    const e = ev('/d', ['/d', '/d/a', '/d/_h']);
    assert.equal(watcherMatches('/d/a', false, e), true);
    assert.equal(watcherMatches('/d/_h', false, e), true);
    assert.equal(watcherMatches('/d/missing', false, e), false, 'v2 notifies the nodes that existed only');
    assert.equal(watcherMatches('/', true, e), true);
  });

  it('ancestors are by path components', () => {
    assert.equal(KeyLayout.isAncestor('/', '/a'), true);
    assert.equal(KeyLayout.isAncestor('/a', '/a/b'), true);
    assert.equal(KeyLayout.isAncestor('/a', '/ab'), false);
    assert.equal(KeyLayout.isAncestor('/a', '/a'), false);
  });
});
