/**
 * Discovery URL (etcd's --discovery) against real etcd: one etcd member is
 * the discovery service (a /v2/keys/discovery/<token> directory with
 * _config/size), real members bootstrap from it with `etcd --discovery`, and
 * the proxy bootstraps from the same URL: at once when the cluster is
 * complete, after waiting when only 2 of 3 have registered, through an HTTP
 * forward proxy (--discovery-proxy), and not at all when a cluster file wins.
 * Bad input: an unreachable service (bounded), a missing or bad size key,
 * duplicate names, too few registrations within the bound, a URL that is not
 * an etcd keys directory. Last, an https:// discovery URL (an etcd member
 * serving TLS with the harness's certificates) reached through a forward
 * proxy's CONNECT tunnels, and a forward proxy that refuses the CONNECT.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, request as httpRequest } from 'node:http';
import type { IncomingMessage, Server } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createProxy, discoverCluster, DiscoveryError } from '../../src/index.js';
import type { DiscoveryProgress, DiscoveryRetry, EtcdV2Proxy } from '../../src/index.js';
import { cleanup, eventually, form, freePort, http, member, onCleanup, proxy, skipWithoutEtcd, startCli, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';
import { makeTlsFixture } from './tls-certs.js';
import type { TlsFixture } from './tls-certs.js';

/** A new discovery directory on the discovery member, with `_config/size` set to `size` (as a string, to allow bad values). */
async function newToken(disc: LocalEtcd, size: string): Promise<string> {
  const token = randomUUID();
  const res = await http(`${disc.clientUrl}/v2/keys/discovery/${token}/_config/size`, { method: 'PUT', body: form({ value: size }) });
  assert.equal(res.status, 201, res.body);
  return `${disc.clientUrl}/v2/keys/discovery/${token}`;
}

/** Registers a member by hand, as `etcd --discovery` does (POST-less: a key named by the member ID). */
async function register(url: string, id: string, value: string): Promise<void> {
  const res = await http(`${url}/${id}?prevExist=false`, { method: 'PUT', body: form({ value }) });
  assert.equal(res.status, 201, res.body);
}

async function setAndGet(url: string, key: string, value: string): Promise<string> {
  const put = await http(`${url}/v2/keys/${key}`, { method: 'PUT', body: form({ value }) });
  assert.equal(put.status, 201, `PUT through ${url}: ${put.status} ${put.body}`);
  // quorum=true: a plain v2 GET is served from the local store of whichever member gets it, and a
  // follower may not have applied the PUT yet (etcd's semantics, not the proxy's: it spreads reads).
  const got = await http(`${url}/v2/keys/${key}?quorum=true`);
  assert.equal(got.status, 200, `GET through ${url}: ${got.status} ${got.body}`);
  return (got.json() as { node: { value: string } }).node.value;
}

/** Starts `n` etcd members that bootstrap with `--discovery url`, without waiting for them. */
async function discoveryMembers(url: string, names: readonly string[]): Promise<LocalEtcd[]> {
  return Promise.all(names.map((name) => member({ name, discovery: url, waitHealthy: false })));
}

function clientUrlsOf(p: { balancer: { endpoints: readonly { url: string }[] } }): string[] {
  return p.balancer.endpoints.map((e) => e.url).sort();
}

/** Waits until the proxy's endpoints are exactly the members' client URLs. */
async function endpointsBecome(p: EtcdV2Proxy, members: readonly LocalEtcd[]): Promise<void> {
  const want = members.map((m) => m.clientUrl).sort();
  await eventually(() => JSON.stringify(clientUrlsOf(p)) === JSON.stringify(want), 10000, `endpoints ${want.join(' ')} (have ${clientUrlsOf(p).join(' ')})`);
}

