/**
 * V2ProxyHandler embedded without createProxy: `http.createServer(handler.handle)`
 * on 127.0.0.1, fed by an EndpointBalancer the test builds (and, for the
 * 502 case, a ClusterResolver asking real members).
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { waitHealthy } from '../../examples/local-etcd.js';
import { ClusterResolver, EndpointBalancer, UpstreamError, V2ProxyHandler } from '../../src/index.js';
import type { Endpoint, EndpointBalancerOptions, V2ProxyHandlerOptions } from '../../src/index.js';
import {
  cleanup,
  form,
  freePort,
  http,
  member,
  onCleanup,
  pipelineReadsUnderTest,
  proxy,
  serveHandler,
  skipWithoutEtcd,
  tempDir,
} from './harness.js';
import type { LocalEtcd, RawResponse } from './harness.js';

/** A balancer, a handler over it and a server for it. */
async function embed(
  endpoints: readonly string[] | undefined,
  options: Omit<V2ProxyHandlerOptions, 'balancer'> = {},
  balancerOptions: EndpointBalancerOptions = {},
): Promise<{ url: string; balancer: EndpointBalancer; handler: V2ProxyHandler }> {
  const balancer = new EndpointBalancer(endpoints === undefined ? balancerOptions : { ...balancerOptions, endpoints });
  const handler = new V2ProxyHandler({ balancer, ...pipelineReadsUnderTest, ...options });
  return { url: await serveHandler(handler, balancer), balancer, handler };
}

/** A client URL on 127.0.0.1 that nothing listens on (connections are refused). */
async function deadUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}

function message(res: RawResponse): string {
  assert.equal(res.headers['content-type'], 'application/json');
  return (res.json() as { message: string }).message;
}

