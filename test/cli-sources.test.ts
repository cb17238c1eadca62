import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FlagError } from '../src/cli/flags.js';
import { parseSettings } from '../src/cli/sources.js';

/** A one-line FlagError whose message matches. */
function oneLine(message: RegExp): (err: unknown) => boolean {
  return (err) => err instanceof FlagError && message.test(err.message) && !err.message.includes('\n');
}

describe('src/cli/sources: ETCD_* environment variables', () => {
  test('every flag has its variable: ETCD_ + the flag in upper case, "-" as "_"', () => {
    const f = parseSettings([], {
      ETCD_PROXY: 'readonly',
      ETCD_INITIAL_CLUSTER: 'infra0=http://10.0.1.10:2380',
      ETCD_LISTEN_CLIENT_URLS: 'http://127.0.0.1:2379,http://10.0.1.20:2379',
      ETCD_PROXY_FAILURE_WAIT: '7000',
      ETCD_PROXY_READ_TIMEOUT: '250',
      ETCD_NAME: 'host1',
      ETCD_CERT_FILE: '/tls/server.crt',
      ETCD_CLIENT_CERT_AUTH: 'true',
      ETCD_CORS: 'https://app.example',
      ETCD_PIPELINE_READS: '8',
      PATH: '/usr/bin',
    });
    assert.equal(f.options.mode, 'readonly');
    assert.equal(f.options.initialCluster, 'infra0=http://10.0.1.10:2380');
    assert.deepEqual(f.options.listenClientUrls, ['http://127.0.0.1:2379', 'http://10.0.1.20:2379']);
    assert.equal(f.options.failureWait, 7000);
    assert.equal(f.options.readTimeout, 250);
    assert.equal(f.name, 'host1');
    assert.equal(f.options.dataDir, 'host1.etcd');
    assert.equal(f.options.certFile, '/tls/server.crt');
    assert.equal(f.options.clientCertAuth, true);
    assert.equal(f.options.cors, 'https://app.example');
    assert.equal(f.options.pipelineReads, 8);
    assert.deepEqual(f.warnings, []);
    assert.equal(f.describe('proxy-failure-wait'), 'ETCD_PROXY_FAILURE_WAIT');
  });

  test('a flag beats its variable, with a warning naming the variable; an empty variable is unset, as in etcd', () => {
    const f = parseSettings(['--proxy-failure-wait', '9000'], { ETCD_PROXY_FAILURE_WAIT: '7000', ETCD_DATA_DIR: '' });
    assert.equal(f.options.failureWait, 9000);
    assert.equal(f.options.dataDir, 'default.etcd');
    assert.deepEqual(f.warnings, ['warning: ETCD_PROXY_FAILURE_WAIT is ignored: --proxy-failure-wait is given on the command line, and a flag beats its variable']);
    assert.equal(f.describe('proxy-failure-wait'), '--proxy-failure-wait');
  });

  test("a member's variables are ignored with one warning line each, and so are unknown ETCD_* ones; the proxy still starts", () => {
    const f = parseSettings([], {
      ETCD_LISTEN_PEER_URLS: 'http://10.0.1.20:2380',
      ETCD_INITIAL_CLUSTER_STATE: 'new',
      ETCD_ADVERTISE_CLIENT_URLS: 'http://10.0.1.20:2379',
      ETCD_NOT_A_THING: 'x',
      ETCDCTL_API: '3',
    });
    assert.deepEqual(f.warnings, [
      "warning: ETCD_ADVERTISE_CLIENT_URLS is ignored: a proxy does not use it (it is an etcd member's setting)",
      "warning: ETCD_INITIAL_CLUSTER_STATE is ignored: a proxy does not use it (it is an etcd member's setting)",
      "warning: ETCD_LISTEN_PEER_URLS is ignored: a proxy does not use it (it is an etcd member's setting)",
      'warning: ETCD_NOT_A_THING is ignored: not an environment variable etcd or this proxy reads',
    ]);
    assert.equal(f.options.mode, 'readwrite');
  });

  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ ETCD_PROXY_FAILURE_WAIT: 'abc' }, /^ETCD_PROXY_FAILURE_WAIT: "abc" is not a whole number of milliseconds$/],
    [{ ETCD_PROXY: 'off' }, /^ETCD_PROXY=off means running an etcd member/],
    [{ ETCD_PROXY: 'maybe' }, /^ETCD_PROXY must be on or readonly, got "maybe"$/],
    [{ ETCD_CLIENT_CERT_AUTH: 'yes' }, /^ETCD_CLIENT_CERT_AUTH: "yes" is not true or false$/],
    [{ ETCD_INITIAL_CLUSTER: 'a' }, /^ETCD_INITIAL_CLUSTER: entry "a": no "="/],
    [{ ETCD_DISCOVERY_SRV_NAME: 'blue' }, /^ETCD_DISCOVERY_SRV_NAME needs ETCD_DISCOVERY_SRV$/],
    [{ ETCD_V3_PREFIX: '/p' }, /^ETCD_V3_PREFIX needs ETCD_BACKEND=v3$/],
    [{ ETCD_DISCOVERY: 'http://x/d', ETCD_INITIAL_CLUSTER: 'a=http://127.0.0.1:2380' }, /^ETCD_INITIAL_CLUSTER and ETCD_DISCOVERY are both given/],
  ];
  for (const [env, message] of bad) {
    test(`rejects ${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')} with one line naming the variable`, () => {
      assert.throws(() => parseSettings([], env), oneLine(message));
    });
  }
});

