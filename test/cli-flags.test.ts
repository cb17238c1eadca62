import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FlagError, helpText } from '../src/cli/flags.js';
import { parseSettings } from '../src/cli/sources.js';

describe('src/cli/flags: etcd proxy flags', () => {
  test('the article command, typographic dashes and all, parses with one warning per dashed flag', () => {
    const f = parseSettings(['–proxy', 'on', '–listen-client-urls', 'http://0.0.0.0:22379', '–initial-cluster', 'myetcd1=http://0.0.0.0:12380', '–data-dir', '/home/cmp/temp/proxy']);
    assert.equal(f.options.mode, 'readwrite');
    assert.deepEqual(f.options.listenClientUrls, ['http://0.0.0.0:22379']);
    assert.equal(f.options.initialCluster, 'myetcd1=http://0.0.0.0:12380');
    assert.equal(f.options.dataDir, '/home/cmp/temp/proxy');
    assert.equal(f.warnings.length, 4);
    assert.match(f.warnings[0]!, /"–proxy" starts with a typographic dash \(U\+2013\); reading it as "--proxy"/);
  });

  test('--flag=value, -flag value and etcd defaults', () => {
    const f = parseSettings(['--proxy=readonly', '-name', 'p1', '--proxy-read-timeout=250']);
    assert.equal(f.options.mode, 'readonly');
    assert.equal(f.name, 'p1');
    assert.equal(f.options.dataDir, 'p1.etcd');
    assert.equal(f.options.readTimeout, 250);
    assert.equal(f.options.failureWait, 5000);
    assert.equal(f.options.refreshInterval, 30000);
    assert.equal(f.options.dialTimeout, 1000);
    assert.equal(f.options.writeTimeout, 5000);
    assert.equal(f.options.pipelineReads, 1);
    assert.equal(parseSettings(['--pipeline-reads', '8']).options.pipelineReads, 8);
    assert.equal(f.options.hedgeDelay, 'auto');
    assert.equal(parseSettings(['--hedge-delay', '0']).options.hedgeDelay, 0, '0 turns hedging off');
    assert.equal(parseSettings(['--hedge-delay=40']).options.hedgeDelay, 40);
    assert.equal(parseSettings(['--hedge-delay', 'auto']).options.hedgeDelay, 'auto');
    assert.deepEqual(f.options.listenClientUrls, ['http://localhost:2379']);
    assert.equal(f.options.initialCluster, 'default=http://localhost:2380');
    assert.deepEqual(f.warnings, []);
    assert.equal(parseSettings(['--proxy-failure-wait', '0']).options.failureWait, 0, 'as etcd: a failed endpoint is tried again at once');
    // Given twice: the last counts, as etcd (Go's flag package) takes it, with a warning.
    const twice = parseSettings(['--proxy', 'on', '--proxy=readonly', '-name', 'a']);
    assert.equal(twice.options.mode, 'readonly');
    assert.deepEqual(twice.warnings, ['warning: --proxy is given twice ("on", then "readonly"): the last is used, as in etcd']);
  });

  test('--discovery and --discovery-proxy; the default --initial-cluster no longer applies', () => {
    const f = parseSettings(['--discovery', 'http://127.0.0.1:2379/v2/keys/discovery/t', '--discovery-proxy=127.0.0.1:3128']);
    assert.equal(f.options.discovery, 'http://127.0.0.1:2379/v2/keys/discovery/t');
    assert.equal(f.options.discoveryProxy, '127.0.0.1:3128');
    assert.equal(f.options.initialCluster, undefined);
    assert.equal(f.options.discoverySrv, undefined);
  });

  test('--discovery-srv and --discovery-srv-name', () => {
    const f = parseSettings(['--discovery-srv', 'example.com', '-discovery-srv-name', 'blue']);
    assert.equal(f.options.discoverySrv, 'example.com');
    assert.equal(f.options.discoverySrvName, 'blue');
    assert.equal(f.options.initialCluster, undefined);
    assert.equal('discovery' in f.options, false);
  });

  test('--discovery-srv-dns-servers: a comma list of ip, ip:port and [ipv6]:port, given to createProxy as dnsServers', () => {
    const f = parseSettings(['--discovery-srv', 'example.com', '--discovery-srv-dns-servers', '127.0.0.1:5353, 10.0.0.53,[::1]:53,fd00::53']);
    assert.deepEqual(f.options.dnsServers, ['127.0.0.1:5353', '10.0.0.53', '[::1]:53', 'fd00::53']);
    assert.equal(f.options.discoverySrv, 'example.com');
    assert.equal('dnsServers' in parseSettings(['--discovery-srv', 'example.com']).options, false);
  });

  test('a comma list of listen URLs', () => {
    const f = parseSettings(['--listen-client-urls', 'http://127.0.0.1:1,http://127.0.0.1:2']);
    assert.deepEqual(f.options.listenClientUrls, ['http://127.0.0.1:1', 'http://127.0.0.1:2']);
  });

  test('--backend v3 with --v3-prefix and --v3-user (the password may hold colons)', () => {
    const f = parseSettings(['--backend', 'v3', '--v3-prefix', '/legacy', '--v3-user', 'proxy:pa:ss']);
    assert.equal(f.options.backend, 'v3');
    assert.equal(f.options.v3Prefix, '/legacy');
    assert.equal(f.options.v3Username, 'proxy');
    assert.equal(f.options.v3Password, 'pa:ss');
    const d = parseSettings([]);
    assert.equal(d.options.backend, undefined, 'forwarding (v2) by default');
    assert.equal(d.options.v3Prefix, undefined);
  });

  test('--v3-clients: forward by default, refuse keeps the immediate UNIMPLEMENTED answer', () => {
    assert.equal(parseSettings([]).options.v3Clients, undefined, "createProxy's default: 'forward'");
    assert.equal(parseSettings(['--v3-clients', 'forward']).options.v3Clients, undefined);
    assert.equal(parseSettings(['--v3-clients=refuse']).options.v3Clients, 'refuse');
  });

  const bad: Array<[string[], RegExp]> = [
    [['--backend', 'v4'], /^--backend: expected v2 or v3, got "v4"$/],
    [['--v3-clients', 'deny'], /^--v3-clients: expected forward or refuse, got "deny"$/],
    [['--v3-prefix', '/p'], /^--v3-prefix needs --backend v3$/],
    [['--backend', 'v2', '--v3-user', 'a:b'], /^--v3-user needs --backend v3$/],
    [['--backend', 'v3', '--v3-user', 'nopassword'], /^--v3-user: expected name:password$/],
    [['--backend', 'v3', '--v3-user', ':pw'], /^--v3-user: expected name:password$/],
    [['--proxy', 'off'], /^--proxy off means running an etcd member/],
    [['--proxy', 'maybe'], /^--proxy must be on or readonly, got "maybe"$/],
    [['--bogus', '1'], /^unknown flag --bogus/],
    [['--discovery', 'http://x/d', '--initial-cluster', 'a=http://127.0.0.1:2380'], /^--initial-cluster and --discovery are both given: choose one of --initial-cluster, --discovery or --discovery-srv$/],
    [['--discovery', 'http://x/d', '--discovery-srv', 'example.com'], /^--discovery and --discovery-srv are both given/],
    [['--discovery-srv-name', 'blue'], /^--discovery-srv-name needs --discovery-srv$/],
    [['--discovery-proxy', 'http://127.0.0.1:3128'], /^--discovery-proxy needs --discovery$/],
    [['--discovery-srv-dns-servers', '127.0.0.1'], /^--discovery-srv-dns-servers needs --discovery-srv$/],
    [['--discovery', 'http://x/d', '--discovery-srv-dns-servers', '127.0.0.1'], /^--discovery-srv-dns-servers needs --discovery-srv$/],
    [['--discovery-srv', 'example.com', '--discovery-srv-dns-servers', 'dns.example.com'], /^--discovery-srv-dns-servers: "dns\.example\.com" is not an IP address, ip:port or \[ipv6\]:port/],
    [['--discovery-srv', 'example.com', '--discovery-srv-dns-servers', '127.0.0.1:5353,10.0.0'], /^--discovery-srv-dns-servers: "10\.0\.0" is not an IP address/],
    [['--discovery-srv', 'example.com', '--discovery-srv-dns-servers', '[127.0.0.1]:53'], /^--discovery-srv-dns-servers: "\[127\.0\.0\.1\]:53" is not an IP address/],
    [['--discovery-srv', 'example.com', '--discovery-srv-dns-servers', '127.0.0.1:0'], /^--discovery-srv-dns-servers: "127\.0\.0\.1:0": the port must be 1-65535, got "0"$/],
    [['--discovery-srv', 'example.com', '--discovery-srv-dns-servers', '[::1]:65536'], /^--discovery-srv-dns-servers: "\[::1\]:65536": the port must be 1-65535, got "65536"$/],
    [['--discovery-srv', 'example.com', '--discovery-srv-dns-servers', '127.0.0.1:'], /^--discovery-srv-dns-servers: "127\.0\.0\.1:": the port must be 1-65535, got ""$/],
    [['--discovery-srv', 'example.com', '--discovery-srv-dns-servers', '127.0.0.1,,10.0.0.53'], /^--discovery-srv-dns-servers has an empty entry in "127\.0\.0\.1,,10\.0\.0\.53"$/],
    [['--discovery-srv', 'example.com', '--discovery-srv-dns-servers='], /^--discovery-srv-dns-servers must not be empty$/],
    [['--discovery='], /^--discovery must not be empty$/],
    [['--discovery-srv'], /^--discovery-srv needs a value \(domain\)$/],
    [['--proxy-dial-timeout', 'abc'], /^--proxy-dial-timeout: "abc" is not a whole number of milliseconds$/],
    [['--proxy-failure-wait=1.5'], /^--proxy-failure-wait: "1.5" is not a whole number/],
    [['--proxy-dial-timeout', '0'], /^--proxy-dial-timeout: must be at least 1 ms, got 0$/],
    [['--pipeline-reads', '0'], /^--pipeline-reads: expected a whole number from 1 to 64, got "0"$/],
    [['--pipeline-reads=65'], /^--pipeline-reads: expected a whole number from 1 to 64, got "65"$/],
    [['--pipeline-reads', '8x'], /^--pipeline-reads: expected a whole number from 1 to 64, got "8x"$/],
    [['--hedge-delay', 'fast'], /^--hedge-delay: expected auto or a whole number of milliseconds \(0 = off\), got "fast"$/],
    [['--hedge-delay=1.5'], /^--hedge-delay: expected auto or a whole number of milliseconds \(0 = off\), got "1\.5"$/],
    [['--hedge-delay=-5'], /^--hedge-delay: expected auto or a whole number of milliseconds \(0 = off\), got "-5"$/],
    [['--initial-cluster', 'a'], /^--initial-cluster: entry "a": no "="/],
    [['--initial-cluster', 'a=http://x'], /^--initial-cluster: entry "a=http:\/\/x": bad peer URL: .*port/],
    [['--initial-cluster'], /^--initial-cluster needs a value/],
    [['stray'], /^unexpected argument "stray"/],
    [['--help=yes'], /^--help takes no value$/],
  ];
  for (const [argv, message] of bad) {
    test(`rejects ${argv.join(' ')} with one line naming the flag`, () => {
      assert.throws(
        () => parseSettings(argv),
        (err: unknown) => err instanceof FlagError && message.test(err.message) && !err.message.includes('\n'),
      );
    });
  }

  test('--help lists every flag with its default, grouped like etcd --help', () => {
    const text = helpText('cli');
    for (const group of ['Member:', 'Clustering:', 'Proxy:']) assert.ok(text.includes(group), group);
    assert.match(text, /--proxy-failure-wait <ms>\n.*default: '5000'/);
    assert.match(text, /--listen-client-urls <urls>\n.*default: 'http:\/\/localhost:2379'/);
    for (const flag of ['discovery <url>', 'discovery-proxy <url>', 'discovery-srv <domain>', 'discovery-srv-name <name>', 'discovery-srv-dns-servers <ip\\[:port\\],...>']) {
      assert.match(text, new RegExp(`Clustering:[^]*--${flag}\n[^]*Proxy:`));
    }
    assert.ok(text.indexOf('Member:') < text.indexOf('Clustering:') && text.indexOf('Clustering:') < text.indexOf('Proxy:'));
    // Not an etcd flag, and its help says so.
    assert.match(text, /--discovery-srv-dns-servers <ip\[:port\],\.\.\.>\n {6}Not an etcd flag \(etcd asks the system's resolver\)/);
  });
});
