/**
 * The etcd v2 proxy walkthrough, against one real etcd member: etcdctl v2 and
 * raw HTTP through the proxy behave as they do against the member itself.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, etcdctl, eventually, form, http, member, proxy, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd, RawResponse } from './harness.js';

interface EtcdNode {
  key: string;
  value?: string;
  dir?: boolean;
  nodes?: EtcdNode[];
  ttl?: number;
  expiration?: string;
  modifiedIndex: number;
  createdIndex: number;
}
interface EtcdAnswer {
  action: string;
  node: EtcdNode;
  prevNode?: EtcdNode;
}
interface EtcdError {
  errorCode: number;
  message: string;
  cause: string;
  index: number;
}

describe('walkthrough through the proxy', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  let p: Awaited<ReturnType<typeof proxy>>;
  let clusterId: string;
  /** `METHOD url` of every request the proxy's handler received (its `request` event). */
  const seen: string[] = [];

  before(async () => {
    m = await member();
    p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() });
    p.handler.on('request', (method, url) => seen.push(`${method} ${url}`));
    const direct = await http(`${m.clientUrl}/v2/keys/`);
    clusterId = String(direct.headers['x-etcd-cluster-id']);
    assert.match(clusterId, /^[0-9a-f]+$/);
  });
  after(cleanup);

  /** The value of `key` read from the member itself, not through the proxy; undefined when absent. */
  async function onMember(key: string): Promise<string | undefined> {
    const res = await http(`${m.clientUrl}/v2/keys/${key}`);
    if (res.status === 404) return undefined;
    assert.equal(res.status, 200, res.body);
    return (res.json() as EtcdAnswer).node.value;
  }

  /** etcd's own headers came through, and agree with the JSON body. */
  function assertEtcdHeaders(res: RawResponse): void {
    assert.equal(res.headers['x-etcd-cluster-id'], clusterId);
    assert.match(String(res.headers['x-etcd-index']), /^\d+$/);
    assert.equal(res.headers['content-type'], 'application/json');
  }

  describe('etcdctl v2', () => {
    it('set and get through the proxy print the value (default: etcdctl syncs the member list through the proxy)', async () => {
      const before = seen.length;
      const set = await etcdctl(p.url, ['set', 'key1', 'xxxxx']);
      assert.equal(set.code, 0, set.stderr);
      assert.equal(set.stdout, 'xxxxx\n');
      const get = await etcdctl(p.url, ['get', 'key1']);
      assert.equal(get.code, 0, get.stderr);
      assert.equal(get.stdout, 'xxxxx\n');
      // etcdctl asked the proxy for /v2/members first; the proxy's answer is what it then used.
      assert.ok(seen.slice(before).includes('GET /v2/members'), `proxy saw ${JSON.stringify(seen.slice(before))}`);
      assert.equal(await onMember('key1'), 'xxxxx');
    });

    it('with --no-sync, set and get go through the proxy itself', async () => {
      const before = seen.length;
      const set = await etcdctl(p.url, ['--no-sync', 'set', 'key1', 'yyyyy']);
      assert.equal(set.code, 0, set.stderr);
      assert.equal(set.stdout, 'yyyyy\n');
      // The proxy forwarded the write: the member has the new value.
      assert.deepEqual(
        seen.slice(before).filter((s) => s.startsWith('PUT ')),
        ['PUT /v2/keys/key1'],
      );
      assert.equal(await onMember('key1'), 'yyyyy');

      const mark = seen.length;
      const get = await etcdctl(p.url, ['--no-sync', 'get', 'key1']);
      assert.equal(get.code, 0, get.stderr);
      assert.equal(get.stdout, 'yyyyy\n');
      assert.ok(
        seen.slice(mark).some((s) => s.startsWith('GET /v2/keys/key1')),
        `proxy saw ${JSON.stringify(seen.slice(mark))}`,
      );
      assert.ok(!seen.slice(mark).includes('GET /v2/members'), '--no-sync must not fetch the member list');
    });

    it('member list through the proxy lists the member', async () => {
      const list = await etcdctl(p.url, ['member', 'list']);
      assert.equal(list.code, 0, list.stderr);
      const lines = list.stdout.trim().split('\n');
      assert.equal(lines.length, 1, list.stdout);
      assert.match(lines[0]!, new RegExp(`^[0-9a-f]+: name=${m.name} peerURLs=${m.peerUrl} clientURLs=${m.clientUrl} isLeader=true$`));
    });

    it('etcdctl get of a missing key fails as against the member', async () => {
      const viaProxy = await etcdctl(p.url, ['--no-sync', 'get', 'no-such-key']);
      const direct = await etcdctl(m.clientUrl, ['--no-sync', 'get', 'no-such-key']);
      assert.notEqual(viaProxy.code, 0);
      assert.equal(viaProxy.code, direct.code);
      assert.match(viaProxy.stderr, /Key not found \(\/no-such-key\)/);
      assert.equal(viaProxy.stderr, direct.stderr);
    });
  });

  describe('raw HTTP', () => {
    it('set, get, update (prevExist=true), delete', async () => {
      const set = await http(`${p.url}/v2/keys/message`, { method: 'PUT', body: form({ value: 'Hello world' }) });
      assert.equal(set.status, 201, set.body);
      assertEtcdHeaders(set);
      const created = set.json() as EtcdAnswer;
      assert.equal(created.action, 'set');
      assert.equal(created.node.key, '/message');
      assert.equal(created.node.value, 'Hello world');
      assert.equal(created.node.createdIndex, created.node.modifiedIndex);
      assert.equal(Number(set.headers['x-etcd-index']), created.node.modifiedIndex);
      assert.equal(await onMember('message'), 'Hello world');

      const get = await http(`${p.url}/v2/keys/message`);
      assert.equal(get.status, 200);
      assertEtcdHeaders(get);
      assert.deepEqual(get.json(), { action: 'get', node: created.node });

      const update = await http(`${p.url}/v2/keys/message`, { method: 'PUT', body: form({ value: 'Hello etcd', prevExist: true }) });
      assert.equal(update.status, 200, update.body);
      const updated = update.json() as EtcdAnswer;
      assert.equal(updated.action, 'update');
      assert.equal(updated.node.value, 'Hello etcd');
      assert.equal(updated.node.createdIndex, created.node.createdIndex);
      assert.ok(updated.node.modifiedIndex > created.node.modifiedIndex);
      assert.deepEqual(updated.prevNode, created.node);
      assert.equal(await onMember('message'), 'Hello etcd');

      const del = await http(`${p.url}/v2/keys/message`, { method: 'DELETE' });
      assert.equal(del.status, 200, del.body);
      assertEtcdHeaders(del);
      const deleted = del.json() as EtcdAnswer;
      assert.equal(deleted.action, 'delete');
      assert.equal(deleted.prevNode?.value, 'Hello etcd');
      assert.equal(await onMember('message'), undefined);

      const gone = await http(`${p.url}/v2/keys/message`);
      assert.equal(gone.status, 404);
      assertEtcdHeaders(gone);
      const err = gone.json() as EtcdError;
      assert.equal(err.errorCode, 100);
      assert.equal(err.message, 'Key not found');
      assert.equal(err.cause, '/message');
    });

    it('directories: create, recursive get, rmdir of an empty one, refusal and recursive delete of a full one', async () => {
      const mk = await http(`${p.url}/v2/keys/dir`, { method: 'PUT', body: form({ dir: true }) });
      assert.equal(mk.status, 201, mk.body);
      assert.equal((mk.json() as EtcdAnswer).node.dir, true);
      for (const [key, value] of [['dir/a', '1'], ['dir/sub/b', '2']] as const) {
        const r = await http(`${p.url}/v2/keys/${key}`, { method: 'PUT', body: form({ value }) });
        assert.equal(r.status, 201, r.body);
      }
      const empty = await http(`${p.url}/v2/keys/dir/empty`, { method: 'PUT', body: form({ dir: true }) });
      assert.equal(empty.status, 201, empty.body);

      const tree = await http(`${p.url}/v2/keys/dir?recursive=true&sorted=true`);
      assert.equal(tree.status, 200);
      const root = (tree.json() as EtcdAnswer).node;
      assert.equal(root.dir, true);
      const shape = root.nodes?.map((n) => ({ key: n.key, value: n.value, dir: n.dir, children: n.nodes?.map((c) => [c.key, c.value]) }));
      assert.deepEqual(shape, [
        { key: '/dir/a', value: '1', dir: undefined, children: undefined },
        { key: '/dir/empty', value: undefined, dir: true, children: undefined },
        { key: '/dir/sub', value: undefined, dir: true, children: [['/dir/sub/b', '2']] },
      ]);

      const rmdir = await http(`${p.url}/v2/keys/dir/empty?dir=true`, { method: 'DELETE' });
      assert.equal(rmdir.status, 200, rmdir.body);
      assert.equal((rmdir.json() as EtcdAnswer).action, 'delete');

      // rmdir of a non-empty directory: etcd's 403 errorCode 108, as from the member itself.
      const refusedViaProxy = await http(`${p.url}/v2/keys/dir?dir=true`, { method: 'DELETE' });
      const refusedDirect = await http(`${m.clientUrl}/v2/keys/dir?dir=true`, { method: 'DELETE' });
      assert.equal(refusedViaProxy.status, 403);
      assert.equal((refusedViaProxy.json() as EtcdError).errorCode, 108);
      assertSameEtcdAnswer(refusedViaProxy, refusedDirect);

      const rmrf = await http(`${p.url}/v2/keys/dir?recursive=true`, { method: 'DELETE' });
      assert.equal(rmrf.status, 200, rmrf.body);
      assert.equal((await http(`${m.clientUrl}/v2/keys/dir`)).status, 404);
    });

    it('in-order keys: two POSTs create two keys, listed in order, and no more', async () => {
      const first = await http(`${p.url}/v2/keys/queue`, { method: 'POST', body: form({ value: 'Job1' }) });
      const second = await http(`${p.url}/v2/keys/queue`, { method: 'POST', body: form({ value: 'Job2' }) });
      assert.equal(first.status, 201, first.body);
      assert.equal(second.status, 201, second.body);
      const a = first.json() as EtcdAnswer;
      const b = second.json() as EtcdAnswer;
      assert.equal(a.action, 'create');
      assert.equal(b.action, 'create');
      assert.match(a.node.key, /^\/queue\/\d+$/);
      assert.ok(b.node.createdIndex > a.node.createdIndex);

      const list = await http(`${m.clientUrl}/v2/keys/queue?sorted=true`);
      assert.equal(list.status, 200);
      const nodes = (list.json() as EtcdAnswer).node.nodes ?? [];
      assert.deepEqual(
        nodes.map((n) => [n.key, n.value]),
        [
          [a.node.key, 'Job1'],
          [b.node.key, 'Job2'],
        ],
      );
    });

    it('TTL: a key set with ttl=1 expires', async () => {
      const set = await http(`${p.url}/v2/keys/foo`, { method: 'PUT', body: form({ value: 'bar', ttl: 1 }) });
      assert.equal(set.status, 201, set.body);
      const node = (set.json() as EtcdAnswer).node;
      assert.equal(node.ttl, 1);
      assert.ok(node.expiration !== undefined && !Number.isNaN(Date.parse(node.expiration)), `expiration ${node.expiration}`);
      const started = Date.now();
      let last: RawResponse | undefined;
      await eventually(
        async () => {
          last = await http(`${p.url}/v2/keys/foo`);
          return last.status === 404;
        },
        4000,
        'the ttl=1 key to expire',
      );
      assert.ok(Date.now() - started >= 500, 'the key expired too early');
      const err = last!.json() as EtcdError;
      assert.equal(err.errorCode, 100);
      assert.equal(err.cause, '/foo');
    });

    describe('compare-and-swap / compare-and-delete: the proxy answers exactly as the member', () => {
      let created: EtcdNode;
      before(async () => {
        const set = await http(`${p.url}/v2/keys/cas`, { method: 'PUT', body: form({ value: 'one' }) });
        assert.equal(set.status, 201, set.body);
        created = (set.json() as EtcdAnswer).node;
      });

      const failures: Array<{ name: string; method: string; query: () => string; body?: () => string; status: number; errorCode: number }> = [
        { name: 'prevValue mismatch', method: 'PUT', query: () => '', body: () => form({ value: 'two', prevValue: 'nope' }), status: 412, errorCode: 101 },
        { name: 'prevIndex mismatch', method: 'PUT', query: () => '', body: () => form({ value: 'two', prevIndex: created.modifiedIndex + 1000 }), status: 412, errorCode: 101 },
        { name: 'prevExist=false on an existing key', method: 'PUT', query: () => '', body: () => form({ value: 'two', prevExist: false }), status: 412, errorCode: 105 },
        { name: 'compare-and-delete prevValue mismatch', method: 'DELETE', query: () => '?prevValue=nope', status: 412, errorCode: 101 },
        { name: 'compare-and-delete prevIndex mismatch', method: 'DELETE', query: () => `?prevIndex=${created.modifiedIndex + 1000}`, status: 412, errorCode: 101 },
      ];
      for (const f of failures) {
        it(`${f.name}: ${f.status} errorCode ${f.errorCode}, same body and etcd headers, key unchanged`, async () => {
          const url = `/v2/keys/cas${f.query()}`;
          const body = f.body?.();
          const viaProxy = await http(`${p.url}${url}`, { method: f.method, ...(body !== undefined ? { body } : {}) });
          const direct = await http(`${m.clientUrl}${url}`, { method: f.method, ...(body !== undefined ? { body } : {}) });
          assert.equal(viaProxy.status, f.status, viaProxy.body);
          const err = viaProxy.json() as EtcdError;
          assert.equal(err.errorCode, f.errorCode);
          assertSameEtcdAnswer(viaProxy, direct);
          assert.equal(await onMember('cas'), 'one');
        });
      }

      it('matching prevValue swaps, matching prevIndex deletes', async () => {
        const swap = await http(`${p.url}/v2/keys/cas`, { method: 'PUT', body: form({ value: 'two', prevValue: 'one' }) });
        assert.equal(swap.status, 200, swap.body);
        const swapped = swap.json() as EtcdAnswer;
        assert.equal(swapped.action, 'compareAndSwap');
        assert.equal(swapped.prevNode?.value, 'one');
        assert.equal(await onMember('cas'), 'two');

        const del = await http(`${p.url}/v2/keys/cas?prevIndex=${swapped.node.modifiedIndex}`, { method: 'DELETE' });
        assert.equal(del.status, 200, del.body);
        assert.equal((del.json() as EtcdAnswer).action, 'compareAndDelete');
        assert.equal(await onMember('cas'), undefined);
      });
    });
  });

  /**
   * Same status, same JSON body and same etcd headers through the proxy as
   * from the member. Nothing is written between the two requests (a failed
   * comparison does not bump etcd's index), so even `index` must match.
   */
  function assertSameEtcdAnswer(viaProxy: RawResponse, direct: RawResponse): void {
    assert.equal(viaProxy.status, direct.status);
    assert.deepEqual(viaProxy.json(), direct.json());
    assert.equal(viaProxy.headers['content-type'], direct.headers['content-type']);
    assert.equal(viaProxy.headers['x-etcd-index'], direct.headers['x-etcd-index']);
    assert.equal(viaProxy.headers['x-etcd-cluster-id'], direct.headers['x-etcd-cluster-id']);
    assert.equal(viaProxy.headers['x-etcd-cluster-id'], clusterId);
    assert.equal(String(viaProxy.headers['x-etcd-index']), String((viaProxy.json() as EtcdError).index));
  }
});
