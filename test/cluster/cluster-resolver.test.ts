/**
 * Unit tests of the ClusterResolver without etcd: option checks, the peers
 * it will ask, and how start()/refresh() fail when no peer can be reached
 * (a 127.0.0.1 port nothing listens on: connection refused) or when it is
 * closed. What it does against a real cluster is in test/integration/.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { freePort } from '../../examples/local-etcd.js';
import { ClusterResolver, ClusterUnreachableError, InitialClusterError, InvalidOptionError } from '../../src/index.js';

describe('ClusterResolver options', () => {
  const invalid: Array<{ options: Record<string, unknown>; option: string; message: string }> = [
    {
      options: {},
      option: 'peerUrls',
      message: 'invalid option peerUrls: give peerUrls or initialCluster: where is the cluster?',
    },
    {
      options: { peerUrls: [] },
      option: 'peerUrls',
      message: 'invalid option peerUrls: expected a non-empty array of peer URLs, got object',
    },
    {
      options: { peerUrls: 'http://127.0.0.1:2380' },
      option: 'peerUrls',
      message: 'invalid option peerUrls: expected a non-empty array of peer URLs, got "http://127.0.0.1:2380"',
    },
    {
      options: { peerUrls: ['http://127.0.0.1:2380', 'http://127.0.0.1'] },
      option: 'peerUrls[1]',
      message: 'invalid option peerUrls[1]: "http://127.0.0.1" must give a port (host:port)',
    },
    {
      options: { peerUrls: [2380] },
      option: 'peerUrls[0]',
      message: 'invalid option peerUrls[0]: 2380 is not a string',
    },
    {
      options: { peerUrls: ['http://127.0.0.1:2380'], refreshInterval: 0 },
      option: 'refreshInterval',
      message: 'invalid option refreshInterval: expected a whole number of milliseconds >= 1, got 0',
    },
    {
      options: { peerUrls: ['http://127.0.0.1:2380'], dialTimeout: 1.5 },
      option: 'dialTimeout',
      message: 'invalid option dialTimeout: expected a whole number of milliseconds >= 1, got 1.5',
    },
    {
      options: { peerUrls: ['http://127.0.0.1:2380'], requestTimeout: '5s' },
      option: 'requestTimeout',
      message: 'invalid option requestTimeout: expected a whole number of milliseconds >= 1, got "5s"',
    },
    {
      options: { peerUrls: ['http://127.0.0.1:2380'], startTimeout: -1 },
      option: 'startTimeout',
      message: 'invalid option startTimeout: expected a whole number of milliseconds >= 1, got -1',
    },
    {
      options: { peerUrls: ['http://127.0.0.1:2380'], signal: 'abort' },
      option: 'signal',
      message: 'invalid option signal: expected an AbortSignal, got "abort"',
    },
  ];
  for (const c of invalid) {
    it(`refuses ${c.message.replace(/^invalid option /, '')}`, () => {
      assert.throws(
        () => new ClusterResolver(c.options as never),
        (err: unknown) => {
          assert.ok(err instanceof InvalidOptionError, String(err));
          assert.equal(err.option, c.option);
          assert.equal(err.message, c.message);
          return true;
        },
      );
    });
  }

  it('refuses a malformed initialCluster with an InitialClusterError naming the entry', () => {
    assert.throws(() => new ClusterResolver({ initialCluster: 'a=http://127.0.0.1:2380,b=notaurl' }), {
      name: 'InitialClusterError',
      message: 'invalid initialCluster entry "b=notaurl": bad peer URL: "notaurl" is not a URL',
    });
    assert.throws(() => new ClusterResolver({ initialCluster: '' }), InitialClusterError);
  });

  it('asks the given peer URLs, normalised; or those of initialCluster, sorted and without repeats', () => {
    const fromPeers = new ClusterResolver({ peerUrls: ['http://127.0.0.1:2382/', 'https://[::1]:2380'] });
    assert.deepEqual(fromPeers.peerUrls, ['http://127.0.0.1:2382', 'https://[::1]:2380']);
    const fromCluster = new ClusterResolver({
      initialCluster: 'b=http://127.0.0.1:2381,a=http://127.0.0.1:2380,c=http://127.0.0.1:2381',
    });
    assert.deepEqual(fromCluster.peerUrls, ['http://127.0.0.1:2380', 'http://127.0.0.1:2381']);
    // peerUrls win over initialCluster, as a cluster file wins over --initial-cluster.
    const both = new ClusterResolver({ peerUrls: ['http://127.0.0.1:2399'], initialCluster: 'a=http://127.0.0.1:2380' });
    assert.deepEqual(both.peerUrls, ['http://127.0.0.1:2399']);
  });

  it('knows nothing before start and uses etcd defaults', () => {
    const r = new ClusterResolver({ peerUrls: ['http://127.0.0.1:2380'] });
    assert.equal(r.snapshot, undefined);
    assert.deepEqual(r.clientUrls, []);
    assert.equal(r.lastRefresh, undefined);
    assert.equal(r.stale, false);
    assert.equal(r.refreshInterval, 30000);
    r.close();
  });
});

describe('ClusterResolver without a reachable peer', () => {
  it('refresh() rejects with ClusterUnreachableError naming every peer and why it failed', async () => {
    const p1 = await freePort();
    const p2 = await freePort();
    const peers = [`http://127.0.0.1:${p1}`, `http://127.0.0.1:${p2}`].sort();
    const r = new ClusterResolver({ peerUrls: peers });
    try {
      await assert.rejects(r.refresh(), (err: unknown) => {
        assert.ok(err instanceof ClusterUnreachableError, String(err));
        assert.deepEqual(err.peerUrls, peers);
        for (const p of peers) assert.match(err.message, new RegExp(`${p}: connect ECONNREFUSED`));
        return true;
      });
      assert.equal(r.snapshot, undefined);
    } finally {
      r.close();
    }
  });

  it('start() gives up after startTimeout with the last error', async () => {
    const peer = `http://127.0.0.1:${await freePort()}`;
    const r = new ClusterResolver({ peerUrls: [peer], startTimeout: 600 });
    const t0 = Date.now();
    try {
      await assert.rejects(r.start(), (err: unknown) => {
        assert.ok(err instanceof ClusterUnreachableError, String(err));
        assert.deepEqual(err.peerUrls, [peer]);
        assert.match(err.message, /no usable answer within 600 ms \(startTimeout\); last error: .*ECONNREFUSED/);
        return true;
      });
    } finally {
      r.close();
    }
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 550 && elapsed < 2500, `start() took ${elapsed} ms for a 600 ms startTimeout`);
  });

  it('start() reports the last answer it got, not the attempt the deadline cut short', async () => {
    // A fake peer: a real member cannot be made to fail its /members and then hang on the next ask.
    let asked = 0;
    const server = createServer((req, res) => {
      asked++;
      req.resume();
      if (asked === 1) res.writeHead(500, { 'Content-Type': 'text/plain' }).end('broken\n');
      // later asks: no answer until the deadline
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const peer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const r = new ClusterResolver({ peerUrls: [peer], startTimeout: 1500 });
    try {
      await assert.rejects(r.start(), (err: unknown) => {
        assert.ok(err instanceof ClusterUnreachableError, String(err));
        assert.match(err.message, /no usable answer within 1500 ms \(startTimeout\); last error: .*500/);
        assert.doesNotMatch(err.message, /abort/i);
        return true;
      });
      assert.ok(asked >= 2, `asked ${asked} times: the second ask was the one cut short`);
    } finally {
      r.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('close() cuts a pending start() short', async () => {
    const r = new ClusterResolver({ peerUrls: [`http://127.0.0.1:${await freePort()}`], startTimeout: 20000 });
    const started = r.start();
    setTimeout(() => r.close(), 150);
    const t0 = Date.now();
    await assert.rejects(started, (err: unknown) => {
      assert.ok(err instanceof ClusterUnreachableError, String(err));
      assert.match(err.message, /the resolver was closed/);
      return true;
    });
    assert.ok(Date.now() - t0 < 2500, 'start() ended soon after close()');
  });

  it('an aborted signal closes it: start() rejects at once', async () => {
    const ac = new AbortController();
    const r = new ClusterResolver({ peerUrls: ['http://127.0.0.1:1'], signal: ac.signal });
    ac.abort();
    const t0 = Date.now();
    await assert.rejects(r.start(), /the resolver was closed/);
    assert.ok(Date.now() - t0 < 500);
    const already = new ClusterResolver({ peerUrls: ['http://127.0.0.1:1'], signal: AbortSignal.abort() });
    await assert.rejects(already.start(), /the resolver was closed/);
  });
});
