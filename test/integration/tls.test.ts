/**
 * TLS both ways against a real 2-member etcd cluster that runs TLS on its
 * client and peer ports and asks every client for a certificate
 * (`--client-cert-auth`, `--peer-client-cert-auth`). The certificates are
 * made by openssl in a temporary directory (tls-certs.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startEtcd } from '../../examples/local-etcd.js';
import { ClusterUnreachableError, createProxy, EndpointBalancer, UpstreamError, V2ProxyHandler } from '../../src/index.js';
import type { CreateProxyOptions, DroppedEvent, RetriedEvent, TlsClientErrorEvent } from '../../src/index.js';
import {
  cleanup,
  etcdctl,
  etcdctlV3,
  form,
  freePort,
  http,
  onCleanup,
  proxy,
  RawConnection,
  serveHandler,
  skipWithoutEtcd,
  tempDir,
} from './harness.js';
import type { LocalEtcd, RawResponse } from './harness.js';
import { makeTlsFixture } from './tls-certs.js';
import type { CertPair, TlsFixture } from './tls-certs.js';

/** One HTTPS request (no pooling), with a CA and optionally a client certificate; bounded by `timeout` ms. */
function tlsHttp(
  url: string,
  options: { ca: string; cert?: CertPair | undefined; method?: string; body?: string; timeout?: number; rejectUnauthorized?: boolean },
): Promise<RawResponse> {
  const { method = 'GET', body, timeout = 10000 } = options;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method,
        agent: false,
        timeout,
        ca: readFileSync(options.ca),
        ...(options.cert === undefined ? {} : { cert: readFileSync(options.cert.cert), key: readFileSync(options.cert.key) }),
        rejectUnauthorized: options.rejectUnauthorized ?? true,
        headers: body === undefined ? {} : { 'Content-Type': 'application/x-www-form-urlencoded' },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body: text, json: () => JSON.parse(text) }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer within ${timeout} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Polls `<clientUrl>/health` over TLS until it says true (30 s bound). */
async function waitHealthyTls(m: LocalEtcd, certs: TlsFixture, rejectUnauthorized = true): Promise<void> {
  const deadline = Date.now() + 30000;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await tlsHttp(`${m.clientUrl}/health`, { ca: certs.ca, cert: certs.client, timeout: 1000, rejectUnauthorized });
      if (res.body.includes('"true"')) return;
      last = res.body;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${m.name} not healthy over TLS within 30 s (last: ${last})\n${m.log().slice(-2000)}`);
}

/** etcd's TLS flags for a member serving `cert` on both ports and asking every client and peer for a certificate signed by the CA. */
function tlsFlags(certs: TlsFixture, cert: CertPair, clientCertAuth: boolean): string[] {
  return [
    '--cert-file', cert.cert, '--key-file', cert.key, '--trusted-ca-file', certs.ca,
    '--peer-cert-file', cert.cert, '--peer-key-file', cert.key, '--peer-trusted-ca-file', certs.ca,
    ...(clientCertAuth ? ['--client-cert-auth', '--peer-client-cert-auth'] : []),
  ];
}

/** `size` TLS members as one new cluster, stopped by cleanup(). */
async function tlsCluster(certs: TlsFixture, size: number): Promise<LocalEtcd[]> {
  const ports: Array<{ name: string; clientPort: number; peerPort: number }> = [];
  for (let i = 0; i < size; i++) ports.push({ name: `tls${i + 1}`, clientPort: await freePort(), peerPort: await freePort() });
  const initialCluster = ports.map((p) => `${p.name}=https://127.0.0.1:${p.peerPort}`).join(',');
  const members = await Promise.all(
    ports.map((p) =>
      startEtcd({ ...p, scheme: 'https', initialCluster, initialClusterToken: `t-tls-${ports[0]!.clientPort}`, waitHealthy: false, extraArgs: tlsFlags(certs, certs.server, true) }),
    ),
  );
  for (const m of members) onCleanup(() => m.stop());
  await Promise.all(members.map((m) => waitHealthyTls(m, certs)));
  return members;
}

