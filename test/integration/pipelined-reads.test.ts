/**
 * `pipelineReads` against a real member: plain GETs that arrive together go
 * to the member pipelined on a few connections, and each client still gets
 * its own answer; what must never wait behind another request (a watch, a
 * quorum read, a write) is not pipelined. The faults of a pipelined
 * connection (a request leaving it, the connection failing, a slow client)
 * are in test/upstream-connection.test.ts, against an upstream that holds
 * its answers, which a real member does not.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectionsTo } from '../../bench/procfs.js';
import { applied, cleanup, cluster, form, freeze, http, member, onCleanup, proxy, RawConnection, requestsReceived, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';

const KEYS = 32;

describe('pipelined reads (pipelineReads: 8)', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  let memberPort: number;

  before(async () => {
    m = await member();
    memberPort = Number(new URL(m.clientUrl).port);
    // Values of different lengths, so that an answer handed to the wrong request shows.
    for (let i = 0; i < KEYS; i++) {
      const res = await http(`${m.clientUrl}/v2/keys/pipe/k${i}`, { method: 'PUT', body: form({ value: `v${i}-${'x'.repeat(i * 37)}` }) });
      assert.equal(res.status, 201, res.body);
    }
  });
  after(cleanup);

  /** Opens `n` client connections to `url` and writes one request on each, all in one turn of the event loop. */
  async function together(url: string, requests: readonly string[]): Promise<RawConnection[]> {
    const conns = await Promise.all(requests.map(() => RawConnection.open(url)));
    // Let the proxy accept them all first, so that the requests reach it in one read of its sockets.
    await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < conns.length; i++) conns[i]!.write(requests[i]!);
    return conns;
  }
  const get = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: p\r\n\r\n`;

  for (const pipelineReads of [8, 1]) {
    it(`${KEYS} GETs of ${KEYS} keys arriving together each get their own key (pipelineReads: ${pipelineReads})`, async () => {
      const p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir(), pipelineReads });
      const conns = await together(p.url, Array.from({ length: KEYS }, (_, i) => get(`/v2/keys/pipe/k${i}`)));
      const answers = await Promise.all(conns.map((c) => c.read()));
      for (let i = 0; i < KEYS; i++) {
        assert.equal(answers[i]!.status, 200, answers[i]!.body);
        const node = (JSON.parse(answers[i]!.body) as { node: { key: string; value: string } }).node;
        assert.equal(node.key, `/pipe/k${i}`);
        assert.equal(node.value, `v${i}-${'x'.repeat(i * 37)}`);
      }
      // The same again on the same client connections: the upstream connections stayed in step.
      for (let i = 0; i < KEYS; i++) conns[i]!.write(get(`/v2/keys/pipe/k${KEYS - 1 - i}`));
      const again = await Promise.all(conns.map((c) => c.read()));
      for (let i = 0; i < KEYS; i++) assert.equal((JSON.parse(again[i]!.body) as { node: { key: string } }).node.key, `/pipe/k${KEYS - 1 - i}`);
      const upstream = connectionsTo(process.pid, [memberPort]);
      if (pipelineReads === 8) assert.ok(upstream <= 8, `${upstream} connections to the member for ${KEYS} GETs pipelined 8 to a connection`);
      else assert.ok(upstream >= KEYS, `${upstream} connections to the member for ${KEYS} GETs without pipelining`);
      for (const c of conns) c.close();
      await p.close();
    });
  }

  it("16 KiB values (each answer fills the client socket's buffer): every GET reaches the member once, and in step", async () => {
    // Such an answer always asks to pause reading; the GETs pipelined behind it were sent a second time
    // (and, once that was fixed, waited for a timeout: nothing resumed reading for them).
    const big = (i: number): string => `${i}-`.padEnd(16 * 1024, String.fromCharCode(97 + (i % 26)));
    for (let i = 0; i < 16; i++) {
      const res = await http(`${m.clientUrl}/v2/keys/pipe/big${i}`, { method: 'PUT', body: form({ value: big(i) }) });
      assert.equal(res.status, 201, res.body);
    }
    const p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir(), pipelineReads: 8 });
    const before = await requestsReceived(m.clientUrl, 'GET');
    const conns = await together(p.url, Array.from({ length: 16 }, (_, i) => get(`/v2/keys/pipe/big${i}`)));
    const started = Date.now();
    const ROUNDS = 5;
    for (let round = 0; round < ROUNDS; round++) {
      if (round > 0) for (let i = 0; i < 16; i++) conns[i]!.write(get(`/v2/keys/pipe/big${(i + round) % 16}`));
      const answers = await Promise.all(conns.map((c) => c.read({ ms: 3000 })));
      for (let i = 0; i < 16; i++) {
        assert.equal(answers[i]!.status, 200);
        assert.equal((JSON.parse(answers[i]!.body) as { node: { value: string } }).node.value, big((i + round) % 16));
      }
    }
    const elapsed = Date.now() - started;
    const received = (await requestsReceived(m.clientUrl, 'GET')) - before;
    assert.equal(received, 16 * ROUNDS, `${received} GETs reached the member for ${16 * ROUNDS} client GETs`);
    assert.ok(elapsed < 1000, `${16 * ROUNDS} GETs in ${elapsed} ms`);
    for (const c of conns) c.close();
    await p.close();
  });

  it('GET /health is not pipelined (etcd answers it with a quorum read); key reads arriving with it are', async () => {
    const p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir(), pipelineReads: 8 });
    const conns = await together(p.url, [...Array.from({ length: 8 }, () => get('/health')), ...Array.from({ length: 8 }, (_, i) => get(`/v2/keys/pipe/k${i}`))]);
    const answers = await Promise.all(conns.map((c) => c.read()));
    assert.deepEqual(answers.map((a) => a.status), Array.from({ length: 16 }, () => 200));
    assert.equal((JSON.parse(answers[0]!.body) as { health: string }).health, 'true');
    const upstream = connectionsTo(process.pid, [memberPort]);
    // 8 for the health checks, one each; the 8 key reads share at most a few.
    assert.ok(upstream >= 8 && upstream <= 11, `${upstream} connections to the member`);
    for (const c of conns) c.close();
    await p.close();
  });

  // etcd reads `wait` and `quorum` with Go's ParseBool: `wait=1` is a watch too. Taken for a plain GET, it was
  // pipelined, and the GETs behind it waited for its event (then got 502 and marked the member down).
  for (const [wait, quorum] of [['wait=true', 'quorum=true'], ['wait=1', 'quorum=T']] as const) {
    it(`a watch (${wait}), a quorum read (${quorum}) and a write are not pipelined: the GETs that arrive with them are answered at once`, async () => {
      const p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir(), pipelineReads: 8 });
      // One request first, so that the proxy has a connection up (a batch starts on it).
      assert.equal((await http(`${p.url}/v2/keys/pipe/k0`)).status, 200);
      const started = Date.now();
      const conns = await together(p.url, [
        get(`/v2/keys/pipe/watched-${wait}?${wait}`),
        get('/v2/keys/pipe/k1'),
        get(`/v2/keys/pipe/k2?${quorum}`),
        get('/v2/keys/pipe/k3'),
        `PUT /v2/keys/pipe/written-${quorum} HTTP/1.1\r\nHost: p\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\nvalue=w`,
        get('/v2/keys/pipe/k4'),
      ]);
      // The watch answers its head at once and its event much later: a GET queued behind it would wait for the event.
      const watchHead = conns[0]!;
      const rest = await Promise.all(conns.slice(1).map((c) => c.read({ ms: 2000 })));
      assert.deepEqual(rest.map((a) => a.status), [200, 200, 200, 201, 200]);
      assert.ok(Date.now() - started < 2000);
      assert.equal((JSON.parse(rest[1]!.body) as { node: { key: string } }).node.key, '/pipe/k2');
      // The watch still gets its event.
      assert.equal((await http(`${m.clientUrl}/v2/keys/pipe/watched-${wait}`, { method: 'PUT', body: form({ value: 'fired' }) })).status, 201);
      const event = await watchHead.read({ ms: 3000 });
      assert.equal((JSON.parse(event.body) as { node: { value: string } }).node.value, 'fired');
      for (const c of conns) c.close();
    });
  }
});

describe('pipelined reads to a member that stops answering', { skip: skipWithoutEtcd }, () => {
  after(cleanup);

  it('each GET queued on its connection waits one responseTimeout, then moves on to another member', async () => {
    // A deadline on the GET being answered handed the ones behind it back, and they went to the same
    // silent member again on a new connection: the k-th of them waited k deadlines.
    const members = await cluster(3);
    const p = await proxy({
      initialCluster: members.map((x) => `${x.name}=${x.peerUrl}`).join(','),
      dataDir: await tempDir(),
      strategy: 'first-available',
      pipelineReads: 8,
      responseTimeout: 1000,
      // Hedging off: this is the deadline path (the test below hedges).
      hedgeDelay: 0,
    });
    assert.equal((await http(`${p.url}/v2/keys/pipe/stop?value=1`, { method: 'PUT' })).status, 201);
    // The plain GET below went once (in CI) to a follower that had not applied the write yet: 404.
    await applied(members, 'pipe/stop');
    const firstUrl = p.balancer.order()[0]!.url;
    const stopped = members.find((x) => x.clientUrl === firstUrl)!;
    // A connection up to the member that will stop, so that the GETs below are batched on it.
    assert.equal((await http(`${p.url}/v2/keys/pipe/stop`)).status, 200);
    onCleanup(() => stopped.signal('SIGCONT'));
    const served: string[] = [];
    p.handler.on('forwarded', (e) => served.push(`${e.url} ${e.endpoint} attempt ${e.attempts}`));
    try {
      await freeze(stopped);
      const conns = await Promise.all(Array.from({ length: 4 }, () => RawConnection.open(p.url)));
      await new Promise((r) => setTimeout(r, 100));
      const started = Date.now();
      for (const c of conns) c.write(`GET /v2/keys/pipe/stop HTTP/1.1\r\nHost: p\r\n\r\n`);
      const answers = await Promise.all(
        conns.map(async (c) => {
          const a = await c.read({ ms: 6000 });
          return { status: a.status, ms: Date.now() - started };
        }),
      );
      assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200], JSON.stringify(answers));
      // One responseTimeout (1 s) each, plus the retry: not 2, 3, 4 s for the ones queued behind.
      for (const a of answers) assert.ok(a.ms < 1900, `answers after ${JSON.stringify(answers.map((x) => x.ms))} ms; served: ${served.join(', ')}`);
      for (const c of conns) c.close();
    } finally {
      stopped.signal('SIGCONT');
    }
  });

  it('with hedged reads, each GET queued on a silent member goes to another member after the hedge delay, not the responseTimeout', async () => {
    const members = await cluster(3);
    const p = await proxy({
      initialCluster: members.map((x) => `${x.name}=${x.peerUrl}`).join(','),
      dataDir: await tempDir(),
      strategy: 'first-available',
      pipelineReads: 8,
      hedgeDelay: 50,
    });
    assert.equal((await http(`${p.url}/v2/keys/pipe/hedge?value=1`, { method: 'PUT' })).status, 201);
    await applied(members, 'pipe/hedge');
    const firstUrl = p.balancer.order()[0]!.url;
    const stopped = members.find((x) => x.clientUrl === firstUrl)!;
    assert.equal((await http(`${p.url}/v2/keys/pipe/hedge`)).status, 200);
    onCleanup(() => stopped.signal('SIGCONT'));
    const hedged: string[] = [];
    p.handler.on('hedged', (e) => hedged.push(`${e.from} -> ${e.to ?? 'none'}: ${e.outcome}`));
    try {
      await freeze(stopped);
      const conns = await Promise.all(Array.from({ length: 4 }, () => RawConnection.open(p.url)));
      const started = Date.now();
      for (const c of conns) c.write(`GET /v2/keys/pipe/hedge HTTP/1.1\r\nHost: p\r\n\r\n`);
      const answers = await Promise.all(
        conns.map(async (c) => {
          const a = await c.read({ ms: 6000 });
          return { status: a.status, ms: Date.now() - started };
        }),
      );
      assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200], JSON.stringify(answers));
      // The default responseTimeout is 10 s: these went round the stopped member after 50 ms.
      for (const a of answers) assert.ok(a.ms < 1000, `answers after ${JSON.stringify(answers.map((x) => x.ms))} ms; hedges: ${hedged.join(', ')}`);
      assert.ok(hedged.some((h) => h.startsWith(`${stopped.clientUrl} -> `) && h.endsWith(': won')), hedged.join(', '));
      for (const c of conns) c.close();
    } finally {
      stopped.signal('SIGCONT');
    }
  });
});
