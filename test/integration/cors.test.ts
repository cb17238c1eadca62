/**
 * CORS (`cors`, etcd's `--cors`) through the proxy to a real member, whose
 * own default is to allow any origin (`--cors '*'`): etcd's proxy adds its
 * CORS headers on top of the member's and sends each twice; here each is sent
 * once, preflights are answered by the proxy, readonly ones too.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, form, http, member, proxy, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd, RawResponse } from './harness.js';

const CORS_HEADERS = ['access-control-allow-methods', 'access-control-allow-origin', 'access-control-allow-headers'];

/** How many times each CORS header appears in the raw response. */
function corsCounts(res: RawResponse): Record<string, number> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < res.rawHeaders.length; i += 2) {
    const name = res.rawHeaders[i]!.toLowerCase();
    if (name.startsWith('access-control-')) counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

const once = Object.fromEntries(CORS_HEADERS.map((h) => [h, 1]));
const preflight = { Origin: 'https://app.example', 'Access-Control-Request-Method': 'PUT', 'Access-Control-Request-Headers': 'content-type' };

describe('CORS', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  let cluster: string;
  before(async () => {
    m = await member();
    cluster = `${m.name}=${m.peerUrl}`;
    assert.equal((await http(`${m.clientUrl}/v2/keys/cors/k`, { method: 'PUT', body: form({ value: 'v' }) })).status, 201);
  });
  after(cleanup);

  it('without cors set, the member\'s Access-Control-* headers pass through untouched, once each (today\'s behaviour)', async () => {
    const p = await proxy({ initialCluster: cluster, dataDir: await tempDir() });
    const headers = { Origin: 'https://app.example' };
    const direct = await http(`${m.clientUrl}/v2/keys/cors/k`, { headers });
    const viaProxy = await http(`${p.url}/v2/keys/cors/k`, { headers });
    assert.deepEqual(corsCounts(direct), once, 'the member sends its own');
    assert.deepEqual(corsCounts(viaProxy), once);
    for (const h of CORS_HEADERS) assert.equal(viaProxy.headers[h], direct.headers[h]);
    // A preflight goes to the member, which answers it.
    const options = await http(`${p.url}/v2/keys/cors/k`, { method: 'OPTIONS', headers: preflight });
    assert.equal(options.status, 200);
    assert.deepEqual(corsCounts(options), once);
  });

  describe('cors "*"', () => {
    let p: Awaited<ReturnType<typeof proxy>>;
    let forwarded = 0;
    before(async () => {
      p = await proxy({ initialCluster: cluster, dataDir: await tempDir(), cors: '*' });
      p.handler.on('forwarded', () => forwarded++);
    });

    it('each CORS header once, with etcd\'s values, on forwarded answers (the member\'s are replaced)', async () => {
      for (const headers of [{ Origin: 'https://app.example' }, {}] as Array<Record<string, string>>) {
        const res = await http(`${p.url}/v2/keys/cors/k`, { headers });
        assert.equal(res.status, 200);
        assert.ok(res.headers['x-etcd-index'] !== undefined, 'a member answered');
        assert.deepEqual(corsCounts(res), once);
        assert.equal(res.headers['access-control-allow-origin'], '*');
        assert.equal(res.headers['access-control-allow-methods'], 'POST, GET, OPTIONS, PUT, DELETE');
        assert.equal(res.headers['access-control-allow-headers'], 'accept, content-type, authorization');
      }
      const missing = await http(`${p.url}/v2/keys/cors/absent`, { headers: { Origin: 'https://app.example' } });
      assert.equal(missing.status, 404);
      assert.deepEqual(corsCounts(missing), once);
      // Writes and HEADs too (createProxy's own reader forwards them; the headers are added to its writer's head).
      const answers = [
        await http(`${p.url}/v2/keys/cors/w`, { method: 'PUT', body: form({ value: 'w' }), headers: { Origin: 'https://app.example' } }),
        await http(`${p.url}/v2/keys/cors/w`, { method: 'HEAD' }),
        await http(`${p.url}/v2/keys/cors/w`, { method: 'DELETE' }),
      ];
      assert.deepEqual(answers.map((r) => r.status), [201, 200, 200]);
      for (const res of answers) {
        assert.deepEqual(corsCounts(res), once);
        assert.equal(res.headers['access-control-allow-origin'], '*');
      }
    });

    it('and on the proxy\'s own answers', async () => {
      const config = await http(`${p.url}/v2/config/local/proxy`, { headers: { Origin: 'https://app.example' } });
      assert.equal(config.status, 200);
      assert.deepEqual(corsCounts(config), once);
      // Its 405s too, with Go's http.Error nosniff header (etcd's own 405s carry it).
      for (const path of ['/v2/config/local/proxy', '/proxy/ready']) {
        const refused = await http(`${p.url}${path}`, { method: 'DELETE', headers: { Origin: 'https://app.example' } });
        assert.equal(refused.status, 405, path);
        assert.deepEqual(corsCounts(refused), once, path);
        assert.equal(refused.headers['x-content-type-options'], 'nosniff', path);
      }
      // /metrics is served beside the proxy, outside its CORS, as etcd's proxy serves it.
      const metrics = await http(`${p.url}/metrics`, { method: 'DELETE', headers: { Origin: 'https://app.example' } });
      assert.equal(metrics.status, 405);
      assert.equal(metrics.headers['x-content-type-options'], 'nosniff');
      assert.deepEqual(corsCounts(metrics), {});
    });

    it('a preflight OPTIONS is answered 200 by the proxy itself, never forwarded', async () => {
      const before = forwarded;
      const res = await http(`${p.url}/v2/keys/cors/k`, { method: 'OPTIONS', headers: preflight });
      assert.equal(res.status, 200);
      assert.equal(res.body, '');
      assert.deepEqual(corsCounts(res), once);
      assert.equal(res.headers['x-etcd-index'], undefined);
      assert.equal(forwarded, before);
    });
  });

  it('a list of origins: an allowed one is echoed (Vary: Origin); any other gets no Access-Control-* at all, not even the member\'s', async () => {
    const p = await proxy({ initialCluster: cluster, dataDir: await tempDir(), cors: 'https://app.example, http://tool.example:8080' });
    const allowed = await http(`${p.url}/v2/keys/cors/k`, { headers: { Origin: 'http://tool.example:8080' } });
    assert.deepEqual(corsCounts(allowed), once);
    assert.equal(allowed.headers['access-control-allow-origin'], 'http://tool.example:8080');
    assert.equal(allowed.headers.vary, 'Origin');
    const other = await http(`${p.url}/v2/keys/cors/k`, { headers: { Origin: 'https://evil.example' } });
    assert.equal(other.status, 200);
    assert.deepEqual(corsCounts(other), {});
    assert.equal(other.headers.vary, 'Origin');
    const refusedPreflight = await http(`${p.url}/v2/keys/cors/k`, { method: 'OPTIONS', headers: { ...preflight, Origin: 'https://evil.example' } });
    assert.equal(refusedPreflight.status, 200);
    assert.deepEqual(corsCounts(refusedPreflight), {}, 'the browser refuses the cross-origin request');
  });

  it('readonly with cors: preflights are answered, writes still get 501 (with CORS headers, so a page can read why)', async () => {
    const p = await proxy({ mode: 'readonly', initialCluster: cluster, dataDir: await tempDir(), cors: 'https://app.example' });
    const pre = await http(`${p.url}/v2/keys/cors/k`, { method: 'OPTIONS', headers: preflight });
    assert.equal(pre.status, 200);
    assert.equal(pre.headers['access-control-allow-origin'], 'https://app.example');
    const put = await http(`${p.url}/v2/keys/cors/k`, { method: 'PUT', body: form({ value: 'x' }), headers: { Origin: 'https://app.example' } });
    assert.equal(put.status, 501);
    assert.deepEqual(corsCounts(put), once);
    assert.equal(((await http(`${m.clientUrl}/v2/keys/cors/k`)).json() as { node: { value: string } }).node.value, 'v');
  });

  it('readonly without cors: a preflight goes through to the member; a plain OPTIONS is still 501', async () => {
    const p = await proxy({ mode: 'readonly', initialCluster: cluster, dataDir: await tempDir() });
    const pre = await http(`${p.url}/v2/keys/cors/k`, { method: 'OPTIONS', headers: preflight });
    assert.equal(pre.status, 200);
    assert.deepEqual(corsCounts(pre), once, 'the member\'s own answer');
    const plain = await http(`${p.url}/v2/keys/cors/k`, { method: 'OPTIONS' });
    assert.equal(plain.status, 501);
  });
});