describe('TLS both ways against an etcd cluster with TLS on its client and peer ports', { skip: skipWithoutEtcd }, () => {
  let certs: TlsFixture;
  let members: LocalEtcd[];
  let initialCluster: string;
  /** Peer TLS that the members accept. */
  let peerTls: Pick<CreateProxyOptions, 'peerCertFile' | 'peerKeyFile' | 'peerTrustedCaFile'>;

  before(async () => {
    certs = await makeTlsFixture(await tempDir('etcd-v2-proxy-tls-'));
    members = await tlsCluster(certs, 2);
    initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
    peerTls = { peerCertFile: certs.client.cert, peerKeyFile: certs.client.key, peerTrustedCaFile: certs.ca };
  });
  after(cleanup);

  describe('an https listener with client certificate authentication, TLS to peers and to client URLs', () => {
    let p: Awaited<ReturnType<typeof proxy>>;
    const refused: TlsClientErrorEvent[] = [];
    const seen: string[] = [];

    before(async () => {
      p = await proxy({
        listenClientUrls: ['https://127.0.0.1:0'],
        initialCluster,
        dataDir: await tempDir(),
        certFile: certs.server.cert,
        keyFile: certs.server.key,
        trustedCaFile: certs.ca,
        clientCertAuth: true,
        ...peerTls,
      });
      p.on('tlsClientError', (e) => refused.push(e));
      p.handler.on('request', (method, url) => seen.push(`${method} ${url}`));
    });

    it('serves v2 end to end over TLS: writes reach the cluster, reads come back, etcdctl works', async () => {
      assert.match(p.url, /^https:\/\/127\.0\.0\.1:\d+$/);
      const put = await tlsHttp(`${p.url}/v2/keys/tls/e2e`, { ca: certs.ca, cert: certs.client, method: 'PUT', body: form({ value: 'both-ways' }) });
      assert.equal(put.status, 201, put.body);
      // Read from the other member directly: the write went through the cluster.
      for (const m of members) {
        const direct = await tlsHttp(`${m.clientUrl}/v2/keys/tls/e2e?quorum=true`, { ca: certs.ca, cert: certs.client });
        assert.equal((direct.json() as { node: { value: string } }).node.value, 'both-ways');
      }
      const get = await tlsHttp(`${p.url}/v2/keys/tls/e2e`, { ca: certs.ca, cert: certs.client });
      assert.equal(get.status, 200);
      assert.equal((get.json() as { node: { value: string } }).node.value, 'both-ways');
      const config = await tlsHttp(`${p.url}/v2/config/local/proxy`, { ca: certs.ca, cert: certs.client });
      assert.deepEqual((config.json() as { endpoints: string[] }).endpoints.sort(), members.map((m) => m.clientUrl).sort());
      assert.ok(members.every((m) => m.clientUrl.startsWith('https://')));

      const ctl = await etcdctl(p.url, ['--ca-file', certs.ca, '--cert-file', certs.client.cert, '--key-file', certs.client.key, '--no-sync', 'get', '/tls/e2e']);
      assert.equal(ctl.stdout, 'both-ways\n', ctl.stderr);
    });

    it('one TLS connection: keep-alive reads and a watch read by the proxy itself, /metrics handed to node:https in between', async () => {
      const { port } = new URL(p.url);
      const socket = tlsConnect({ host: '127.0.0.1', port: Number(port), ca: readFileSync(certs.ca), cert: readFileSync(certs.client.cert), key: readFileSync(certs.client.key), servername: 'localhost' });
      await new Promise<void>((resolve, reject) => {
        socket.once('secureConnect', resolve);
        socket.once('error', reject);
      });
      const c = new RawConnection(socket);
      onCleanup(() => c.close());
      const get = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: proxy\r\n\r\n`;
      c.write(get('/v2/keys/tls/e2e?quorum=true'));
      const first = await c.read();
      assert.equal(first.status, 200, first.body);
      assert.equal(first.framing, 'length');
      c.write(get('/metrics'));
      assert.match((await c.read()).body, /^etcd_proxy_requests_total\{method="GET"\} \d+$/m);
      c.write(get('/v2/keys/tls/e2e?quorum=true'));
      assert.equal((JSON.parse((await c.read()).body) as { node: { value: string } }).node.value, 'both-ways');
      const fresh = new RawConnection(
        await new Promise((resolve, reject) => {
          const s2 = tlsConnect({ host: '127.0.0.1', port: Number(port), ca: readFileSync(certs.ca), cert: readFileSync(certs.client.cert), key: readFileSync(certs.client.key), servername: 'localhost' }, () => resolve(s2));
          s2.once('error', reject);
        }),
      );
      onCleanup(() => fresh.close());
      fresh.write(get('/v2/keys/tls/watched?wait=true'));
      await new Promise((r) => setTimeout(r, 200));
      const put = await tlsHttp(`${p.url}/v2/keys/tls/watched`, { ca: certs.ca, cert: certs.client, method: 'PUT', body: form({ value: 'seen' }) });
      assert.equal(put.status, 201, put.body);
      const event = await fresh.read();
      assert.equal(event.framing, 'chunked');
      assert.equal((JSON.parse(event.body) as { node: { value: string } }).node.value, 'seen');
    });

    it('etcd v3 clients over TLS (ALPN h2, same port) are forwarded to the TLS members', async () => {
      const tlsArgs = ['--insecure-transport=false', '--cacert', certs.ca, '--cert', certs.client.cert, '--key', certs.client.key];
      const put = await etcdctlV3(p.url, [...tlsArgs, 'put', 'tls/v3', 'forwarded']);
      assert.equal(put.code, 0, put.stderr);
      const get = await etcdctlV3(members[0]!.clientUrl, [...tlsArgs, 'get', 'tls/v3']);
      assert.equal(get.code, 0, get.stderr);
    });

    const cases: Array<{ name: string; cert: (c: TlsFixture) => CertPair | undefined; code: string; says: RegExp }> = [
      { name: 'a missing client certificate', cert: () => undefined, code: 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE', says: /^missing client certificate/ },
      { name: 'a client certificate from another CA', cert: (c) => c.otherClient, code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', says: /not signed by the trusted CA \(wrong CA\?\)/ },
      { name: 'an expired client certificate', cert: (c) => c.expiredClient, code: 'CERT_HAS_EXPIRED', says: /certificate has expired/ },
    ];
    for (const c of cases) {
      it(`refuses ${c.name} at the handshake, forwards nothing, and says which`, async () => {
        const before = refused.length;
        const requests = seen.length;
        await assert.rejects(tlsHttp(`${p.url}/v2/keys/tls/e2e`, { ca: certs.ca, cert: c.cert(certs), timeout: 5000 }), (err: NodeJS.ErrnoException) => {
          // What the client itself is told depends on TLS: only "certificate required" names the problem.
          if (c.cert(certs) === undefined) assert.match(err.message, /certificate required/);
          else assert.match(String(err.code), /ECONNRESET|ERR_SSL/);
          return true;
        });
        await new Promise((r) => setTimeout(r, 100));
        const events = refused.slice(before);
        assert.equal(events.length, 1, JSON.stringify(events));
        assert.equal(events[0]!.code, c.code);
        assert.match(events[0]!.message, c.says);
        assert.equal(events[0]!.remoteAddress, '127.0.0.1');
        assert.equal(seen.length, requests, 'no request reached the handler');
      });
    }
  });

  it('the CLI takes etcd\'s Security flags: https listener, client certificates, and says whom it refused', async () => {
    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    const cli = fileURLToPath(new URL('../../examples/cli.ts', import.meta.url));
    const child = spawn(
      process.execPath,
      [
        '--import', 'tsx', cli, '--proxy', 'on', '--listen-client-urls', url, '--initial-cluster', initialCluster, '--data-dir', await tempDir(),
        '--cert-file', certs.server.cert, '--key-file', certs.server.key, '--trusted-ca-file', certs.ca, '--client-cert-auth',
        '--peer-cert-file', certs.client.cert, '--peer-key-file', certs.client.key, '--peer-trusted-ca-file', certs.ca,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let log = '';
    child.stderr.on('data', (b: Buffer) => (log += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    onCleanup(() => {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    });
    const waitFor = async (text: string): Promise<void> => {
      const deadline = Date.now() + 20000;
      while (!log.includes(text)) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the CLI did not print "${text}":\n${log}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await waitFor(`listening for client requests on ${url}`);
    const ctl = await etcdctl(url, ['--ca-file', certs.ca, '--cert-file', certs.client.cert, '--key-file', certs.client.key, '--no-sync', 'set', '/tls/cli', 'flags']);
    assert.equal(ctl.stdout, 'flags\n', ctl.stderr);
    await assert.rejects(tlsHttp(`${url}/v2/keys/tls/cli`, { ca: certs.ca, timeout: 5000 }));
    await waitFor('rejected connection from "127.0.0.1" (missing client certificate');
    process.kill(child.pid!, 'SIGTERM');
    assert.equal(await exited, 0);
  });

  it('falls back to the peer TLS settings for client URLs when no client certificate is set, as etcd does', async () => {
    // The members want a client certificate on their client port too: only the peer one is given.
    const p = await proxy({ initialCluster, dataDir: await tempDir(), ...peerTls });
    const res = await http(`${p.url}/v2/keys/tls/fallback`, { method: 'PUT', body: form({ value: 'peer-cert' }) });
    assert.equal(res.status, 201, res.body);
    assert.deepEqual(p.balancer.endpoints.map((e) => e.url).sort(), members.map((m) => m.clientUrl).sort());
  });

  it('prefers the client settings (certFile/keyFile) for client URLs: an expired one fails there and says so', async () => {
    const drops: DroppedEvent[] = [];
    const p = await proxy({
      initialCluster,
      dataDir: await tempDir(),
      ...peerTls,
      certFile: certs.expiredClient.cert,
      keyFile: certs.expiredClient.key,
      trustedCaFile: certs.ca,
    });
    p.handler.on('dropped', (e) => drops.push(e));
    // /members worked (createProxy resolved) with the peer certificate; forwarding uses the expired one.
    const res = await http(`${p.url}/v2/keys/tls/e2e`);
    assert.equal(res.status, 502);
    assert.equal(drops.length, 1);
    assert.equal(drops[0]!.reason, 'failed-sending');
    assert.ok(drops[0]!.error instanceof UpstreamError);
    assert.match(drops[0]!.error.message, /refused this proxy's client certificate .*expired-client\.crt: it expired on 2020-01-02/);
  });

  describe('TLS failures towards the cluster say which certificate was wrong', () => {
    const start = (options: Partial<CreateProxyOptions>, cluster = initialCluster): Promise<unknown> =>
      createProxy({ listenClientUrls: ['http://127.0.0.1:0'], initialCluster: cluster, startTimeout: 2000, ...options }).then(async (p) => {
        await p.close();
        throw new Error('createProxy should have failed');
      });
    const failsWith = async (options: Partial<CreateProxyOptions>, says: RegExp, cluster?: string): Promise<void> => {
      await assert.rejects(start(options, cluster), (err: Error) => {
        assert.ok(err instanceof ClusterUnreachableError, err.message);
        assert.match(err.message, says);
        return true;
      });
    };

    it('the members\' certificates from a CA this proxy does not trust: "wrong CA"', async () => {
      await failsWith({ ...peerTls, peerTrustedCaFile: certs.otherCa }, /server's certificate is not signed by a trusted CA \(wrong CA\?\): trusted: .*other-ca\/ca\.crt/);
      // Verification is on by default: without a CA file, Node's bundled CAs do not know the test CA either.
      await failsWith({ peerCertFile: certs.client.cert, peerKeyFile: certs.client.key }, /wrong CA\?\): trusted: Node's bundled public CAs/);
    });

    it('no client certificate where the members require one: "missing client certificate"', async () => {
      await failsWith({ peerTrustedCaFile: certs.ca }, /TLS: missing client certificate: the server refused the connection/);
    });

    it('this proxy\'s own client certificate expired: "expired on <date>"', async () => {
      await failsWith(
        { peerCertFile: certs.expiredClient.cert, peerKeyFile: certs.expiredClient.key, peerTrustedCaFile: certs.ca },
        /refused this proxy's client certificate .*expired-client\.crt: it expired on 2020-01-02T00:00:00\.000Z/,
      );
    });

    it('this proxy\'s client certificate from another CA: refused, "wrong CA?"', async () => {
      await failsWith({ peerCertFile: certs.otherClient.cert, peerKeyFile: certs.otherClient.key, peerTrustedCaFile: certs.ca }, /refused this proxy's client certificate .*other-ca\/client\.crt \(not signed by a CA the server trusts \(wrong CA\?\)/);
    });

    describe('with a member whose own certificate has expired', () => {
      let expired: LocalEtcd;
      before(async () => {
        expired = await startEtcd({ name: 'expired', scheme: 'https', waitHealthy: false, extraArgs: tlsFlags(certs, certs.expiredServer, false) });
        onCleanup(() => expired.stop());
        await waitHealthyTls(expired, certs, false);
      });

      it('its peer URL fails with "the server\'s certificate has expired"', async () => {
        await failsWith({ ...peerTls }, /TLS: the server's certificate has expired \[CERT_HAS_EXPIRED\]/, `expired=${expired.peerUrl}`);
      });

      it('insecureSkipVerify (off by default) accepts it', async () => {
        const p = await proxy({ initialCluster: `expired=${expired.peerUrl}`, dataDir: await tempDir(), ...peerTls, insecureSkipVerify: true });
            assert.equal((await http(`${p.url}/v2/keys/`)).status, 200);
      });

      it('a POST whose first endpoint fails the TLS handshake moves on to the next one (nothing was sent) and is written once', async () => {
        const bad = expired.clientUrl;
        const good = members[0]!.clientUrl;
        const balancer = new EndpointBalancer({
          endpoints: [bad, good],
          strategy: { name: 'bad-first', pick: (candidates) => candidates.find((e) => e.url === bad) ?? candidates[0]! },
          leaderWrites: false,
          tls: { certFile: certs.client.cert, keyFile: certs.client.key, trustedCaFile: certs.ca },
        });
        const handler = new V2ProxyHandler({ balancer });
        const retried: RetriedEvent[] = [];
        handler.on('retried', (e) => retried.push(e));
        const url = await serveHandler(handler, balancer);
        const res = await http(`${url}/v2/keys/tls/queue`, { method: 'POST', body: form({ value: 'once' }) });
        assert.equal(res.status, 201, res.body);
        assert.equal(retried.length, 1);
        assert.equal(retried[0]!.from, bad);
        assert.equal(retried[0]!.to, good);
        assert.equal(retried[0]!.error.phase, 'connect');
        assert.match(retried[0]!.error.message, /server's certificate has expired/);
        const dir = await tlsHttp(`${good}/v2/keys/tls/queue?quorum=true`, { ca: certs.ca, cert: certs.client });
        assert.equal((dir.json() as { node: { nodes: unknown[] } }).node.nodes.length, 1);
      });
    });
  });
});
