/**
 * Unit tests of discovery without etcd or DNS: eager option checks of
 * createProxy, discoverCluster and discoverSrv (exact messages naming the
 * option), the SRV names etcd asks, and how discovery ends when nothing
 * listens (a 127.0.0.1 port: connection refused) or the caller aborts.
 * What discovery does against real etcd and a real DNS server is in
 * test/integration/discovery.test.ts and srv-discovery.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { freePort } from '../examples/local-etcd.js';
import { createProxy, discoverCluster, DiscoveryError, discoverSrv, InvalidOptionError, srvServiceNames } from '../src/index.js';

const dead = 'http://127.0.0.1:1/v2/keys/discovery/t';

function rejectsOption(p: Promise<unknown>, option: string, message: string): Promise<void> {
  return assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof InvalidOptionError, String(err));
    assert.equal(err.option, option);
    assert.equal(err.message, message);
    return true;
  });
}

describe('createProxy: discovery options are checked before anything starts', () => {
  const cases: Array<{ options: Record<string, unknown>; option: string; message: string }> = [
    {
      options: { initialCluster: 'a=http://127.0.0.1:2380', discovery: dead },
      option: 'discovery',
      message:
        'invalid option discovery: initialCluster and discovery are both given: give exactly one of initialCluster, discovery or discoverySrv (etcd: multiple discovery or bootstrap flags are set)',
    },
    {
      options: { discovery: dead, discoverySrv: 'example.com' },
      option: 'discoverySrv',
      message:
        'invalid option discoverySrv: discovery and discoverySrv are both given: give exactly one of initialCluster, discovery or discoverySrv (etcd: multiple discovery or bootstrap flags are set)',
    },
    {
      options: { initialCluster: 'a=http://127.0.0.1:2380', discoverySrv: 'example.com' },
      option: 'discoverySrv',
      message:
        'invalid option discoverySrv: initialCluster and discoverySrv are both given: give exactly one of initialCluster, discovery or discoverySrv (etcd: multiple discovery or bootstrap flags are set)',
    },
    {
      options: { discovery: 'http://127.0.0.1:2379' },
      option: 'discovery',
      message: 'invalid option discovery: "http://127.0.0.1:2379" has no path: expected the token\'s directory, e.g. http://127.0.0.1:2379/v2/keys/discovery/<token>',
    },
    {
      options: { discovery: 'ftp://example.com/x' },
      option: 'discovery',
      message: 'invalid option discovery: "ftp://example.com/x" must use http:// or https://',
    },
    {
      options: { discovery: 'http://example.com/x?token=1' },
      option: 'discovery',
      message: 'invalid option discovery: "http://example.com/x?token=1" must not have a query or fragment',
    },
    { options: { discovery: 42 }, option: 'discovery', message: 'invalid option discovery: expected a discovery URL such as http://host:2379/v2/keys/discovery/<token>, got 42' },
    {
      options: { initialCluster: 'a=http://127.0.0.1:2380', discoveryProxy: 'http://127.0.0.1:3128' },
      option: 'discoveryProxy',
      message: 'invalid option discoveryProxy: "http://127.0.0.1:3128" is given without discovery: it only carries discovery traffic',
    },
    {
      options: { discovery: dead, discoveryProxy: 'socks5://127.0.0.1:1080' },
      option: 'discoveryProxy',
      message: 'invalid option discoveryProxy: "socks5://127.0.0.1:1080": only http:// proxies are supported',
    },
    {
      options: { discoverySrv: 'http://example.com' },
      option: 'discoverySrv',
      message: 'invalid option discoverySrv: "http://example.com" is a URL: give the domain alone, e.g. example.com',
    },
    { options: { discoverySrv: 'bad domain' }, option: 'discoverySrv', message: 'invalid option discoverySrv: "bad domain" is not a DNS domain name' },
    {
      options: { initialCluster: 'a=http://127.0.0.1:2380', discoverySrvName: 'blue' },
      option: 'discoverySrvName',
      message: 'invalid option discoverySrvName: "blue" is given without discoverySrv: it is the SRV service suffix',
    },
    {
      options: { discoverySrv: 'example.com', discoverySrvName: '_x' },
      option: 'discoverySrvName',
      message: 'invalid option discoverySrvName: expected letters, digits and dashes (the SRV service suffix), got "_x"',
    },
    {
      options: { discoverySrv: 'example.com', dnsServers: [] },
      option: 'dnsServers',
      message: 'invalid option dnsServers: expected a non-empty array of "ip" or "ip:port", got object',
    },
    {
      options: { discoverySrv: 'example.com', dnsServers: ['127.0.0.1:5353', 'dns.example.com'] },
      option: 'dnsServers[1]',
      message: 'invalid option dnsServers[1]: expected "ip" or "ip:port" ("[ipv6]:port"), got "dns.example.com" (Invalid IP address: dns.example.com)',
    },
    // Given to node's Resolver.setServers as is, port 0 aborted the whole process.
    {
      options: { discoverySrv: 'example.com', dnsServers: ['127.0.0.1:0'] },
      option: 'dnsServers[0]',
      message: 'invalid option dnsServers[0]: expected "ip" or "ip:port" ("[ipv6]:port"), got "127.0.0.1:0" (port 0 is not 1-65535)',
    },
    {
      options: { discovery: dead, discoveryTimeout: -1 },
      option: 'discoveryTimeout',
      message: 'invalid option discoveryTimeout: expected a whole number of milliseconds >= 0, got -1',
    },
    {
      options: { discovery: dead, listeners: { warning: 'log' } },
      option: 'listeners.warning',
      message: 'invalid option listeners.warning: expected a function, got "log"',
    },
    // Options of the parts built after discovery are checked before it too.
    {
      options: { discovery: dead, startTimeout: 0 },
      option: 'startTimeout',
      message: 'invalid option startTimeout: expected a whole number of milliseconds >= 1, got 0',
    },
    {
      options: { discoverySrv: 'example.com', failureWait: 'soon' },
      option: 'failureWait',
      message: 'invalid option failureWait: expected a whole number of milliseconds >= 0, got "soon"',
    },
  ];
  for (const c of cases) {
    it(`refuses ${c.message.replace(/^invalid option /, '')}`, async () => {
      const t0 = Date.now();
      await rejectsOption(createProxy({ listenClientUrls: ['http://127.0.0.1:0'], ...c.options }), c.option, c.message);
      assert.ok(Date.now() - t0 < 500, 'no network before the options are checked');
    });
  }
});

describe('discoverCluster', () => {
  it('checks its options', async () => {
    await rejectsOption(discoverCluster({ url: dead, timeout: 1.5 }), 'timeout', 'invalid option timeout: expected a whole number of milliseconds >= 0, got 1.5');
    await rejectsOption(discoverCluster({ url: dead, onRetry: 1 as never }), 'onRetry', 'invalid option onRetry: expected a function, got 1');
    await rejectsOption(discoverCluster({ url: 'nope' }), 'url', 'invalid option url: "nope" is not a URL');
  });

  it('an aborted signal ends it with reason "aborted", retries and all', async () => {
    const url = `http://127.0.0.1:${await freePort()}/v2/keys/discovery/x`;
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    const t0 = Date.now();
    let retries = 0;
    await assert.rejects(discoverCluster({ url, timeout: 0, signal: ac.signal, onRetry: () => retries++ }), (err: unknown) => {
      assert.ok(err instanceof DiscoveryError, String(err));
      assert.equal(err.reason, 'aborted');
      assert.equal(err.message, `discovery ${url}: aborted before the cluster was known`);
      return true;
    });
    assert.ok(Date.now() - t0 < 1000);
    assert.ok(retries >= 1);
  });

  it('createProxy passes the abort on: a pending discovery stops', async () => {
    const url = `http://127.0.0.1:${await freePort()}/v2/keys/discovery/x`;
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    await assert.rejects(createProxy({ listenClientUrls: ['http://127.0.0.1:0'], discovery: url, signal: ac.signal }), { name: 'DiscoveryError', reason: 'aborted' });
  });
});

describe('DNS SRV names', () => {
  it('are the ones etcd asks, https first, with the -<name> suffix', () => {
    assert.deepEqual(srvServiceNames('example.com'), { https: '_etcd-server-ssl._tcp.example.com', http: '_etcd-server._tcp.example.com' });
    assert.deepEqual(srvServiceNames('example.com.', 'blue'), {
      https: '_etcd-server-ssl-blue._tcp.example.com',
      http: '_etcd-server-blue._tcp.example.com',
    });
  });

  it('discoverSrv checks its options', async () => {
    await rejectsOption(discoverSrv({ domain: '' }), 'domain', 'invalid option domain: expected a domain name such as example.com, got ""');
    await rejectsOption(discoverSrv({ domain: 'example.com', dnsServers: ['x'] }), 'dnsServers[0]', 'invalid option dnsServers[0]: expected "ip" or "ip:port" ("[ipv6]:port"), got "x" (Invalid IP address: x)');
    await rejectsOption(discoverSrv({ domain: 'example.com', timeout: 0 }), 'timeout', 'invalid option timeout: expected a whole number of milliseconds >= 1, got 0');
  });
});
