/**
 * `mode: 'readonly'` (etcd `--proxy readonly`): reads pass, every other
 * method is answered 501 with an empty body and never reaches etcd.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, form, http, member, proxy, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';

describe('readonly proxy', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  let p: Awaited<ReturnType<typeof proxy>>;
  /** X-Etcd-Index of the member after the seed writes: any write through the proxy would bump it. */
  let seededIndex: string;

  before(async () => {
    m = await member();
    p = await proxy({ mode: 'readonly', initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() });
    assert.equal(p.handler.mode, 'readonly');
    const seed = await http(`${m.clientUrl}/v2/keys/ro/key`, { method: 'PUT', body: form({ value: 'original' }) });
    assert.equal(seed.status, 201, seed.body);
    seededIndex = String(seed.headers['x-etcd-index']);
  });
  after(cleanup);

  /** The member's own view of /ro/key and its index, read directly. */
  async function memberState(): Promise<{ value: string | undefined; index: string; children: number }> {
    const key = await http(`${m.clientUrl}/v2/keys/ro/key`);
    const dir = await http(`${m.clientUrl}/v2/keys/ro`);
    const nodes = (dir.json() as { node: { nodes?: unknown[] } }).node.nodes ?? [];
    return {
      value: key.status === 200 ? (key.json() as { node: { value: string } }).node.value : undefined,
      index: String(key.headers['x-etcd-index']),
      children: nodes.length,
    };
  }

  const refused: Array<{ method: string; path: string; body?: string }> = [
    { method: 'PUT', path: '/v2/keys/ro/key', body: form({ value: 'changed' }) },
    { method: 'PUT', path: '/v2/keys/ro/other', body: form({ value: 'new' }) },
    { method: 'POST', path: '/v2/keys/ro', body: form({ value: 'queued' }) },
    { method: 'DELETE', path: '/v2/keys/ro/key' },
    { method: 'DELETE', path: '/v2/keys/ro?recursive=true' },
    { method: 'PATCH', path: '/v2/keys/ro/key', body: form({ value: 'patched' }) },
    { method: 'OPTIONS', path: '/v2/keys/ro/key' },
  ];
  for (const r of refused) {
    it(`${r.method} ${r.path} answers 501 with an empty body and changes nothing on the member`, async () => {
      const res = await http(`${p.url}${r.path}`, { method: r.method, ...(r.body !== undefined ? { body: r.body } : {}) });
      assert.equal(res.status, 501);
      assert.equal(res.body, '');
      assert.equal(res.headers['content-length'], '0');
      // Nothing from etcd: the request never reached it.
      assert.equal(res.headers['x-etcd-index'], undefined);
      assert.equal(res.headers['x-etcd-cluster-id'], undefined);
      assert.equal(p.handler.inFlight, 0);
      assert.deepEqual(await memberState(), { value: 'original', index: seededIndex, children: 1 });
    });
  }

  it('GET passes and returns etcd\'s answer', async () => {
    const viaProxy = await http(`${p.url}/v2/keys/ro/key`);
    const direct = await http(`${m.clientUrl}/v2/keys/ro/key`);
    assert.equal(viaProxy.status, 200);
    assert.equal((viaProxy.json() as { node: { value: string } }).node.value, 'original');
    assert.deepEqual(viaProxy.json(), direct.json());
    assert.equal(viaProxy.headers['x-etcd-index'], seededIndex);
    assert.equal(viaProxy.headers['x-etcd-cluster-id'], direct.headers['x-etcd-cluster-id']);

    const missing = await http(`${p.url}/v2/keys/ro/absent`);
    assert.equal(missing.status, 404);
    assert.equal((missing.json() as { errorCode: number }).errorCode, 100);
  });

  it('HEAD passes: etcd\'s status and headers, no body', async () => {
    const viaProxy = await http(`${p.url}/v2/keys/ro/key`, { method: 'HEAD' });
    const direct = await http(`${m.clientUrl}/v2/keys/ro/key`, { method: 'HEAD' });
    assert.equal(viaProxy.status, 200);
    assert.equal(viaProxy.body, '');
    assert.equal(viaProxy.headers['x-etcd-index'], seededIndex);
    assert.match(String(viaProxy.headers['x-etcd-cluster-id']), /^[0-9a-f]+$/);
    assert.equal(viaProxy.headers['x-etcd-cluster-id'], direct.headers['x-etcd-cluster-id']);
    assert.equal(viaProxy.headers['content-type'], 'application/json');
    assert.equal(viaProxy.headers['content-length'], direct.headers['content-length']);

    const missing = await http(`${p.url}/v2/keys/ro/absent`, { method: 'HEAD' });
    assert.equal(missing.status, 404);
    assert.equal(missing.body, '');
  });

  it('the member is still writable directly: only the proxy refuses writes', async () => {
    const res = await http(`${m.clientUrl}/v2/keys/ro/direct`, { method: 'PUT', body: form({ value: 'ok' }) });
    assert.equal(res.status, 201);
    const viaProxy = await http(`${p.url}/v2/keys/ro/direct`);
    assert.equal((viaProxy.json() as { node: { value: string } }).node.value, 'ok');
  });
});
