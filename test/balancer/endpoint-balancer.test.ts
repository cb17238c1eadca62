/**
 * Unit tests of the EndpointBalancer (no network: endpoints are only URLs
 * here, no request is sent): the endpoint set, the order requests try them
 * in, the failureWait cycle and its events, close() and option checks.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Endpoint, EndpointBalancer, InvalidOptionError } from '../../src/index.js';
import type { Endpoint as EndpointType } from '../../src/index.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const A = 'http://127.0.0.1:12001';
const B = 'http://127.0.0.1:12002';
const C = 'http://127.0.0.1:12003';

function urls(list: readonly EndpointType[]): string[] {
  return list.map((e) => e.url);
}

function byUrl(balancer: EndpointBalancer, url: string): EndpointType {
  const e = balancer.endpoints.find((x) => x.url === url);
  assert.ok(e, `${url} is not among ${urls(balancer.endpoints).join(', ')}`);
  return e;
}

/** Counts the events a balancer emits. */
function record(balancer: EndpointBalancer): { down: string[]; up: string[]; sets: string[][] } {
  const seen = { down: [] as string[], up: [] as string[], sets: [] as string[][] };
  balancer.on('endpointDown', (e) => seen.down.push(e.url));
  balancer.on('endpointUp', (e) => seen.up.push(e.url));
  balancer.on('endpoints', (list) => seen.sets.push([...list]));
  return seen;
}

describe('EndpointBalancer.setEndpoints', () => {
  it('keeps each URL once (after normalisation) and skips URLs that are not client URLs', (t) => {
    const b = new EndpointBalancer();
    t.after(() => b.close());
    const seen = record(b);
    b.setEndpoints([A, B, A, `${B}/`, 'notaurl', 'ftp://127.0.0.1:1', 'http://127.0.0.1']);
    assert.deepEqual(urls(b.endpoints).sort(), [A, B]);
    assert.deepEqual(seen.sets.length, 1);
    assert.deepEqual([...seen.sets[0]!].sort(), [A, B]);
  });

  it('keeps the state and the Endpoint object of URLs that stay, retires the ones that go', (t) => {
    const b = new EndpointBalancer({ failureWait: 60000 });
    t.after(() => b.close());
    b.setEndpoints([A, B]);
    const a = byUrl(b, A);
    const bEndpoint = byUrl(b, B);
    b.reportFailure(a, new Error('boom'));
    const failedAt = a.failedAt;
    assert.equal(a.available, false);

    const seen = record(b);
    b.setEndpoints([C, A]);
    assert.equal(byUrl(b, A), a, 'the endpoint that stayed is the same object (same pool, same state)');
    assert.equal(a.available, false, 'a failed endpoint that stays is still within its failureWait');
    assert.equal(a.failedAt, failedAt);
    assert.equal(a.lastError?.message, 'boom');
    assert.equal(byUrl(b, C).available, true, 'a new endpoint starts available');
    assert.deepEqual(urls(b.endpoints).sort(), [A, C]);
    assert.equal(bEndpoint.retired, true, 'the endpoint that left is retired');
    assert.equal(bEndpoint.available, false);
    assert.equal(seen.sets.length, 1);
  });

  it('emits "endpoints" only when the set changes, not when the same URLs come again', (t) => {
    const b = new EndpointBalancer({ endpoints: [A, B] });
    t.after(() => b.close());
    const seen = record(b);
    b.setEndpoints([B, A]);
    b.setEndpoints([A, B, B]);
    assert.equal(seen.sets.length, 0);
    b.setEndpoints([A]);
    assert.deepEqual(seen.sets, [[A]]);
  });

  it('handles IPv6 client URLs', (t) => {
    const b = new EndpointBalancer({ endpoints: ['http://[::1]:2379'] });
    t.after(() => b.close());
    const e = byUrl(b, 'http://[::1]:2379');
    assert.equal(e.hostname, '::1');
    assert.equal(e.port, 2379);
  });
});

