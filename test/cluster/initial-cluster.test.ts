/**
 * Unit tests of etcd's `--initial-cluster` parsing (no network): what is
 * accepted, how it is normalised, and that every malformed form is refused
 * with an InitialClusterError naming the entry that is wrong.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InitialClusterError, parseInitialCluster } from '../../src/index.js';
import { initialClusterPeerUrls } from '../../src/cluster/initial-cluster.js';

function entries(value: string): Array<[string, string[]]> {
  return [...parseInitialCluster(value).entries()];
}

describe('parseInitialCluster: accepted forms', () => {
  it('parses two members, one peer URL each, in the order given', () => {
    assert.deepEqual(entries('a=http://127.0.0.1:2380,b=http://127.0.0.1:2381'), [
      ['a', ['http://127.0.0.1:2380']],
      ['b', ['http://127.0.0.1:2381']],
    ]);
  });

  it('skips empty entries (a trailing or doubled comma), as etcd does: scripts that build the list in a loop leave them', () => {
    assert.deepEqual(entries('a=http://127.0.0.1:2380,,b=http://127.0.0.1:2381,'), [
      ['a', ['http://127.0.0.1:2380']],
      ['b', ['http://127.0.0.1:2381']],
    ]);
  });

  it('gathers several peer URLs given for one name, dropping repeats', () => {
    assert.deepEqual(
      entries('a=http://127.0.0.1:2380,b=http://127.0.0.1:2381,a=http://10.0.0.1:2380,a=http://127.0.0.1:2380'),
      [
        ['a', ['http://127.0.0.1:2380', 'http://10.0.0.1:2380']],
        ['b', ['http://127.0.0.1:2381']],
      ],
    );
  });

  it('accepts an IPv6 literal in brackets and keeps the brackets', () => {
    assert.deepEqual(entries('a=http://[::1]:2380'), [['a', ['http://[::1]:2380']]]);
    assert.deepEqual(entries('a=https://[fe80::1]:12380'), [['a', ['https://[fe80::1]:12380']]]);
  });

  it('accepts https, host names, a trailing slash and blanks around entries', () => {
    assert.deepEqual(entries(' infra0 = https://node0.example.com:2380/ , infra1=http://localhost:2381'), [
      ['infra0', ['https://node0.example.com:2380']],
      ['infra1', ['http://localhost:2381']],
    ]);
  });

  it('keeps a port written out even when it is the scheme default (etcd wants it explicit)', () => {
    assert.deepEqual(entries('a=http://127.0.0.1:80,b=https://127.0.0.1:443'), [
      ['a', ['http://127.0.0.1:80']],
      ['b', ['https://127.0.0.1:443']],
    ]);
  });

  it('initialClusterPeerUrls gives every peer URL once, sorted, whatever the names (what the proxy asks first)', () => {
    assert.deepEqual(
      initialClusterPeerUrls('z=http://127.0.0.1:2382,a=http://127.0.0.1:2381,b=http://127.0.0.1:2381,a=http://127.0.0.1:2380'),
      ['http://127.0.0.1:2380', 'http://127.0.0.1:2381', 'http://127.0.0.1:2382'],
    );
  });
});

describe('parseInitialCluster: malformed values are refused, naming the bad part', () => {
  const cases: Array<{ value: string; part: string; message: string }> = [
    { value: '', part: '', message: 'invalid initialCluster: it is empty; expected name=peerURL[,name=peerURL...]' },
    { value: '   ', part: '', message: 'invalid initialCluster: it is empty; expected name=peerURL[,name=peerURL...]' },
    { value: 'a', part: 'a', message: 'invalid initialCluster entry "a": no "=": expected name=peerURL' },
    {
      value: 'a=http://127.0.0.1:2380,http://127.0.0.1:2381',
      part: 'http://127.0.0.1:2381',
      message: 'invalid initialCluster entry "http://127.0.0.1:2381": no "=": expected name=peerURL',
    },
    {
      value: '=http://127.0.0.1:2380',
      part: '=http://127.0.0.1:2380',
      message: 'invalid initialCluster entry "=http://127.0.0.1:2380": the member name before "=" is empty',
    },
    { value: 'a=notaurl', part: 'a=notaurl', message: 'invalid initialCluster entry "a=notaurl": bad peer URL: "notaurl" is not a URL' },
    { value: 'a=', part: 'a=', message: 'invalid initialCluster entry "a=": bad peer URL: "" is not a URL' },
    {
      value: 'a=ftp://x:1',
      part: 'a=ftp://x:1',
      message: 'invalid initialCluster entry "a=ftp://x:1": bad peer URL: "ftp://x:1" must use http:// or https://',
    },
    {
      value: 'a=http://127.0.0.1',
      part: 'a=http://127.0.0.1',
      message: 'invalid initialCluster entry "a=http://127.0.0.1": bad peer URL: "http://127.0.0.1" must give a port (host:port)',
    },
    {
      value: 'a=http://127.0.0.1:2380/peer',
      part: 'a=http://127.0.0.1:2380/peer',
      message:
        'invalid initialCluster entry "a=http://127.0.0.1:2380/peer": bad peer URL: "http://127.0.0.1:2380/peer" must not have a path, query or fragment',
    },
    {
      value: 'a=http://u:p@127.0.0.1:2380',
      part: 'a=http://u:p@127.0.0.1:2380',
      message: 'invalid initialCluster entry "a=http://u:p@127.0.0.1:2380": bad peer URL: "http://u:p@127.0.0.1:2380" must not carry credentials',
    },
    {
      value: 'a=http://127.0.0.1:99999',
      part: 'a=http://127.0.0.1:99999',
      message: 'invalid initialCluster entry "a=http://127.0.0.1:99999": bad peer URL: "http://127.0.0.1:99999" is not a URL',
    },
    {
      value: ' , ,',
      part: '',
      message: 'invalid initialCluster: it has no entry; expected name=peerURL[,name=peerURL...]',
    },
    {
      value: 'a=http://127.0.0.1:2380,b=http://127.0.0.1',
      part: 'b=http://127.0.0.1',
      message: 'invalid initialCluster entry "b=http://127.0.0.1": bad peer URL: "http://127.0.0.1" must give a port (host:port)',
    },
  ];
  for (const c of cases) {
    it(`refuses ${JSON.stringify(c.value)}`, () => {
      assert.throws(
        () => parseInitialCluster(c.value),
        (err: unknown) => {
          assert.ok(err instanceof InitialClusterError, `expected an InitialClusterError, got ${String(err)}`);
          assert.equal(err.code, 'ERR_ETCD_PROXY_INITIAL_CLUSTER');
          assert.equal(err.part, c.part);
          assert.equal(err.message, c.message);
          return true;
        },
      );
    });
  }

  it('refuses a value that is not a string', () => {
    assert.throws(() => parseInitialCluster(42 as unknown as string), InitialClusterError);
    assert.throws(() => parseInitialCluster(undefined as unknown as string), InitialClusterError);
  });
});