describe('src/cli/sources: --config-file (etcd.conf.yml)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'etcd-v2-proxy-config-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const file = async (name: string, text: string): Promise<string> => {
    const path = join(dir, name);
    await writeFile(path, text);
    return path;
  };

  test("etcd's sample etcd.conf.yml, made a proxy's: its keys, client-transport-security: included; empty keys keep their defaults", async () => {
    const path = await file(
      'sample.yml',
      [
        '# This is the configuration file for the etcd server.',
        "name: 'proxy1'",
        'data-dir:',
        'wal-dir:',
        'snapshot-count: 10000',
        'heartbeat-interval: 100',
        'listen-peer-urls: http://localhost:2380',
        'listen-client-urls: http://127.0.0.1:22379',
        'cors:',
        'initial-advertise-peer-urls: http://localhost:2380',
        'discovery:',
        "discovery-fallback: 'proxy'",
        'discovery-srv:',
        'initial-cluster: "infra0=http://10.0.1.10:2380,infra1=http://10.0.1.11:2380"',
        "initial-cluster-token: 'etcd-cluster'",
        "proxy: 'readonly'",
        'proxy-failure-wait: 6000',
        'proxy-refresh-interval: 30000',
        'proxy-dial-timeout: 1000',
        'proxy-write-timeout: 5000',
        'proxy-read-timeout: 0',
        'client-transport-security:',
        '  cert-file: /tls/server.crt',
        '  key-file: /tls/server.key',
        '  client-cert-auth: true',
        '  trusted-ca-file: /tls/ca.crt',
        '  auto-tls: false',
        'peer-transport-security:',
        '  cert-file: /tls/peer.crt',
        '  key-file: /tls/peer.key',
        '  client-cert-auth: false',
        '  trusted-ca-file:',
        '  auto-tls: false',
        'log-outputs: [stderr]',
        "auto-compaction-retention: '1'",
        'cipher-suites: [',
        '  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256',
        ']',
      ].join('\n'),
    );
    const f = parseSettings(['--config-file', path]);
    assert.equal(f.configFile, path);
    assert.equal(f.name, 'proxy1');
    assert.equal(f.options.dataDir, 'proxy1.etcd');
    assert.deepEqual(f.options.listenClientUrls, ['http://127.0.0.1:22379']);
    assert.equal(f.options.initialCluster, 'infra0=http://10.0.1.10:2380,infra1=http://10.0.1.11:2380');
    assert.equal(f.options.mode, 'readonly');
    assert.equal(f.options.failureWait, 6000);
    assert.equal(f.options.readTimeout, 0);
    assert.equal(f.options.cors, '*', 'an empty cors: is etcd\'s default');
    assert.equal(f.options.certFile, '/tls/server.crt');
    assert.equal(f.options.keyFile, '/tls/server.key');
    assert.equal(f.options.clientCertAuth, true);
    assert.equal(f.options.trustedCaFile, '/tls/ca.crt');
    assert.equal(f.options.peerCertFile, '/tls/peer.crt');
    assert.equal(f.options.peerKeyFile, '/tls/peer.key');
    assert.equal(f.options.peerTrustedCaFile, undefined);
    assert.equal(f.describe('proxy-failure-wait'), `${path}: proxy-failure-wait`);
    assert.equal(f.describe('cert-file'), `${path}: client-transport-security.cert-file`);
    // One warning per member-only key that has a value, naming it; none for the empty ones (wal-dir:).
    assert.equal(f.warnings.filter((w) => w.includes('wal-dir')).length, 0);
    for (const key of ['snapshot-count', 'heartbeat-interval', 'listen-peer-urls', 'initial-advertise-peer-urls', 'discovery-fallback', 'initial-cluster-token', 'log-outputs', 'auto-compaction-retention', 'cipher-suites']) {
      assert.equal(f.warnings.filter((w) => w.includes(`: ${key} is ignored`)).length, 1, key);
    }
    assert.ok(f.warnings.every((w) => w.startsWith(`warning: ${path}: `) && !w.includes('\n')), f.warnings.join('\n'));
  });

  test('the config file replaces flags and environment variables, with a warning naming each one ignored; ETCD_CONFIG_FILE names it too', async () => {
    const path = await file('precedence.yml', 'proxy-failure-wait: 6000\nlisten-client-urls: http://127.0.0.1:22379\n');
    const f = parseSettings(['--config-file', path, '--proxy-failure-wait', '9000'], { ETCD_PROXY_FAILURE_WAIT: '7000', ETCD_PROXY: 'readonly' });
    assert.equal(f.options.failureWait, 6000);
    assert.equal(f.options.mode, 'readwrite');
    assert.deepEqual(f.warnings, [
      `warning: --proxy-failure-wait is ignored: --config-file ${path} replaces flags and environment variables (as in etcd)`,
      `warning: ETCD_PROXY is ignored: --config-file ${path} replaces flags and environment variables (as in etcd)`,
      `warning: ETCD_PROXY_FAILURE_WAIT is ignored: --config-file ${path} replaces flags and environment variables (as in etcd)`,
    ]);
    const g = parseSettings([], { ETCD_CONFIG_FILE: path, ETCD_PROXY_FAILURE_WAIT: '7000' });
    assert.equal(g.options.failureWait, 6000);
    assert.deepEqual(g.warnings, [`warning: ETCD_PROXY_FAILURE_WAIT is ignored: ETCD_CONFIG_FILE=${path} replaces flags and environment variables (as in etcd)`]);
  });

  test('YAML 1.1 as etcd reads it: proxy: on is the word on; yes/no are bools; a list is read as a comma list', async () => {
    const path = await file('yaml11.yml', 'proxy: on\nclient-transport-security:\n  client-cert-auth: yes\ncors: [https://a.example, https://b.example]\n');
    const f = parseSettings(['--config-file', path]);
    assert.equal(f.options.mode, 'readwrite');
    assert.equal(f.options.clientCertAuth, true);
    assert.equal(f.options.cors, 'https://a.example,https://b.example');
  });

  test('an empty file is all defaults, and still the file the settings came from (flags are ignored)', async () => {
    const path = await file('empty.yml', '# nothing\n');
    const f = parseSettings(['--config-file', path]);
    assert.equal(f.options.initialCluster, 'default=http://localhost:2380');
    assert.deepEqual(f.warnings, []);
    assert.equal(f.configFile, path, 'the start-up line says which file was loaded');
    const g = parseSettings(['--config-file', path, '--proxy', 'readonly']);
    assert.equal(g.configFile, path);
    assert.equal(g.options.mode, 'readwrite');
  });

  test("names of JavaScript objects' own properties are not settings: --constructor, ETCD_CONSTRUCTOR, __proto__: and toString: are unknown", async () => {
    assert.throws(() => parseSettings(['--constructor', 'x']), oneLine(/^unknown flag --constructor/));
    assert.throws(() => parseSettings(['--toString=1']), oneLine(/^unknown flag --toString/));
    assert.deepEqual(parseSettings([], { ETCD_CONSTRUCTOR: 'x' }).warnings, ['warning: ETCD_CONSTRUCTOR is ignored: not an environment variable etcd or this proxy reads']);
    const path = await file('proto.yml', '__proto__:\n  cert-file: /x\ntoString: 1\nclient-transport-security:\n  constructor: 1\n');
    const f = parseSettings(['--config-file', path]);
    assert.equal(f.options.certFile, undefined);
    assert.deepEqual(f.warnings, [
      `warning: ${path}: __proto__ is ignored: not a key etcd or this proxy reads`,
      `warning: ${path}: toString is ignored: not a key etcd or this proxy reads`,
      `warning: ${path}: client-transport-security.constructor is ignored: a proxy does not use it`,
    ]);
  });

  test('unknown keys and TLS keys outside their block are ignored with a warning', async () => {
    const path = await file('unknown.yml', 'proxy-failur-wait: 10\ncert-file: /tls/x.crt\nclient-transport-security:\n  auto-tls: true\n');
    const f = parseSettings(['--config-file', path]);
    assert.equal(f.options.certFile, undefined);
    assert.deepEqual(f.warnings, [
      `warning: ${path}: proxy-failur-wait is ignored: not a key etcd or this proxy reads`,
      `warning: ${path}: cert-file is ignored: etcd reads it under client-transport-security:`,
      `warning: ${path}: client-transport-security.auto-tls is ignored: the proxy makes no certificates; give cert-file and key-file`,
    ]);
  });

  test('malformed values and files: one line naming the file and the key', async () => {
    const cases: Array<[string, RegExp]> = [
      ['proxy-failure-wait: abc\n', /: proxy-failure-wait: "abc" is not a whole number of milliseconds$/],
      ['proxy-dial-timeout: 1.5\n', /: proxy-dial-timeout: "1\.5" is not a whole number of milliseconds$/],
      ["proxy: 'off'\n", /: proxy: off means running an etcd member/],
      ['client-transport-security:\n  client-cert-auth: maybe\n', /: client-transport-security\.client-cert-auth: "maybe" is not true or false$/],
      ['initial-cluster:\n  a: b\n', /: initial-cluster: expected name=url,\.\.\., got a YAML mapping$/],
      ['client-transport-security: yes\n', /: client-transport-security: expected a mapping/],
      ['proxy: on\nproxy: readonly\n', /: not valid YAML at line 2, column 1: Map keys must be unique/],
      ['- a\n- b\n', /: expected a YAML mapping of etcd's settings/],
      // A "billion laughs" file: too many alias expansions.
      [`a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n`, /: cannot be read as etcd's settings: /],
    ];
    for (const [i, [text, message]] of cases.entries()) {
      const path = await file(`bad${i}.yml`, text);
      assert.throws(() => parseSettings(['--config-file', path]), oneLine(new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}${message.source}`)), text);
    }
    assert.throws(() => parseSettings(['--config-file', join(dir, 'absent.yml')]), oneLine(/^--config-file: cannot read .*absent\.yml: ENOENT$/));
    assert.throws(() => parseSettings(['--config-file=']), oneLine(/^--config-file must not be empty$/));
  });
});