describe('EndpointBalancer.order and the failureWait cycle', () => {
  it('lists available endpoints first, then failed ones, oldest failure first', async (t) => {
    const b = new EndpointBalancer({ endpoints: [A, B, C], failureWait: 60000 });
    t.after(() => b.close());
    assert.deepEqual(urls(b.order()).sort(), [A, B, C]);
    b.reportFailure(byUrl(b, B), new Error('first'));
    await sleep(5);
    b.reportFailure(byUrl(b, A), new Error('second'));
    assert.deepEqual(urls(b.order()), [C, B, A]);
    assert.deepEqual(urls(b.available), [C]);
    // A newer failure of B moves it behind A.
    await sleep(5);
    b.reportFailure(byUrl(b, B), new Error('third'));
    assert.deepEqual(urls(b.order()), [C, A, B]);
  });

  it('still offers every endpoint when all are within their failureWait', (t) => {
    const b = new EndpointBalancer({ endpoints: [A], failureWait: 60000 });
    t.after(() => b.close());
    b.reportFailure(byUrl(b, A), new Error('down'));
    assert.deepEqual(urls(b.order()), [A]);
    assert.deepEqual(b.available, []);
  });

  it('emits endpointDown once per outage and never readmits an endpoint whose /health does not answer', async (t) => {
    // Nothing listens on A's port: every probe is refused. etcd's proxy would mark it available after failureWait.
    const b = new EndpointBalancer({ endpoints: [A, B], failureWait: 50, probeMaxInterval: 100, leaderWrites: false });
    t.after(() => b.close());
    const seen = record(b);
    const a = byUrl(b, A);
    const reasons: string[] = [];
    b.on('endpointDown', (_e, reason) => reasons.push(reason.message));
    b.reportFailure(a, new Error('refused'));
    b.reportFailure(a, new Error('refused again'));
    assert.deepEqual(seen.down, [A]);
    assert.deepEqual(reasons, ['refused']);
    assert.equal(a.lastError?.message, 'refused again');
    assert.equal(a.available, false);
    assert.equal(a.state, 'down');
    assert.equal(urls(b.order()).at(-1), A);
    assert.deepEqual(urls(b.plan('GET', '/v2/keys/x')), [B, A], 'a down endpoint is only a last resort');

    await sleep(400); // several probes, all refused
    assert.deepEqual(seen.up, []);
    assert.equal(a.state, 'down');
    assert.deepEqual(urls(b.available), [B]);
  });

  it('ignores a failure reported for an endpoint that is not (or no longer) in the list', async (t) => {
    const b = new EndpointBalancer({ endpoints: [A, B], failureWait: 50 });
    t.after(() => b.close());
    const seen = record(b);
    const stranger = new Endpoint(C);
    t.after(() => stranger.close());
    b.reportFailure(stranger, new Error('not ours'));
    assert.equal(stranger.available, true);

    const gone = byUrl(b, B);
    b.setEndpoints([A]);
    b.reportFailure(gone, new Error('left the cluster'));
    await sleep(80);
    assert.deepEqual(seen.down, []);
    assert.deepEqual(seen.up, []);
    assert.equal(gone.available, false, 'a retired endpoint never comes back');
    assert.deepEqual(urls(b.order()), [A]);
  });

});