describe('V2ProxyHandler embedded in a plain node:http server', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;

  before(async () => {
    m = await member();
  });
  after(cleanup);

  /** The member's X-Etcd-Index, read directly: it goes up by one per write. */
  async function etcdIndex(): Promise<number> {
    return Number((await http(`${m.clientUrl}/v2/keys/`)).headers['x-etcd-index']);
  }

  describe('GET /v2/config/local/proxy', () => {
    it('createProxy answers it itself with the available client URLs', async () => {
      const p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() });
      const res = await http(`${p.url}/v2/config/local/proxy`);
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-type'], 'application/json');
      assert.deepEqual(res.json(), { endpoints: [m.clientUrl] });
      // Not etcd's answer (a member does not serve this path).
      assert.equal(res.headers['x-etcd-cluster-id'], undefined);
      assert.equal((await http(`${m.clientUrl}/v2/config/local/proxy`)).status, 404);

      const withQuery = await http(`${p.url}/v2/config/local/proxy?pretty=true`);
      assert.deepEqual(withQuery.json(), { endpoints: [m.clientUrl] });
      const head = await http(`${p.url}/v2/config/local/proxy`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.body, '');
    });

    for (const method of ['PUT', 'POST', 'DELETE']) {
      it(`${method} gets 405 with an Allow header`, async () => {
        const { url } = await embed([m.clientUrl]);
        const res = await http(`${url}/v2/config/local/proxy`, { method, body: method === 'DELETE' ? undefined : form({ value: 'x' }) });
        assert.equal(res.status, 405);
        assert.equal(res.headers.allow, 'GET, HEAD');
      });
    }

    it('lists only the endpoints not within their failureWait', async () => {
      const dead = await deadUrl();
      const { url, balancer } = await embed([dead, m.clientUrl]);
      assert.deepEqual(((await http(`${url}/v2/config/local/proxy`)).json() as { endpoints: string[] }).endpoints.sort(), [dead, m.clientUrl].sort());
      balancer.reportFailure(balancer.endpoints.find((e) => e.url === dead)!, new Error('test: marked down'));
      assert.deepEqual((await http(`${url}/v2/config/local/proxy`)).json(), { endpoints: [m.clientUrl] });
    });
  });

  it('a 1 MiB value read by a slow client arrives whole; the proxy holds back instead of buffering it all', { timeout: 30000 }, async () => {
    const { url } = await embed([m.clientUrl]);
    const value = Array.from({ length: 1024 * 1024 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
    assert.equal((await http(`${m.clientUrl}/v2/keys/slow-reader`, { method: 'PUT', body: form({ value }) })).status, 201);
    const received = await new Promise<{ body: string; pausedMs: number }>((resolve, reject) => {
      const req = httpRequest(`${url}/v2/keys/slow-reader`, (res) => {
        const chunks: Buffer[] = [];
        let pausedMs = 0;
        res.once('data', (first: Buffer) => {
          chunks.push(first);
          // Stop reading for a while: the socket buffers fill, the proxy must pause its read from etcd.
          res.pause();
          const t = Date.now();
          setTimeout(() => {
            pausedMs = Date.now() - t;
            res.on('data', (c: Buffer) => chunks.push(c));
            res.resume();
          }, 300);
        });
        res.on('end', () => resolve({ body: Buffer.concat(chunks).toString(), pausedMs }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    assert.ok(received.pausedMs >= 250);
    const node = (JSON.parse(received.body) as { node: { value: string } }).node;
    assert.equal(node.value.length, value.length);
    assert.equal(node.value, value);
  });

  it('a request whose body is still arriving at close() is answered 503 and never forwarded', async () => {
    const { url, handler } = await embed([m.clientUrl]);
    const before = await etcdIndex();
    const { port } = new URL(url);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(port), '127.0.0.1');
      let got = '';
      socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
      socket.on('close', () => resolve(got));
      socket.on('error', reject);
      socket.write('PUT /v2/keys/after-close HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\nval');
      setTimeout(() => {
        handler.close();
        socket.write('ue=1');
      }, 100);
      setTimeout(() => socket.destroy(), 3000);
    });
    assert.match(answer, /^HTTP\/1\.1 503 /);
    assert.match(answer, /proxy is shutting down/);
    assert.equal(handler.inFlight, 0);
    assert.equal((await http(`${m.clientUrl}/v2/keys/after-close`)).status, 404);
    assert.equal(await etcdIndex(), before);
  });

  it('503 "zero endpoints" while the balancer knows no endpoint (an embedder before the resolver answered)', async () => {
    const { url, handler } = await embed(undefined);
    for (const [method, body] of [['GET', undefined], ['PUT', form({ value: 'x' })]] as const) {
      const res = await http(`${url}/v2/keys/zero`, { method, ...(body !== undefined ? { body } : {}) });
      assert.equal(res.status, 503, `${method}: ${res.body}`);
      assert.deepEqual(res.json(), { message: 'httpproxy: zero endpoints currently available' });
      assert.equal(res.headers['content-type'], 'application/json');
    }
    assert.equal(handler.inFlight, 0);
    assert.equal((await http(`${m.clientUrl}/v2/keys/zero`)).status, 404);
  });

  it('502 "unable to get response from 2 endpoint(s)" when every member advertises a client URL nobody listens on', async () => {
    // Two real members of one cluster whose advertised client URLs are closed ports.
    const ports = await Promise.all([0, 1].map(async (i) => ({ name: `dead${i}`, clientPort: await freePort(), peerPort: await freePort(), advertised: await deadUrl() })));
    const initialCluster = ports.map((x) => `${x.name}=http://127.0.0.1:${x.peerPort}`).join(',');
    const members = await Promise.all(
      ports.map((x) =>
        member({
          name: x.name,
          clientPort: x.clientPort,
          peerPort: x.peerPort,
          initialCluster,
          advertiseClientUrl: x.advertised,
          waitHealthy: false,
          // One token for the whole cluster (the helper derives one per member name).
          extraArgs: ['--initial-cluster-token', 'handler-test-dead-clients'],
        }),
      ),
    );
    await Promise.all(members.map((x) => waitHealthy(x.clientUrl, 20000)));

    const resolver = new ClusterResolver({ initialCluster, startTimeout: 10000 });
    onCleanup(() => resolver.close());
    const balancer = new EndpointBalancer();
    resolver.on('members', (snapshot) => balancer.setEndpoints(snapshot.clientUrls));
    const handler = new V2ProxyHandler({ balancer });
    const url = await serveHandler(handler, balancer);
    await resolver.start();
    const advertised = ports.map((x) => x.advertised).sort();
    assert.deepEqual(balancer.endpoints.map((e) => e.url).sort(), advertised);

    const downs: Array<{ url: string; reason: Error }> = [];
    balancer.on('endpointDown', (e: Endpoint, reason: Error) => downs.push({ url: e.url, reason }));

    const get = await http(`${url}/v2/keys/foo`);
    assert.equal(get.status, 502, get.body);
    assert.equal(message(get), 'httpproxy: unable to get response from 2 endpoint(s)');
    assert.deepEqual(downs.map((d) => d.url).sort(), advertised);
    for (const d of downs) {
      assert.ok(d.reason instanceof UpstreamError, String(d.reason));
      assert.equal(d.reason.phase, 'connect');
    }
    assert.deepEqual(balancer.available, []);

    // A write cannot have reached etcd either: it is tried on both, then 502.
    const put = await http(`${url}/v2/keys/foo`, { method: 'PUT', body: form({ value: 'bar' }) });
    assert.equal(put.status, 502, put.body);
    assert.equal(message(put), 'httpproxy: unable to get response from 2 endpoint(s)');
    assert.equal((await http(`${members[0]!.clientUrl}/v2/keys/foo`)).status, 404);
    assert.equal(handler.inFlight, 0);
  });

  describe('a write to an endpoint that refuses connections moves on to the next one', () => {
    for (const first of ['dead', 'live'] as const) {
      for (const method of ['PUT', 'POST'] as const) {
        it(`${method}, ${first} endpoint first: answered by etcd and written exactly once`, async () => {
          const dead = await deadUrl();
          // etcd's first-available order, without leader routing, makes the first endpoint tried predictable.
          const { url, balancer } = await embed([dead, m.clientUrl], {}, { strategy: 'first-available', leaderWrites: false });
          // setEndpoints shuffles: reshuffle until the order under test comes up.
          const want = first === 'dead' ? dead : m.clientUrl;
          for (let i = 0; i < 200 && balancer.order()[0]!.url !== want; i++) balancer.setEndpoints([dead, m.clientUrl]);
          assert.equal(balancer.order()[0]!.url, want);
          const downs: string[] = [];
          balancer.on('endpointDown', (e) => downs.push(e.url));

          const key = `moved-${method.toLowerCase()}-${first}`;
          const before = await etcdIndex();
          const res = await http(`${url}/v2/keys/${key}`, { method, body: form({ value: 'v' }) });
          assert.equal(res.status, 201, res.body);
          assert.match(String(res.headers['x-etcd-cluster-id']), /^[0-9a-f]+$/);
          assert.equal(await etcdIndex(), before + 1, 'exactly one write reached etcd');

          const stored = await http(`${m.clientUrl}/v2/keys/${key}`);
          assert.equal(stored.status, 200);
          const node = (stored.json() as { node: { value?: string; nodes?: Array<{ value: string }> } }).node;
          if (method === 'PUT') assert.equal(node.value, 'v');
          else assert.deepEqual(node.nodes?.map((n) => n.value), ['v']);
          assert.deepEqual(downs, first === 'dead' ? [dead] : []);
        });
      }
    }
  });

  it('each etcd header reaches the client once (no duplicated Date or Access-Control-* headers)', async () => {
    const { url } = await embed([m.clientUrl]);
    await http(`${m.clientUrl}/v2/keys/hdr`, { method: 'PUT', body: form({ value: 'h' }) });
    const cases: Array<{ path: string; method?: string; body?: string; status: number }> = [
      { path: '/v2/keys/hdr', status: 200 },
      { path: '/v2/keys/hdr', method: 'HEAD', status: 200 },
      { path: '/v2/keys/absent', status: 404 },
      { path: '/v2/keys/hdr', method: 'PUT', body: form({ value: 'h2' }), status: 200 },
      { path: '/v2/keys/hdr?wait=true&waitIndex=1', status: 200 },
    ];
    for (const c of cases) {
      const init = { ...(c.method !== undefined ? { method: c.method } : {}), ...(c.body !== undefined ? { body: c.body } : {}) };
      const viaProxy = await http(`${url}${c.path}`, init);
      assert.equal(viaProxy.status, c.status, `${c.method ?? 'GET'} ${c.path}`);
      const names = viaProxy.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      const counts = new Map<string, number>();
      for (const n of names) counts.set(n, (counts.get(n) ?? 0) + 1);
      const repeated = [...counts].filter(([, n]) => n > 1).map(([name]) => name);
      assert.deepEqual(repeated, [], `${c.method ?? 'GET'} ${c.path} repeated headers: ${JSON.stringify(viaProxy.rawHeaders)}`);
      for (const name of ['date', 'access-control-allow-origin', 'access-control-allow-methods', 'access-control-allow-headers', 'x-etcd-cluster-id']) {
        assert.equal(counts.get(name), 1, `${c.method ?? 'GET'} ${c.path}: ${name}`);
      }
      if (c.method !== 'PUT' && c.method !== 'HEAD') {
        // Every header etcd sent for the same request is there (hop-by-hop ones aside).
        const direct = await http(`${m.clientUrl}${c.path}`, init);
        const directNames = direct.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
        for (const n of directNames) if (n !== 'connection' && n !== 'transfer-encoding') assert.ok(counts.has(n), `missing ${n}`);
        assert.equal(viaProxy.headers['x-etcd-index'], direct.headers['x-etcd-index']);
      }
    }
  });

  describe('maxBodyBytes', () => {
    it('a body over the limit gets 413 and is not forwarded (Content-Length declared)', async () => {
      const { url, handler } = await embed([m.clientUrl], { maxBodyBytes: 1024 });
      assert.equal(handler.maxBodyBytes, 1024);
      const before = await etcdIndex();
      const res = await http(`${url}/v2/keys/big`, { method: 'PUT', body: form({ value: 'x'.repeat(2000) }) });
      assert.equal(res.status, 413);
      assert.equal(message(res), 'httpproxy: request body larger than 1024 bytes');
      assert.equal((await http(`${m.clientUrl}/v2/keys/big`)).status, 404);
      assert.equal(await etcdIndex(), before);

      const small = await http(`${url}/v2/keys/big`, { method: 'PUT', body: form({ value: 'x'.repeat(1000) }) });
      assert.equal(small.status, 201, small.body);
    });

    it('a chunked body that grows over the limit gets 413 and is not forwarded', async () => {
      const { url } = await embed([m.clientUrl], { maxBodyBytes: 1024 });
      const before = await etcdIndex();
      const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequest(`${url}/v2/keys/chunked`, {
          method: 'PUT',
          agent: false,
          timeout: 5000,
          headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Transfer-Encoding': 'chunked' },
        });
        req.once('response', (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.once('end', () => {
            resolve({ status: res.statusCode!, body });
            req.destroy();
          });
        });
        req.once('timeout', () => req.destroy(new Error('no answer within 5000 ms')));
        req.on('error', (err) => reject(err));
        // Over the limit after the second chunk; the request is not ended: the proxy answers without waiting for the rest.
        req.write(`value=${'y'.repeat(700)}`);
        setTimeout(() => req.write('y'.repeat(700)), 50);
      });
      assert.equal(answer.status, 413);
      assert.deepEqual(JSON.parse(answer.body), { message: 'httpproxy: request body larger than 1024 bytes' });
      assert.equal((await http(`${m.clientUrl}/v2/keys/chunked`)).status, 404);
      assert.equal(await etcdIndex(), before);
    });
  });
});
