import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FlagError, helpText } from '../src/cli/flags.js';
import { parseSettings } from '../src/cli/sources.js';

describe('src/cli/flags: etcd\'s Security flags', () => {
  test('TLS files, Go bool flags and --cors map to the createProxy options', () => {
    const f = parseSettings([
      '--listen-client-urls', 'https://127.0.0.1:22379',
      '--cert-file', '/tls/server.crt', '--key-file=/tls/server.key', '--trusted-ca-file', '/tls/ca.crt', '--client-cert-auth',
      '--peer-cert-file', '/tls/peer.crt', '--peer-key-file', '/tls/peer.key', '--peer-trusted-ca-file', '/tls/peer-ca.crt',
      '--insecure-skip-tls-verify=false', '--cors', 'https://app.example,http://tool.example:8080',
    ]);
    assert.equal(f.options.certFile, '/tls/server.crt');
    assert.equal(f.options.keyFile, '/tls/server.key');
    assert.equal(f.options.trustedCaFile, '/tls/ca.crt');
    assert.equal(f.options.clientCertAuth, true);
    assert.equal(f.options.peerCertFile, '/tls/peer.crt');
    assert.equal(f.options.peerKeyFile, '/tls/peer.key');
    assert.equal(f.options.peerTrustedCaFile, '/tls/peer-ca.crt');
    assert.equal(f.options.insecureSkipVerify, false);
    assert.equal(f.options.cors, 'https://app.example,http://tool.example:8080');
    assert.deepEqual(f.warnings, []);
  });

  test('unset flags leave TLS unset; --cors defaults to * as in etcd, and empty means * too', () => {
    const f = parseSettings([]);
    for (const key of ['certFile', 'keyFile', 'trustedCaFile', 'clientCertAuth', 'peerCertFile', 'peerKeyFile', 'peerTrustedCaFile', 'insecureSkipVerify'] as const) {
      assert.equal(f.options[key], undefined, key);
    }
    assert.equal(f.options.cors, '*');
    assert.equal(parseSettings(['--cors=']).options.cors, '*');
    assert.match(helpText('cli'), /--cors <origins>\n.*default: '\*'/);
  });

  test('bool flags take Go\'s spellings after "=", never a separate value', () => {
    assert.equal(parseSettings(['--client-cert-auth=1']).options.clientCertAuth, true);
    assert.equal(parseSettings(['-client-cert-auth=F']).options.clientCertAuth, false);
    assert.throws(() => parseSettings(['--client-cert-auth=yes']), new FlagError('--client-cert-auth: "yes" is not true or false'));
    assert.throws(() => parseSettings(['--client-cert-auth', 'true']), /unexpected argument "true"/);
    assert.throws(() => parseSettings(['--cert-file', '']), new FlagError('--cert-file must not be empty'));
    assert.throws(() => parseSettings(['--cors']), new FlagError('--cors needs a value (origins)'));
  });

  test('--peer-client-cert-auth is accepted from etcd command lines, with a warning that it does nothing', () => {
    assert.deepEqual(parseSettings(['--peer-client-cert-auth']).warnings, ['warning: --peer-client-cert-auth is ignored: a proxy has no peer listener']);
  });

  test('--help lists them in a Security group', () => {
    const text = helpText('cli');
    assert.match(text, /\nSecurity:\n {2}--cert-file <path>\n/);
    assert.match(text, /\n {2}--client-cert-auth\n {6}Refuse https clients/);
    assert.match(text, /\n {2}--cors <origins>\n/);
  });
});