describe('EndpointBalancer.close', () => {
  it('clears failureWait timers: a failed endpoint is not brought back after close()', async () => {
    const b = new EndpointBalancer({ endpoints: [A, B], failureWait: 30 });
    const a = byUrl(b, A);
    let ups = 0;
    b.on('endpointUp', () => ups++);
    b.reportFailure(a, new Error('down'));
    b.close();
    await sleep(80);
    assert.equal(a.available, false, 'the timer that would mark it available again did not fire');
    assert.equal(ups, 0);
  });

  it('empties the order, ignores later changes and failures, and is idempotent', () => {
    const b = new EndpointBalancer({ endpoints: [A, B] });
    b.close();
    b.close();
    assert.deepEqual(b.order(), []);
    b.setEndpoints([C]);
    assert.deepEqual(b.order(), []);
    assert.ok(!b.endpoints.some((e) => e.url === C));
    let downs = 0;
    b.on('endpointDown', () => downs++);
    b.reportFailure(byUrl(b, A), new Error('late'));
    assert.equal(downs, 0);
  });

  it('aborting the signal closes it', () => {
    const ac = new AbortController();
    const b = new EndpointBalancer({ endpoints: [A], signal: ac.signal });
    assert.equal(b.order().length, 1);
    ac.abort();
    assert.deepEqual(b.order(), []);
  });

  it('an already aborted signal gives a closed balancer', () => {
    const b = new EndpointBalancer({ endpoints: [A], signal: AbortSignal.abort() });
    assert.deepEqual(b.order(), []);
  });
});