describe('discovery URL (etcd --discovery)', { skip: skipWithoutEtcd }, () => {
  after(cleanup);
  let disc: LocalEtcd;
  let cluster: LocalEtcd[];
  let clusterUrl: string;
  let clusterDataDir: string;

  before(async () => {
    disc = await member({ name: 'discovery' });
  });

  it('a 3-member cluster bootstrapped with `etcd --discovery`; the proxy bootstraps from the same URL and serves', async () => {
    clusterUrl = await newToken(disc, '3');
    cluster = await discoveryMembers(clusterUrl, ['d1', 'd2', 'd3']);
    clusterDataDir = join(await tempDir(), 'data');
    const started = Date.now();
    const p = await proxy({ discovery: clusterUrl, dataDir: clusterDataDir });
    const took = Date.now() - started;
    assert.equal(p.peerUrlsSource, 'discovery');
    assert.deepEqual([...p.bootstrapPeerUrls], cluster.map((m) => m.peerUrl).sort());
    // Members that just joined list no client URL until they have published it.
    await endpointsBecome(p, cluster);
    assert.equal(await setAndGet(p.url, 'disc-k', 'v'), 'v');
    // The members formed one cluster: the key is on all three.
    for (const m of cluster) {
      const direct = await http(`${m.clientUrl}/v2/keys/disc-k?quorum=true`);
      assert.equal((direct.json() as { node: { value: string } }).node.value, 'v');
    }
    assert.equal(
      await readFile(join(clusterDataDir, 'proxy', 'cluster'), 'utf8'),
      JSON.stringify({ PeerURLs: cluster.map((m) => m.peerUrl).sort() }),
    );
    console.log(`# proxy from a complete discovery URL (members still starting): ${took} ms`);
  });

  it('discoverCluster gives the registrations as an initial cluster, oldest first', async () => {
    const found = await discoverCluster({ url: clusterUrl });
    assert.equal(found.size, 3);
    assert.deepEqual([...found.members.keys()].sort(), ['d1', 'd2', 'd3']);
    for (const m of cluster) assert.deepEqual(found.members.get(m.name), [m.peerUrl]);
    assert.equal(found.initialCluster.split(',').length, 3);
  });

  it('started while only 2 of 3 have registered: waits, saying 1 is missing, then serves', async () => {
    const url = await newToken(disc, '3');
    const first = await discoveryMembers(url, ['w1', 'w2']);
    // Both registered (etcd registers, then waits for the third).
    const registered = async (): Promise<number> =>
      ((await http(url)).json() as { node: { nodes?: unknown[] } }).node.nodes?.length ?? 0;
    const deadline = Date.now() + 15000;
    while ((await registered()) < 2) {
      assert.ok(Date.now() < deadline, 'the two members did not register within 15 s');
      await new Promise((r) => setTimeout(r, 50));
    }

    const waiting: DiscoveryProgress[] = [];
    let settled = false;
    const pending = createProxy({
      listenClientUrls: ['http://127.0.0.1:0'],
      discovery: url,
      listeners: { discoveryWaiting: (progress) => waiting.push(progress) },
    });
    void pending.then(
      (p) => onCleanup(() => p.close()),
      () => undefined,
    );
    void pending.finally(() => (settled = true)).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(settled, false, 'createProxy must wait for the third member');
    assert.equal(waiting.length, 1);
    assert.equal(waiting[0]!.size, 3);
    assert.equal(waiting[0]!.missing, 1);
    assert.deepEqual([...waiting[0]!.registered].sort(), ['w1', 'w2']);

    const startedThird = Date.now();
    const [third] = await discoveryMembers(url, ['w3']);
    const p = await pending;
    console.log(`# proxy resolved ${Date.now() - startedThird} ms after the third member was started`);
    const all = [...first, third!];
    assert.deepEqual([...p.bootstrapPeerUrls], all.map((m) => m.peerUrl).sort());
    await endpointsBecome(p, all);
    assert.equal(await setAndGet(p.addresses[0]!.url, 'disc-wait', 'w'), 'w');
  });

  it('a cluster file wins over discovery, with one warning naming the file (the discovery URL is not asked)', async () => {
    const deadUrl = `http://127.0.0.1:${await freePort()}/v2/keys/discovery/gone`;
    const warnings: string[] = [];
    const retries: DiscoveryRetry[] = [];
    const p = await proxy({
      discovery: deadUrl,
      dataDir: clusterDataDir,
      listeners: { warning: (w) => warnings.push(w), discoveryRetry: (r) => retries.push(r) },
    });
    assert.equal(p.peerUrlsSource, 'cluster-file');
    const file = join(clusterDataDir, 'proxy', 'cluster');
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.ok(warnings[0]!.includes(file), warnings[0]);
    assert.match(warnings[0]!, /discovery URL .* ignored since the proxy has already been initialized/);
    assert.deepEqual(retries, []);
    assert.equal(await setAndGet(p.url, 'disc-file', 'f'), 'f');
  });

  it('--discovery-proxy: every discovery request goes through the HTTP proxy', async () => {
    const seen: string[] = [];
    const forward: Server = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      const upstream = httpRequest(req.url!, { method: req.method, headers: req.headers, agent: false }, (up) => {
        res.writeHead(up.statusCode!, up.headers);
        up.pipe(res);
      });
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    });
    await new Promise<void>((done) => forward.listen(0, '127.0.0.1', () => done()));
    onCleanup(() => new Promise<void>((done) => { forward.closeAllConnections(); forward.close(() => done()); }));
    const proxyUrl = `http://127.0.0.1:${(forward.address() as AddressInfo).port}`;

    const p = await proxy({ discovery: clusterUrl, discoveryProxy: proxyUrl });
    assert.equal(p.peerUrlsSource, 'discovery');
    assert.deepEqual(clientUrlsOf(p), cluster.map((m) => m.clientUrl).sort());
    assert.deepEqual(seen, [`GET ${clusterUrl}/_config/size`, `GET ${clusterUrl}`]);
  });

  it('the CLI: --discovery start-up lines, then the warning when the cluster file wins', async () => {
    const dataDir = await tempDir();
    const run = async (): Promise<string> => {
      const listen = `http://127.0.0.1:${await freePort()}`;
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', 'examples/cli.ts', '--listen-client-urls', listen, '--discovery', clusterUrl, '--data-dir', dataDir],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let err = '';
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
      onCleanup(() => child.exitCode === null && child.signalCode === null && child.pid !== undefined && process.kill(child.pid, 'SIGKILL'));
      const deadline = Date.now() + 20000;
      while (!err.includes('listening for client requests')) {
        assert.ok(Date.now() < deadline && child.exitCode === null, `the CLI did not start:\n${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      process.kill(child.pid!, 'SIGTERM');
      assert.equal(await exited, 0, err);
      return err;
    };
    const firstRun = await run();
    const peers = cluster.map((m) => m.peerUrl).sort().join(' ');
    assert.ok(firstRun.includes(`I | proxy: using peer urls [${peers}] from discovery URL ${clusterUrl}`), firstRun);
    assert.doesNotMatch(firstRun, / W \| /);
    const secondRun = await run();
    const file = join(dataDir, 'proxy', 'cluster');
    const warnings = secondRun.split('\n').filter((l) => l.includes(' W | '));
    assert.equal(warnings.length, 1, secondRun);
    assert.ok(warnings[0]!.includes(`ignored since the proxy has already been initialized: using the cluster file ${file}`), secondRun);
    assert.ok(secondRun.includes(`from cluster file "${file}"`), secondRun);
  });

  describe('bad input: rejected with a DiscoveryError naming the URL and what came back', () => {
    it('an unreachable discovery URL: retried with backoff, each retry reported, bounded by discoveryTimeout', async () => {
      const url = `http://127.0.0.1:${await freePort()}/v2/keys/discovery/nobody`;
      const retries: DiscoveryRetry[] = [];
      const started = Date.now();
      await assert.rejects(
        createProxy({ listenClientUrls: ['http://127.0.0.1:0'], discovery: url, discoveryTimeout: 2000, listeners: { discoveryRetry: (r) => retries.push(r) } }),
        (err: unknown) => {
          assert.ok(err instanceof DiscoveryError, String(err));
          assert.equal(err.code, 'ERR_ETCD_PROXY_DISCOVERY');
          assert.equal(err.reason, 'unreachable');
          assert.equal(err.url, url);
          assert.ok(err.message.startsWith(`discovery ${url}: no usable answer within 2000 ms`), err.message);
          assert.match(err.message, new RegExp(`last error: GET ${url}/_config/size: connect ECONNREFUSED`));
          return true;
        },
      );
      const took = Date.now() - started;
      assert.ok(took >= 1900 && took < 4000, `took ${took} ms`);
      assert.ok(retries.length >= 3, `${retries.length} retries`);
      assert.deepEqual(retries.slice(0, 3).map((r) => r.delay), [250, 500, 1000]);
      assert.deepEqual(retries.map((r) => r.attempt), retries.map((_, i) => i + 1));
      assert.ok(retries.every((r) => r.step === 'cluster status check' && r.url === url));
      console.log(`# unreachable discovery URL rejected after ${took} ms, ${retries.length} retries`);
    });

    it('a missing size key', async () => {
      const url = `${disc.clientUrl}/v2/keys/discovery/${randomUUID()}`;
      await assert.rejects(discoverCluster({ url }), (err: unknown) => {
        assert.ok(err instanceof DiscoveryError, String(err));
        assert.equal(err.reason, 'size-not-found');
        assert.ok(err.message.includes(`GET ${url}/_config/size answered 404`), err.message);
        assert.match(err.message, /"message":"Key not found"/);
        return true;
      });
    });

    for (const [bad, shown] of [['three', '"three"'], ['0', '"0"'], ['-1', '"-1"'], ['2.5', '"2.5"']] as const) {
      it(`a bad size key (${shown})`, async () => {
        const url = await newToken(disc, bad);
        await assert.rejects(createProxy({ listenClientUrls: ['http://127.0.0.1:0'], discovery: url }), (err: unknown) => {
          assert.ok(err instanceof DiscoveryError, String(err));
          assert.equal(err.reason, 'bad-size');
          assert.equal(
            err.message,
            `discovery ${url}: the size key is bad: GET ${url}/_config/size holds ${shown}, not a positive whole number of members`,
          );
          return true;
        });
      });
    }

    it('duplicate names among the first size registrations', async () => {
      const url = await newToken(disc, '2');
      await register(url, 'aaaa', 'same=http://127.0.0.1:1001');
      await register(url, 'bbbb', 'same=http://127.0.0.1:1002');
      await assert.rejects(discoverCluster({ url }), (err: unknown) => {
        assert.ok(err instanceof DiscoveryError, String(err));
        assert.equal(err.reason, 'duplicate-name');
        assert.match(err.message, /found duplicate name "same" among the first 2 registrations: \/discovery\/.*\/aaaa = "same=http:\/\/127.0.0.1:1001" and .*\/bbbb/);
        return true;
      });
    });

    it('too few registrations within the bound', async () => {
      const url = await newToken(disc, '3');
      await register(url, 'aaaa', 'only=http://127.0.0.1:1001');
      const waiting: DiscoveryProgress[] = [];
      await assert.rejects(discoverCluster({ url, timeout: 1000, onWaiting: (p) => waiting.push(p) }), (err: unknown) => {
        assert.ok(err instanceof DiscoveryError, String(err));
        assert.equal(err.reason, 'incomplete');
        assert.equal(err.message, `discovery ${url}: only 1 of 3 members registered within 1000 ms (the discovery timeout); registered: only`);
        return true;
      });
      assert.deepEqual(waiting, [{ url, size: 3, registered: ['only'], missing: 2 }]);
    });

    it('a URL that is not an etcd keys directory', async () => {
      const url = `${disc.clientUrl}/not-keys/x`;
      await assert.rejects(discoverCluster({ url }), (err: unknown) => {
        assert.ok(err instanceof DiscoveryError, String(err));
        assert.equal(err.reason, 'bad-answer');
        assert.ok(err.message.includes(`GET ${url}/_config/size answered 404 with a body that is not JSON`), err.message);
        return true;
      });
    });
  });
});

