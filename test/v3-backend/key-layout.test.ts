/**
 * KeyLayout: etcd 3.4's --experimental-enable-v2v3 key encoding (depth in
 * three digits, directories with a trailing '/', one prefix per level) and
 * reading keys back, odd names included.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { KeyLayout } from '../../src/v3-backend/key-layout.js';

const L = new KeyLayout('/v2');
const s = (b: Buffer): string => b.toString('utf8');

describe('KeyLayout', () => {
  test('normalize cleans paths as Go path.Clean(path.Join("/", p))', () => {
    assert.equal(KeyLayout.normalize(''), '/');
    assert.equal(KeyLayout.normalize('/'), '/');
    assert.equal(KeyLayout.normalize('foo'), '/foo');
    assert.equal(KeyLayout.normalize('/foo/'), '/foo');
    assert.equal(KeyLayout.normalize('//foo//bar/'), '/foo/bar');
    assert.equal(KeyLayout.normalize('/a/./b/../c'), '/a/c');
    assert.equal(KeyLayout.normalize('/../..'), '/');
  });

  test('depth, parent, basename, ancestors, isAncestor', () => {
    assert.equal(KeyLayout.depth('/'), 0);
    assert.equal(KeyLayout.depth('/a'), 1);
    assert.equal(KeyLayout.depth('/a/b/c'), 3);
    assert.equal(KeyLayout.parent('/a'), '/');
    assert.equal(KeyLayout.parent('/a/b/c'), '/a/b');
    assert.equal(KeyLayout.basename('/a/b'), 'b');
    assert.deepEqual(KeyLayout.ancestors('/a'), []);
    assert.deepEqual(KeyLayout.ancestors('/a/b/c'), ['/a', '/a/b']);
    assert.equal(KeyLayout.isAncestor('/foo', '/foo/bar'), true);
    assert.equal(KeyLayout.isAncestor('/foo', '/foobar'), false);
    assert.equal(KeyLayout.isAncestor('/', '/x'), true);
    assert.equal(KeyLayout.isAncestor('/x', '/x'), false);
  });

  test("file and directory keys are the emulation's (v2 paths under etcd's /1 store namespace)", () => {
    assert.equal(s(L.fileKey('/foo')), '/v2/002/k//1/foo');
    assert.equal(s(L.fileKey('/foo/bar')), '/v2/003/k//1/foo/bar');
    assert.equal(s(L.dirKey('/foo/bar')), '/v2/003/k//1/foo/bar/');
    assert.equal(s(L.actionKey), '/v2/act');
    const deep = `/${Array.from({ length: 12 }, (_, i) => `n${i}`).join('/')}`;
    assert.equal(s(L.fileKey(deep)), `/v2/013/k//1${deep}`);
    assert.equal(s(new KeyLayout('/other/pfx').fileKey('/x')), '/other/pfx/002/k//1/x');
  });

  test('level prefixes: children of a directory, not of its siblings sharing a string prefix', () => {
    assert.equal(s(L.childrenPrefix('/')), '/v2/002/k//1/');
    assert.equal(s(L.childrenPrefix('/foo')), '/v2/003/k//1/foo/');
    assert.equal(s(L.levelPrefix('/foo', 4)), '/v2/005/k//1/foo/');
    assert.equal(s(L.levelPrefix('/', 3)), '/v2/004/k//1/');
    // /foobar's key is not under /foo's children prefix (the emulation's bug)
    assert.equal(s(L.fileKey('/foobar')).startsWith(s(L.childrenPrefix('/foo'))), false);
    assert.equal(s(L.fileKey('/foo/x')).startsWith(s(L.childrenPrefix('/foo'))), true);
    assert.equal(s(L.dirKey('/foo/x')).startsWith(s(L.childrenPrefix('/foo'))), true);
    // a grandchild is at the next level
    assert.equal(s(L.fileKey('/foo/x/y')).startsWith(s(L.levelPrefix('/foo', 3))), true);
  });

  test('prefixEnd is the end of a prefix range', () => {
    assert.deepEqual(KeyLayout.prefixEnd(Buffer.from('abc')), Buffer.from('abd'));
    assert.deepEqual(KeyLayout.prefixEnd(Buffer.from([0x61, 0xff])), Buffer.from([0x62]));
    assert.deepEqual(KeyLayout.prefixEnd(Buffer.from([0xff, 0xff])), Buffer.from([0]));
    const r = L.nodeRange();
    assert.equal(s(r.key), '/v2/0');
    assert.equal(s(r.rangeEnd), '/v2/:');
    for (const k of [L.fileKey('/a'), L.dirKey('/a/b/c')]) assert.ok(Buffer.compare(k, r.key) >= 0 && Buffer.compare(k, r.rangeEnd) < 0);
    for (const k of [L.actionKey, Buffer.from('/v2/auth/users/root')]) assert.ok(Buffer.compare(k, r.rangeEnd) >= 0);
  });

  test('decode reads file and directory keys back', () => {
    assert.deepEqual(L.decode(L.fileKey('/foo/bar')), { path: '/foo/bar', dir: false, depth: 2 });
    assert.deepEqual(L.decode(L.dirKey('/foo/bar')), { path: '/foo/bar', dir: true, depth: 2 });
    assert.deepEqual(L.decode('/v2/002/k//1/x'), { path: '/x', dir: false, depth: 1 });
    // what etcd 3.4's emulation wrote for PUT /v2/keys/j/b and PUT /v2/keys/j/e?dir=true
    assert.deepEqual(L.decode('/v2/003/k//1/j/b'), { path: '/j/b', dir: false, depth: 2 });
    assert.deepEqual(L.decode('/v2/003/k//1/j/e/'), { path: '/j/e', dir: true, depth: 2 });
    assert.deepEqual(L.decode('/v2/002/k//1/j/'), { path: '/j', dir: true, depth: 1 });
    assert.equal(L.depthOfKey(L.fileKey('/a/b/c')), 3);
  });

  test('decode refuses keys outside the layout', () => {
    for (const k of ['/v2/act', '/v2/auth/users/root', '/v3/002/k//1/x', '/v2/002/k/1/x', '/v2/003/k//1/x', '/v2/002/k//1/a/b', '/v2/02/k//1/x', '/v2/001/k//1/', '/v2/001/k//1', '/v2/002/k//1/a//', '/v2/003/k//1/a/../b', '/v2/abc/k//1/x', '/v2/001/k//x', '/v2/002/k//0/x', '/v2/002/k//2/x', 'other']) {
      assert.equal(L.decode(k), undefined, k);
    }
  });

  test('odd names round-trip unescaped: unicode, spaces, %, +, ?, #, quotes, leading _', () => {
    const names = ['héllo wörld', 'ключ', '日本語', '🔑 emoji', 'a b', '100%', '%2F', 'a+b', 'q?x=1', 'h#x', `"'\``, '_hidden', 'tab\tname', 'semi;colon', 'a\\b'];
    for (const name of names) {
      for (const p of [`/${name}`, `/dir/${name}`, `/${name}/${name}`]) {
        assert.equal(KeyLayout.normalize(p), p, p);
        const f = L.fileKey(p);
        assert.equal(s(f), `/v2/${String(KeyLayout.depth(p) + 1).padStart(3, '0')}/k//1${p}`);
        assert.deepEqual(L.decode(f), { path: p, dir: false, depth: KeyLayout.depth(p) }, p);
        assert.deepEqual(L.decode(L.dirKey(p)), { path: p, dir: true, depth: KeyLayout.depth(p) }, p);
        assert.ok(f.toString('utf8').startsWith(s(L.childrenPrefix(KeyLayout.parent(p)))), p);
      }
    }
    // the bytes are UTF-8, not an escape form
    assert.deepEqual(L.fileKey('/é'), Buffer.from('/v2/002/k//1/\u00e9', 'utf8'));
  });

  test('depths past 999 take more digits (as etcd formats %03d)', () => {
    const p = `/${Array.from({ length: 999 }, () => 'a').join('/')}`;
    assert.ok(s(L.fileKey(p)).startsWith('/v2/1000/k//1/a/'));
    assert.deepEqual(L.decode(L.fileKey(p)), { path: p, dir: false, depth: 999 });
  });
});
