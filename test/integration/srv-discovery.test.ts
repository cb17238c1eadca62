/**
 * DNS SRV discovery (etcd's --discovery-srv) against a real DNS server: the
 * test starts its own dnsmasq on a free 127.0.0.1 port (its own records, no
 * config file, no upstream), serving the SRV records of a real 3-member
 * cluster whose targets are host names only that dnsmasq knows (mapped to
 * 127.0.0.1). The proxy bootstraps from them, with and without a service
 * name, and so does examples/cli.ts given the server with
 * --discovery-srv-dns-servers; https and http records both count; a domain
 * without records, and a DNS server that is not there, are rejected naming
 * what was asked.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createProxy, discoverSrv, SrvDiscoveryError } from '../../src/index.js';
import type { EtcdV2Proxy } from '../../src/index.js';
import { cleanup, cluster, dnsmasq, eventually, form, freePort, http, proxy, skipWithoutDnsmasq, startCli, tempDir } from './harness.js';
import type { Dnsmasq, LocalEtcd } from './harness.js';

async function setAndGet(url: string, key: string, value: string): Promise<string> {
  const put = await http(`${url}/v2/keys/${key}`, { method: 'PUT', body: form({ value }) });
  assert.equal(put.status, 201, `PUT through ${url}: ${put.status} ${put.body}`);
  // quorum=true: a plain GET may reach a follower that has not applied the PUT yet.
  const got = await http(`${url}/v2/keys/${key}?quorum=true`);
  assert.equal(got.status, 200, `GET through ${url}: ${got.status} ${got.body}`);
  return (got.json() as { node: { value: string } }).node.value;
}

function clientUrlsOf(p: EtcdV2Proxy): string[] {
  return p.balancer.endpoints.map((e) => e.url).sort();
}

describe('DNS SRV discovery (etcd --discovery-srv) with a real dnsmasq', { skip: skipWithoutDnsmasq }, () => {
  after(cleanup);
  let members: LocalEtcd[];
  let dns: Dnsmasq;
  /** The peer URLs the SRV records give: host names only dnsmasq knows. */
  let srvPeerUrls: string[];

  before(async () => {
    members = await cluster(3);
    const names = members.map((_, i) => `etcd${i + 1}.srv.test`);
    dns = await dnsmasq({
      localDomains: ['test'],
      hosts: names.map((name) => ({ name, address: '127.0.0.1' })),
      srv: [
        ...members.map((m, i) => ({ name: '_etcd-server._tcp.srv.test', target: names[i]!, port: m.peerPort })),
        // A service name: one member only, its target an address.
        { name: '_etcd-server-blue._tcp.srv.test', target: '127.0.0.1', port: members[1]!.peerPort },
        // https and http records of one domain.
        { name: '_etcd-server-ssl._tcp.mixed.test', target: 'secure.mixed.test', port: 2380 },
        { name: '_etcd-server._tcp.mixed.test', target: 'plain.mixed.test', port: 2381 },
      ],
    });
    srvPeerUrls = members.map((m, i) => `http://${names[i]}:${m.peerPort}`).sort();
  });

  it('the proxy bootstraps from the SRV records of a 3-member cluster and serves', async () => {
    const dataDir = join(await tempDir(), 'data');
    const started = Date.now();
    const p = await proxy({ discoverySrv: 'srv.test', dnsServers: [dns.server], dataDir });
    console.log(`# proxy from DNS SRV: ${Date.now() - started} ms`);
    assert.equal(p.peerUrlsSource, 'discovery-srv');
    assert.deepEqual([...p.bootstrapPeerUrls], srvPeerUrls);
    assert.deepEqual(clientUrlsOf(p), members.map((m) => m.clientUrl).sort());
    // Once the members answered, the resolver asks their own peer URLs.
    assert.deepEqual([...p.resolver.peerUrls], members.map((m) => m.peerUrl).sort());
    assert.equal(await setAndGet(p.url, 'srv-k', 'v'), 'v');

    // On restart the cluster file wins: one warning naming it, and no DNS needed.
    await p.close();
    const warnings: string[] = [];
    const again = await proxy({ discoverySrv: 'srv.test', dnsServers: ['127.0.0.1:1'], dataDir, listeners: { warning: (w) => warnings.push(w) } });
    assert.equal(again.peerUrlsSource, 'cluster-file');
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.ok(warnings[0]!.includes(join(dataDir, 'proxy', 'cluster')), warnings[0]);
    assert.match(warnings[0]!, /^DNS SRV discovery of srv\.test ignored since the proxy has already been initialized/);
  });

  it('the CLI: --discovery-srv with --discovery-srv-dns-servers bootstraps from the records and serves a v2 set/get', async () => {
    const listen = `http://127.0.0.1:${await freePort()}`;
    const cli = await startCli([
      '--listen-client-urls', listen,
      '--discovery-srv', 'srv.test',
      '--discovery-srv-dns-servers', dns.server,
      '--data-dir', join(await tempDir(), 'cli'),
    ]);
    const log = cli.log();
    // The peers' names are known to dnsmasq only: the flag reached the SRV lookups and the peers' name lookups.
    assert.ok(
      log.includes(
        `I | proxy: using peer urls [${srvPeerUrls.join(' ')}] from DNS SRV records _etcd-server-ssl._tcp.srv.test and _etcd-server._tcp.srv.test (asked DNS server(s) ${dns.server})`,
      ),
      log,
    );
    for (const m of members) assert.ok(log.includes(JSON.stringify(m.clientUrl)), `endpoint ${m.clientUrl} in:\n${log}`);
    assert.doesNotMatch(log, / W \| /);
    assert.equal(await setAndGet(listen, 'srv-cli', 'c'), 'c');
    await cli.stop();
    assert.match(cli.log(), /received SIGTERM, shutting down/);
  });

  it('with discoverySrvName: _etcd-server-<name>._tcp.<domain>', async () => {
    const p = await proxy({ discoverySrv: 'srv.test', discoverySrvName: 'blue', dnsServers: [dns.server] });
    assert.deepEqual([...p.bootstrapPeerUrls], [`http://127.0.0.1:${members[1]!.peerPort}`]);
    // One peer was enough to learn all three members.
    await eventually(() => clientUrlsOf(p).length === 3, 5000, 'three endpoints');
    assert.deepEqual(clientUrlsOf(p), members.map((m) => m.clientUrl).sort());
  });

  it('https (_etcd-server-ssl) and http (_etcd-server) records both give peers, https first', async () => {
    const found = await discoverSrv({ domain: 'mixed.test', dnsServers: [dns.server] });
    assert.deepEqual(
      found.peers.map((p) => [p.service, p.peerUrl]),
      [
        ['_etcd-server-ssl._tcp.mixed.test', 'https://secure.mixed.test:2380'],
        ['_etcd-server._tcp.mixed.test', 'http://plain.mixed.test:2381'],
      ],
    );
    assert.equal(found.initialCluster, '0=https://secure.mixed.test:2380,1=http://plain.mixed.test:2381');
  });

  it('a domain with no SRV records: SrvDiscoveryError naming both names, the server and the answers', async () => {
    await assert.rejects(createProxy({ listenClientUrls: ['http://127.0.0.1:0'], discoverySrv: 'empty.test', dnsServers: [dns.server] }), (err: unknown) => {
      assert.ok(err instanceof SrvDiscoveryError, String(err));
      assert.equal(err.code, 'ERR_ETCD_PROXY_DISCOVERY_SRV');
      assert.equal(err.domain, 'empty.test');
      assert.equal(
        err.message,
        `discovery-srv empty.test: no etcd peer found in SRV records (asked DNS server(s) ${dns.server}): ` +
          '_etcd-server-ssl._tcp.empty.test: ENOTFOUND, no such name (NXDOMAIN); _etcd-server._tcp.empty.test: ENOTFOUND, no such name (NXDOMAIN)',
      );
      return true;
    });
  });

  it('records exist, but not under the service name asked', async () => {
    await assert.rejects(discoverSrv({ domain: 'srv.test', serviceName: 'green', dnsServers: [dns.server] }), (err: unknown) => {
      assert.ok(err instanceof SrvDiscoveryError, String(err));
      assert.deepEqual(err.lookups.map((l) => l.name), ['_etcd-server-ssl-green._tcp.srv.test', '_etcd-server-green._tcp.srv.test']);
      return true;
    });
  });

  it('a DNS server that is not there: rejected at once, saying so', async () => {
    const server = `127.0.0.1:${await freePort()}`;
    const started = Date.now();
    await assert.rejects(discoverSrv({ domain: 'srv.test', dnsServers: [server], timeout: 500 }), (err: unknown) => {
      assert.ok(err instanceof SrvDiscoveryError, String(err));
      assert.ok(err.message.includes(`asked DNS server(s) ${server}`), err.message);
      assert.match(err.message, /_etcd-server._tcp.srv.test: (ECONNREFUSED, connection refused|ETIMEOUT, no answer)/);
      return true;
    });
    assert.ok(Date.now() - started < 3000);
  });
});