/** A forward proxy that only tunnels (CONNECT); see {@link connectProxy}. */
interface ConnectProxy {
  /** `http://127.0.0.1:<port>`, for `discoveryProxy`. */
  readonly url: string;
  /** The target of every CONNECT received (`host:port`), in order. */
  readonly connects: string[];
  /** Bytes the client sent into each tunnel, by the index of its CONNECT (0 when refused). */
  readonly tunneled: number[];
  /** Every other request received (`METHOD url`): answered 405. */
  readonly others: string[];
  /** The status CONNECT gets: 200 opens the tunnel, anything else refuses it. */
  answer: number;
}

/**
 * A fake that stands in for the operator's HTTP forward proxy, which no etcd
 * component provides: node:http answering CONNECT `127.0.0.1:<port>` with 200
 * and a tunnel piped to that port on 127.0.0.1 (nowhere else), any other
 * target with 403, and recording each CONNECT and the bytes sent into its
 * tunnel. `cleanup()` closes it, open tunnels included.
 */
async function connectProxy(): Promise<ConnectProxy> {
  const sockets = new Set<Socket>();
  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const state = { url: '', connects: [] as string[], tunneled: [] as number[], others: [] as string[], answer: 200 };
  const server = createServer((req, res) => {
    state.others.push(`${req.method} ${req.url}`);
    res.writeHead(405, { Connection: 'close' }).end();
  });
  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    track(client);
    const target = req.url ?? '';
    const index = state.connects.push(target) - 1;
    state.tunneled[index] = head.length;
    const port = /^127\.0\.0\.1:(\d+)$/.exec(target)?.[1];
    if (state.answer !== 200 || port === undefined) {
      const status = state.answer === 200 ? 403 : state.answer;
      client.end(`HTTP/1.1 ${status} Refused by the test's proxy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
      return;
    }
    const upstream = connect(Number(port), '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      client.on('data', (chunk: Buffer) => (state.tunneled[index]! += chunk.length));
      upstream.pipe(client);
      client.pipe(upstream);
    });
    track(upstream);
    upstream.once('close', () => client.destroy());
    client.once('close', () => upstream.destroy());
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
  onCleanup(
    () =>
      new Promise<void>((done) => {
        for (const socket of sockets) socket.destroy();
        server.closeAllConnections();
        server.close(() => done());
      }),
  );
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

describe('an https:// discovery URL through a forward proxy (--discovery-proxy, CONNECT)', { skip: skipWithoutEtcd }, () => {
  after(cleanup);
  let certs: TlsFixture;
  /** The member the discovery URL lists. */
  let target: LocalEtcd;
  let tlsPort: number;
  /** `https://127.0.0.1:<tlsPort>/v2/keys/discovery/<token>`. */
  let httpsUrl: string;
  let fwd: ConnectProxy;

  before(async () => {
    certs = await makeTlsFixture(await tempDir('etcd-v2-proxy-disc-tls-'));
    // The discovery service: one etcd member serving its client API over https
    // (the harness's server certificate, no client certificate asked) and,
    // for this test's own set-up with newToken and register, over http.
    const clientPort = await freePort();
    tlsPort = await freePort();
    const disc = await member({
      name: 'discovery-tls',
      clientPort,
      extraArgs: [
        '--listen-client-urls', `http://127.0.0.1:${clientPort},https://127.0.0.1:${tlsPort}`,
        '--cert-file', certs.server.cert, '--key-file', certs.server.key,
      ],
    });
    target = await member({ name: 'found' });
    const httpUrl = await newToken(disc, '1');
    await register(httpUrl, 'aaaa', `${target.name}=${target.peerUrl}`);
    httpsUrl = httpUrl.replace(disc.clientUrl, `https://127.0.0.1:${tlsPort}`);
    fwd = await connectProxy();
  });

  it('the CLI (CA trusted with NODE_EXTRA_CA_CERTS): both discovery requests go through CONNECT tunnels to the etcd host:port, then it serves', async () => {
    fwd.answer = 200;
    fwd.connects.length = 0;
    fwd.tunneled.length = 0;
    const listen = `http://127.0.0.1:${await freePort()}`;
    // Like etcd's (Go's system roots), discovery trusts the default CAs: the
    // operator adds a private CA to them, here with NODE_EXTRA_CA_CERTS.
    const cli = await startCli(
      ['--listen-client-urls', listen, '--discovery', httpsUrl, '--discovery-proxy', fwd.url, '--data-dir', join(await tempDir(), 'cli')],
      { NODE_EXTRA_CA_CERTS: certs.ca },
    );
    const log = cli.log();
    assert.ok(log.includes(`I | proxy: using peer urls [${target.peerUrl}] from discovery URL ${httpsUrl}`), log);
    assert.ok(log.includes(`I | proxy: discovery went through proxy "${fwd.url}"`), log);
    assert.ok(log.includes(`I | proxy: endpoints found ["${target.clientUrl}"]`), log);
    // Nothing else on stderr: no retry, no warning (node's DEP0123 for an IP address as TLS server name included).
    assert.doesNotMatch(log, / W \| |Warning/);
    // GET <url>/_config/size and GET <url>, one tunnel each, each carrying its request (TLS);
    // /members went to the peer directly.
    assert.deepEqual(fwd.connects, [`127.0.0.1:${tlsPort}`, `127.0.0.1:${tlsPort}`]);
    assert.ok(fwd.tunneled.every((bytes) => bytes > 0), `bytes sent into each tunnel: ${fwd.tunneled.join(', ')}`);
    assert.deepEqual(fwd.others, []);
    assert.equal(await setAndGet(listen, 'disc-https', 'h'), 'h');
    await cli.stop();
    assert.match(cli.log(), /received SIGTERM, shutting down/);
  });

  it('the CA not trusted: the certificate is checked inside the tunnel, and the error says so', async () => {
    fwd.answer = 200;
    fwd.connects.length = 0;
    fwd.tunneled.length = 0;
    await assert.rejects(discoverCluster({ url: httpsUrl, proxy: fwd.url, timeout: 1000 }), (err: unknown) => {
      assert.ok(err instanceof DiscoveryError, String(err));
      assert.equal(err.reason, 'unreachable');
      assert.ok(
        err.message.includes(`last error: GET ${httpsUrl}/_config/size: TLS: the server's certificate is not signed by a trusted CA (wrong CA?)`),
        err.message,
      );
      return true;
    });
    assert.ok(fwd.connects.length >= 1 && fwd.connects.every((c) => c === `127.0.0.1:${tlsPort}`), fwd.connects.join(' '));
    assert.ok(fwd.tunneled.every((bytes) => bytes > 0), `bytes sent into each tunnel: ${fwd.tunneled.join(', ')}`);
  });

  it('a forward proxy that refuses the CONNECT (403): retried, then a DiscoveryError naming the proxy and the status', async () => {
    fwd.answer = 403;
    fwd.connects.length = 0;
    fwd.tunneled.length = 0;
    const retries: DiscoveryRetry[] = [];
    const started = Date.now();
    const refused = `proxy ${fwd.url} answered CONNECT 127.0.0.1:${tlsPort} with 403`;
    try {
      await assert.rejects(
        createProxy({
          listenClientUrls: ['http://127.0.0.1:0'],
          discovery: httpsUrl,
          discoveryProxy: fwd.url,
          discoveryTimeout: 1500,
          listeners: { discoveryRetry: (r) => retries.push(r) },
        }),
        (err: unknown) => {
          assert.ok(err instanceof DiscoveryError, String(err));
          assert.equal(err.reason, 'unreachable');
          assert.equal(err.url, httpsUrl);
          assert.ok(err.message.startsWith(`discovery ${httpsUrl}: no usable answer within 1500 ms (the discovery timeout)`), err.message);
          assert.ok(err.message.endsWith(`last error: GET ${httpsUrl}/_config/size: ${refused}`), err.message);
          return true;
        },
      );
    } finally {
      fwd.answer = 200;
    }
    const took = Date.now() - started;
    assert.ok(took < 4000, `took ${took} ms`);
    assert.ok(retries.length >= 2, `${retries.length} retries`);
    assert.equal(retries[0]!.error.message, `GET ${httpsUrl}/_config/size: ${refused}`);
    assert.ok(fwd.connects.length >= retries.length && fwd.connects.every((c) => c === `127.0.0.1:${tlsPort}`), fwd.connects.join(' '));
    assert.deepEqual(fwd.others, []);
    console.log(`# CONNECT refused: DiscoveryError after ${took} ms, ${retries.length} retries, ${fwd.connects.length} CONNECTs`);
  });
});
