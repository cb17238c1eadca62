/**
 * Interop with etcd 3.4's own v2 emulation (`--experimental-enable-v2v3
 * /v2`: the member serves `/v2/keys` from its v3 store): a proxy with
 * `backend: 'v3'` and `v3Prefix: '/v2'` in front of the same member reads
 * what the emulation wrote, and the emulation reads what the proxy wrote.
 * Both name indexes v3 revision - 1, so the answers are compared whole.
 *
 * (A member with the emulation on does not serve `/health`: it is started
 * without the harness's health wait, and waited for on `/v2/keys`.)
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, eventually, form, http, member, proxy, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd, RawResponse } from './harness.js';

interface Node {
  key: string;
  value?: string;
  dir?: boolean;
  nodes?: Node[];
  modifiedIndex: number;
  createdIndex: number;
}
interface Answer {
  action: string;
  node: Node;
  prevNode?: Node;
}

/** Nodes of a listing sorted by key, recursively (the emulation lists in v3 key order, which differs from name order at depth changes). */
function sortedTree(n: Node): Node {
  return n.nodes === undefined ? n : { ...n, nodes: n.nodes.map(sortedTree).sort((a, b) => a.key.localeCompare(b.key)) };
}

describe('interop with etcd --experimental-enable-v2v3 /v2', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  let p: Awaited<ReturnType<typeof proxy>>;
  /** The member's own (emulated) v2 API. */
  let native: string;

  before(async () => {
    m = await member({ enableV2: true, extraArgs: ['--experimental-enable-v2v3', '/v2'], waitHealthy: false });
    native = m.clientUrl;
    await eventually(
      async () => {
        try {
          return (await http(`${native}/v2/keys/`, { timeout: 1000 })).status === 200;
        } catch {
          return false;
        }
      },
      20000,
      'the emulating member to answer /v2/keys',
    );
    p = await proxy({ backend: 'v3', v3Prefix: '/v2', initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() });
  });
  after(cleanup);

  const put = (base: string, key: string, fields: Record<string, string | number | boolean>): Promise<RawResponse> =>
    http(`${base}/v2/keys${key}`, { method: 'PUT', body: form(fields) });

  it('a file written by the emulation reads through the proxy, the same answer as from the emulation', async () => {
    const set = await put(native, '/from-emulation/file', { value: 'e1' });
    assert.equal(set.status, 201, set.body);
    const viaProxy = await http(`${p.url}/v2/keys/from-emulation/file`);
    const direct = await http(`${native}/v2/keys/from-emulation/file`);
    assert.equal(viaProxy.status, 200, viaProxy.body);
    assert.deepEqual(viaProxy.json(), direct.json());
    assert.equal((viaProxy.json() as Answer).node.modifiedIndex, (set.json() as Answer).node.modifiedIndex, 'the same index (v3 revision - 1)');
  });

  it('a file written by the proxy reads through the emulation, the same answer as from the proxy', async () => {
    const set = await put(p.url, '/from-proxy/file', { value: 'p1' });
    assert.equal(set.status, 201, set.body);
    const direct = await http(`${native}/v2/keys/from-proxy/file`);
    const viaProxy = await http(`${p.url}/v2/keys/from-proxy/file`);
    assert.equal(direct.status, 200, `the emulation does not see the proxy's write: ${direct.body}`);
    assert.deepEqual(direct.json(), viaProxy.json());
    assert.equal((direct.json() as Answer).node.modifiedIndex, (set.json() as Answer).node.modifiedIndex);
  });

  it('directories made on either side list on both, with their files (recursive listings equal)', async () => {
    for (const [base, key, fields] of [
      [native, '/tree/e-dir', { dir: true }],
      [native, '/tree/e-dir/a', { value: 'a' }],
      [p.url, '/tree/p-dir', { dir: true }],
      [p.url, '/tree/p-dir/b', { value: 'b' }],
      [native, '/tree/p-dir/c', { value: 'c' }],
      [p.url, '/tree/e-dir/d', { value: 'd' }],
      [native, '/tree/deep/x/y', { value: 'y' }],
      [p.url, '/tree/deep/x/z', { value: 'z' }],
    ] as const) {
      const r = await put(base, key, fields);
      assert.equal(r.status, 201, `${key} on ${base === native ? 'the emulation' : 'the proxy'}: ${r.body}`);
    }
    const direct = await http(`${native}/v2/keys/tree?recursive=true`);
    const viaProxy = await http(`${p.url}/v2/keys/tree?recursive=true`);
    assert.equal(direct.status, 200, direct.body);
    assert.equal(viaProxy.status, 200, viaProxy.body);
    assert.deepEqual(sortedTree((viaProxy.json() as Answer).node), sortedTree((direct.json() as Answer).node));
    const keys = (n: Node): string[] => [n.key, ...(n.nodes ?? []).flatMap(keys)];
    assert.deepEqual(keys(sortedTree((viaProxy.json() as Answer).node)).sort(), [
      '/tree',
      '/tree/deep',
      '/tree/deep/x',
      '/tree/deep/x/y',
      '/tree/deep/x/z',
      '/tree/e-dir',
      '/tree/e-dir/a',
      '/tree/e-dir/d',
      '/tree/p-dir',
      '/tree/p-dir/b',
      '/tree/p-dir/c',
    ]);
    for (const dir of ['/tree', '/tree/e-dir', '/tree/p-dir']) {
      const a = await http(`${native}/v2/keys${dir}`);
      const b = await http(`${p.url}/v2/keys${dir}`);
      assert.deepEqual(sortedTree((b.json() as Answer).node), sortedTree((a.json() as Answer).node), `listing of ${dir}`);
    }
  });

  it('a dir made on one side is a dir on the other: a value on it is refused (102) by both', async () => {
    assert.equal((await put(native, '/kinds/edir', { dir: true })).status, 201);
    assert.equal((await put(p.url, '/kinds/pdir', { dir: true })).status, 201);
    for (const [base, key] of [
      [p.url, '/kinds/edir'],
      [native, '/kinds/pdir'],
    ] as const) {
      const r = await put(base, key, { value: 'x' });
      assert.equal(r.status, 403, r.body);
      assert.equal((r.json() as { errorCode: number }).errorCode, 102);
    }
  });

  it('compare-and-swap across: the proxy swaps on the emulation\'s index and the emulation on the proxy\'s', async () => {
    const set = await put(native, '/cas', { value: 'one' });
    const i1 = (set.json() as Answer).node.modifiedIndex;
    const swap = await put(p.url, '/cas', { value: 'two', prevIndex: i1 });
    assert.equal(swap.status, 200, swap.body);
    assert.equal((swap.json() as Answer).action, 'compareAndSwap');
    const i2 = (swap.json() as Answer).node.modifiedIndex;
    const stale = await put(native, '/cas', { value: 'x', prevIndex: i1 });
    assert.equal(stale.status, 412, stale.body);
    const back = await put(native, '/cas', { value: 'three', prevValue: 'two', prevIndex: i2 });
    assert.equal(back.status, 200, back.body);
    const read = await http(`${p.url}/v2/keys/cas`);
    assert.equal((read.json() as Answer).node.value, 'three');
  });

  it('deletes on one side are seen on the other (a file, a directory recursively)', async () => {
    assert.equal((await put(p.url, '/gone/f', { value: 'f' })).status, 201);
    assert.equal((await put(native, '/gone/d/x', { value: 'x' })).status, 201);
    const delFile = await http(`${native}/v2/keys/gone/f`, { method: 'DELETE' });
    assert.equal(delFile.status, 200, delFile.body);
    assert.equal((await http(`${p.url}/v2/keys/gone/f`)).status, 404);
    const delDir = await http(`${p.url}/v2/keys/gone/d?recursive=true`, { method: 'DELETE' });
    assert.equal(delDir.status, 200, delDir.body);
    assert.equal((await http(`${native}/v2/keys/gone/d/x`)).status, 404);
    assert.equal((await http(`${native}/v2/keys/gone/d`)).status, 404);
  });

  it('a watch on the proxy sees a write made through the emulation (its action name included)', async () => {
    const { OpenWatch } = await import('./v2-scenarios.js');
    const w = new OpenWatch(`${p.url}/v2/keys/watched?wait=true`);
    try {
      assert.equal((await w.headers).status, 200);
      const set = await put(native, '/watched', { value: 'w' });
      assert.equal(set.status, 201, set.body);
      const ev = JSON.parse((await w.next(10000))!) as Answer;
      assert.equal(ev.action, 'set');
      assert.equal(ev.node.value, 'w');
      assert.equal(ev.node.modifiedIndex, (set.json() as Answer).node.modifiedIndex);
    } finally {
      w.close();
    }
  });

  it('a watch on the emulation sees a write made through the proxy', async () => {
    const { OpenWatch } = await import('./v2-scenarios.js');
    const w = new OpenWatch(`${native}/v2/keys/watched2?wait=true`);
    try {
      assert.equal((await w.headers).status, 200);
      const set = await put(p.url, '/watched2', { value: 'w2', prevExist: false });
      assert.equal(set.status, 201, set.body);
      const ev = JSON.parse((await w.next(10000))!) as Answer;
      assert.equal(ev.action, 'create');
      assert.equal(ev.node.value, 'w2');
      assert.equal(ev.node.modifiedIndex, (set.json() as Answer).node.modifiedIndex);
    } finally {
      w.close();
    }
  });
});