describe('EndpointBalancer timers and the process', () => {
  it('a failed endpoint with failureWait 60000 does not keep a process alive, closed or not', async (t) => {
    // A real child process: it exits by itself only if no timer holds it.
    const dir = await mkdtemp(join(tmpdir(), 'balancer-child-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const script = join(dir, 'child.ts');
    await writeFile(
      script,
      [
        `import { EndpointBalancer } from ${JSON.stringify(pathToFileURL(join(repoRoot, 'src/index.ts')).href)};`,
        `const closed = new EndpointBalancer({ endpoints: [${JSON.stringify(A)}], failureWait: 60000 });`,
        'closed.reportFailure(closed.endpoints[0]!, new Error("down"));',
        'closed.close();',
        `const open = new EndpointBalancer({ endpoints: [${JSON.stringify(B)}], failureWait: 60000 });`,
        'open.reportFailure(open.endpoints[0]!, new Error("down"));',
        'console.log("ready", closed.order().length, open.order().length, open.available.length);',
      ].join('\n'),
    );
    const t0 = Date.now();
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const kill = setTimeout(() => child.pid !== undefined && child.exitCode === null && process.kill(child.pid, 'SIGKILL'), 10000);
    const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
    clearTimeout(kill);
    assert.equal(signal, null, `the child had to be killed: it did not exit by itself\n${out}`);
    assert.equal(code, 0, out);
    assert.equal(out.trim(), 'ready 0 1 0');
    assert.ok(Date.now() - t0 < 8000, `the child took ${Date.now() - t0} ms`);
  });
});

describe('EndpointBalancer options', () => {
  const invalid: Array<{ options: Record<string, unknown>; message: string }> = [
    { options: { failureWait: -1 }, message: 'invalid option failureWait: expected a whole number of milliseconds >= 0, got -1' },
    { options: { failureWait: 1.5 }, message: 'invalid option failureWait: expected a whole number of milliseconds >= 0, got 1.5' },
    { options: { failureWait: '5000' }, message: 'invalid option failureWait: expected a whole number of milliseconds >= 0, got "5000"' },
    { options: { failureWait: Number.NaN }, message: 'invalid option failureWait: expected a whole number of milliseconds >= 0, got NaN' },
    { options: { failureWait: null }, message: 'invalid option failureWait: expected a whole number of milliseconds >= 0, got null' },
    { options: { signal: {} }, message: 'invalid option signal: expected an AbortSignal, got object' },
  ];
  for (const c of invalid) {
    it(`refuses ${c.message.replace(/^invalid option /, '')}`, () => {
      assert.throws(
        () => new EndpointBalancer(c.options as never),
        (err: unknown) => {
          assert.ok(err instanceof InvalidOptionError, String(err));
          assert.equal(err.code, 'ERR_ETCD_PROXY_INVALID_OPTION');
          assert.equal(err.option, Object.keys(c.options)[0]);
          assert.equal(err.message, c.message);
          return true;
        },
      );
    });
  }

  it('defaults failureWait to 5000 ms (etcd --proxy-failure-wait) and accepts 0', () => {
    const b = new EndpointBalancer();
    assert.equal(b.failureWait, 5000);
    b.close();
    const zero = new EndpointBalancer({ failureWait: 0 });
    assert.equal(zero.failureWait, 0);
    zero.close();
  });

  it('an Endpoint refuses a URL that is not http(s)://host:port', () => {
    assert.throws(() => new Endpoint('ftp://127.0.0.1:1'), {
      name: 'InvalidOptionError',
      message: 'invalid option endpoints: "ftp://127.0.0.1:1" must use http:// or https://',
    });
    assert.throws(() => new Endpoint('http://127.0.0.1'), {
      name: 'InvalidOptionError',
      message: 'invalid option endpoints: "http://127.0.0.1" must give a port (host:port)',
    });
  });
});

describe('EndpointBalancer.suspect (a member that lost a hedged read)', () => {
  it('new reads go to the other members first, writes are unchanged; an answer ends it', (t) => {
    const b = new EndpointBalancer({ endpoints: [A, B, C], leaderWrites: false, strategy: 'first-available', failureWait: 60000 });
    t.after(() => b.close());
    const a = byUrl(b, A);
    const suspected: string[] = [];
    const cleared: string[] = [];
    b.on('endpointSuspected', (e) => suspected.push(e.url));
    b.on('endpointCleared', (e) => cleared.push(e.url));
    b.suspect(a);
    b.suspect(a);
    assert.equal(a.suspected, true);
    assert.equal(a.state, 'up', 'suspicion is not a state: writes and the metrics still see it up');
    assert.deepEqual(suspected, [A], 'one event per suspicion');
    for (let i = 0; i < 20; i++) {
      for (const method of ['GET', 'HEAD']) {
        for (const url of ['/v2/keys/k', '/v2/keys/k?quorum=true']) {
          const plan = b.plan(method, url);
          assert.notEqual(plan[0], a, `${method} ${url} went to the suspected member first`);
          assert.equal(plan.length, 3, 'the suspected member is still a last resort');
          assert.equal(plan[2], a);
        }
      }
    }
    // A down member comes after the suspected one.
    b.reportFailure(byUrl(b, C), new Error('refused'));
    assert.deepEqual(urls(b.plan('GET', '/v2/keys/k')), [B, A, C]);
    // Writes: unchanged (first-available puts the first of the list first, suspected or not).
    assert.equal(b.plan('PUT', '/v2/keys/k')[0], b.order()[0]);
    b.reportAnswer(a);
    assert.equal(a.suspected, false);
    assert.deepEqual(cleared, [A]);
  });

  it('every member suspected: reads go to them all as before', (t) => {
    const b = new EndpointBalancer({ endpoints: [A, B], leaderWrites: false });
    t.after(() => b.close());
    for (const e of b.endpoints) b.suspect(e);
    assert.deepEqual(urls(b.plan('GET', '/v2/keys/k')).sort(), [A, B]);
  });

  it('a down member is not suspected, and a suspected one that fails is down, no longer suspected', (t) => {
    const b = new EndpointBalancer({ endpoints: [A, B], leaderWrites: false, failureWait: 60000 });
    t.after(() => b.close());
    const a = byUrl(b, A);
    const bb = byUrl(b, B);
    b.reportFailure(a, new Error('refused'));
    b.suspect(a);
    assert.equal(a.suspected, false);
    b.suspect(bb);
    b.reportFailure(bb, new Error('refused'));
    assert.equal(bb.suspected, false);
    assert.equal(bb.state, 'down');
  });

  it('a suspected member that answers its health probe is cleared', async (t) => {
    const server = createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"health":"true"}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const b = new EndpointBalancer({ endpoints: [url, B], leaderWrites: false });
    t.after(() => b.close());
    const e = byUrl(b, url);
    const cleared = new Promise<EndpointType>((resolve) => b.once('endpointCleared', resolve));
    b.suspect(e);
    assert.equal(e.suspected, true);
    assert.equal(await cleared, e);
    assert.equal(e.suspected, false);
  });
});
