/**
 * `--client-cert-auth` with `--backend v3`: with v2 auth enabled, a request
 * over an https:// listener that carries no Authorization header is made by
 * the user its client certificate names (its common name), as on an etcd
 * v2 member with `--client-cert-auth`. createProxy did not pass the setting
 * to the v3 backend, so such a request was the guest's (found in review).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { after, before, describe, test } from 'node:test';
import { cleanup, member, proxy, skipWithoutEtcd, tempDir } from './harness.js';
import { makeTlsFixture } from './tls-certs.js';
import type { TlsFixture } from './tls-certs.js';

describe('v3 mode over https with --client-cert-auth: the certificate names the v2 user', { skip: skipWithoutEtcd }, () => {
  let certs: TlsFixture;
  let url: string;
  /** One request with the client certificate (CN=etcd-test-client) and, when given, Basic credentials. */
  const send = (path: string, o: { method?: string; body?: string; basic?: string } = {}): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const headers: Record<string, string> = {};
      if (o.body !== undefined) headers['Content-Type'] = 'application/json';
      if (o.basic !== undefined) headers.Authorization = `Basic ${Buffer.from(o.basic).toString('base64')}`;
      const req = httpsRequest(
        `${url}${path}`,
        { method: o.method ?? 'GET', agent: false, timeout: 10000, headers, ca: readFileSync(certs.ca), cert: readFileSync(certs.client.cert), key: readFileSync(certs.client.key) },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode!, body: text }));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${path}: no answer within 10 s`)));
      req.on('error', reject);
      req.end(o.body);
    });

  before(async () => {
    certs = await makeTlsFixture(await tempDir());
    const m = await member({ enableV2: false });
    const p = await proxy({
      backend: 'v3',
      initialCluster: `${m.name}=${m.peerUrl}`,
      dataDir: await tempDir(),
      listenClientUrls: ['https://127.0.0.1:0'],
      certFile: certs.server.cert,
      keyFile: certs.server.key,
      trustedCaFile: certs.ca,
      clientCertAuth: true,
    });
    url = p.url;
  });
  after(cleanup);

  test('a request without credentials is the certificate\'s user, not the guest', async () => {
    const root = 'root:rootpw';
    assert.equal((await send('/v2/auth/users/root', { method: 'PUT', body: JSON.stringify({ user: 'root', password: 'rootpw' }) })).status, 201);
    assert.equal((await send('/v2/auth/enable', { method: 'PUT' })).status, 200);
    const role = { role: 'app', permissions: { kv: { read: ['/app/*'], write: ['/app/*'] } } };
    assert.equal((await send('/v2/auth/roles/app', { method: 'PUT', body: JSON.stringify(role), basic: root })).status, 201);
    assert.equal((await send('/v2/auth/users/etcd-test-client', { method: 'PUT', body: JSON.stringify({ user: 'etcd-test-client', password: 'unused' }), basic: root })).status, 201);
    assert.equal((await send('/v2/auth/users/etcd-test-client', { method: 'PUT', body: JSON.stringify({ user: 'etcd-test-client', grant: ['app'] }), basic: root })).status, 200);
    const revoke = { role: 'guest', revoke: { kv: { read: ['/*'], write: ['/*'] } } };
    assert.equal((await send('/v2/auth/roles/guest', { method: 'PUT', body: JSON.stringify(revoke), basic: root })).status, 200);
    try {
      const inside = await send('/v2/keys/app/x?value=1', { method: 'PUT' });
      assert.equal(inside.status, 201, inside.body);
      assert.equal((await send('/v2/keys/app/x')).status, 200);
      const outside = await send('/v2/keys/other');
      assert.equal(outside.status, 401, 'the certificate user has no right outside /app');
      assert.equal((JSON.parse(outside.body) as { errorCode: number }).errorCode, 110);
    } finally {
      assert.equal((await send('/v2/auth/enable', { method: 'DELETE', basic: root })).status, 200);
    }
  });
});
