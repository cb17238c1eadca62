/**
 * etcd v3 clients over TLS through an https:// listener (HTTP/2 chosen by
 * ALPN `h2`), forwarded over TLS to a real etcd member that asks every
 * client for a certificate. The certificates are made by openssl in a
 * temporary directory (tls-certs.ts).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { V3_REFUSAL_MESSAGE } from '../../src/index.js';
import { cleanup, eventually, onCleanup, proxy, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';
import type { TlsFixture } from './tls-certs.js';
import { ctl3, etcdGrpc, grpc, tlsMember, unary } from './grpc-client.js';

/** One HTTPS request with the client certificate; resolves with the status and body (5 s bound). */
function httpsGet(url: string, certs: TlsFixture, method = 'GET', body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method,
        agent: false,
        timeout: 5000,
        ca: readFileSync(certs.ca),
        cert: readFileSync(certs.client.cert),
        key: readFileSync(certs.client.key),
        headers: body === undefined ? {} : { 'Content-Type': 'application/x-www-form-urlencoded' },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: text }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
    req.on('error', reject);
    req.end(body);
  });
}

describe('etcd v3 clients over TLS: ALPN h2 on an https listener, TLS to the member', { skip: skipWithoutEtcd }, () => {
  let certs: TlsFixture;
  let m: LocalEtcd;
  let tlsArgs: string[];
  let p: Awaited<ReturnType<typeof proxy>>;

  before(async () => {
    ({ certs, m, tlsArgs } = await tlsMember('etcd-v2-proxy-grpc-tls-'));
    p = await proxy({
      listenClientUrls: ['https://127.0.0.1:0'],
      initialCluster: `${m.name}=${m.peerUrl}`,
      dataDir: await tempDir(),
      certFile: certs.server.cert,
      keyFile: certs.server.key,
      trustedCaFile: certs.ca,
      clientCertAuth: true,
      peerCertFile: certs.client.cert,
      peerKeyFile: certs.client.key,
      peerTrustedCaFile: certs.ca,
    });
  });
  after(cleanup);

  it('etcdctl v3 --insecure-transport=false: put, get, del, member list and endpoint status through the https listener', async () => {
    assert.match(p.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal((await ctl3(p.url, [...tlsArgs, 'put', 'tls/k', 'secret'])).stdout, 'OK\n');
    assert.equal((await ctl3(m.clientUrl, [...tlsArgs, 'get', 'tls/k', '--print-value-only'])).stdout, 'secret\n');
    assert.equal((await ctl3(p.url, [...tlsArgs, 'get', 'tls/', '--prefix'])).stdout, 'tls/k\nsecret\n');
    const list = await ctl3(p.url, [...tlsArgs, 'member', 'list']);
    assert.match(list.stdout, new RegExp(`, started, ${m.name}, ${m.peerUrl}, ${m.clientUrl}, false`), list.stderr);
    const hostPort = new URL(p.url).host;
    const status = await ctl3(hostPort, [...tlsArgs, 'endpoint', 'status']);
    assert.match(status.stdout, new RegExp(`^${hostPort}, [0-9a-f]+, 3\\.`), status.stderr);
    assert.equal((await ctl3(p.url, [...tlsArgs, 'del', 'tls/k'])).stdout, '1\n');
  });

  // The h2c listener kept such connections (grpc-client-exits.test.ts); TLS ones were closed: kept so.
  it('etcdctl runs leave no connection behind on the https listener either', async () => {
    const connections = (): Promise<number> =>
      new Promise((resolve, reject) => p.servers[0]!.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    const open = await connections();
    for (let i = 0; i < 3; i++) assert.equal((await ctl3(p.url, [...tlsArgs, 'put', 'tls/exits', String(i)])).code, 0);
    await eventually(async () => (await connections()) === open, 5000, 'every etcdctl connection to be closed');
  });

  it('without a client certificate the TLS handshake is refused, v3 as v2', async () => {
    const res = await ctl3(p.url, ['--insecure-transport=false', `--cacert=${certs.ca}`, 'get', 'tls/k']);
    assert.notEqual(res.code, 0);
  });

  it('the etcd3 client over TLS, and v2 over HTTPS on the same port at the same time', async () => {
    const client = new Etcd3({
      hosts: p.url,
      credentials: { rootCertificate: readFileSync(certs.ca), certChain: readFileSync(certs.client.cert), privateKey: readFileSync(certs.client.key) },
    });
    onCleanup(() => client.close());
    const watcher = await client.watch().key('tls/w').create();
    const seen: string[] = [];
    watcher.on('put', (kv) => seen.push(kv.value.toString()));
    // Before the client closes (clean-up runs newest first): etcd3 re-opens a closed client's watches forever.
    onCleanup(() => watcher.cancel());
    const v3 = (async () => {
      for (let i = 0; i < 20; i++) await client.put('tls/w').value(String(i));
    })();
    const v2 = (async () => {
      for (let i = 0; i < 20; i++) {
        const put = await httpsGet(`${p.url}/v2/keys/tls/v2`, certs, 'PUT', `value=${i}`);
        assert.ok(put.status === 200 || put.status === 201, put.body);
      }
    })();
    await Promise.all([v3, v2]);
    await eventually(() => seen.length === 20, 5000, '20 watch events over TLS');
    assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => String(i)));
    assert.match((await httpsGet(`${p.url}/v2/keys/tls/v2`, certs)).body, /"value":"19"/);
  });

  it("with v3Clients: 'refuse', a TLS v3 client is told why at once", async () => {
    const q = await proxy({
      listenClientUrls: ['https://127.0.0.1:0'],
      initialCluster: `${m.name}=${m.peerUrl}`,
      certFile: certs.server.cert,
      keyFile: certs.server.key,
      peerCertFile: certs.client.cert,
      peerKeyFile: certs.client.key,
      peerTrustedCaFile: certs.ca,
      v3Clients: 'refuse',
    });
    const g = etcdGrpc(q.url, { ca: readFileSync(certs.ca) });
    onCleanup(() => g.close());
    const res = await unary(g.kv, 'Range', { key: Buffer.from('tls/k') });
    assert.equal(res.ok, false);
    if (!res.ok) {
      assert.equal(res.error.code, grpc.status.UNIMPLEMENTED);
      assert.equal(res.error.details, V3_REFUSAL_MESSAGE);
    }
  });
});
