/**
 * What is hedged and what is not, with fake members on 127.0.0.1 whose
 * silence is under the test's control (a real etcd is used by
 * test/integration/hedged-reads.test.ts): a plain GET to a silent member is
 * answered by another after the hedge delay; a watch, a write and a read
 * whose answer already started are never sent twice.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { describe, it } from 'node:test';
import { EndpointBalancer, V2ProxyHandler } from '../../src/index.js';
import type { HedgedEvent } from '../../src/index.js';

interface FakeMember {
  url: string;
  /** Request lines received, in order. */
  readonly requests: string[];
  /** Connections that closed (the proxy closed them, or they failed) before close(). */
  closedByProxy(): number;
  close(): void;
}

/** A member that calls `answer` for each request (or stays silent when it does nothing). */
async function fakeMember(answer: (socket: Socket, requestLine: string) => void): Promise<FakeMember> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  let closed = 0;
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (sockets.delete(socket)) closed++;
    });
    socket.on('data', (d: Buffer) => {
      for (const line of d.toString('latin1').split('\r\n')) {
        // Key requests only: a suspected member also gets health probes (GET /health).
        if (/^(GET|HEAD|PUT|POST|DELETE) \/v2\//.test(line)) {
          requests.push(line);
          answer(socket, line);
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    closedByProxy: () => closed,
    close: () => {
      const open = [...sockets];
      sockets.clear();
      for (const s of open) s.destroy();
      server.close();
    },
  };
}

const ok = (s: Socket): void => void s.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}');

/** A handler in front of `silent` then `good` (in that order), its server's URL and its hedged events. */
async function front(silent: FakeMember, good: FakeMember, options: { hedgeDelay: number; responseTimeout?: number }) {
  const balancer = new EndpointBalancer({ endpoints: [silent.url, good.url], strategy: 'first-available', leaderWrites: false });
  // setEndpoints shuffles: make the silent member first.
  while (balancer.order()[0]!.url !== silent.url) balancer.setEndpoints([silent.url, good.url]);
  const handler = new V2ProxyHandler({ balancer, ...options });
  const hedged: HedgedEvent[] = [];
  handler.on('hedged', (e) => hedged.push(e));
  const server = createHttpServer(handler.handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hedged,
    balancer,
    close() {
      handler.close();
      server.close();
      balancer.close();
    },
  };
}

/** One request; resolves with the status, the body and the ms it took. */
function send(url: string, method = 'GET'): Promise<{ status: number; body: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - started }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('hedged reads with fake members', () => {
  it('a GET to a silent member is answered by the next one after the hedge delay; the silent one is aborted and suspected', async (t) => {
    const silent = await fakeMember(() => undefined);
    const good = await fakeMember(ok);
    const p = await front(silent, good, { hedgeDelay: 40 });
    t.after(() => [p, silent, good].forEach((x) => x.close()));
    const res = await send(`${p.url}/v2/keys/a`);
    assert.equal(res.status, 200);
    assert.equal(res.body, '{}');
    assert.ok(res.ms >= 39 && res.ms < 1000, `answered after ${res.ms} ms (responseTimeout: 10 s)`);
    assert.deepEqual(
      p.hedged.map((e) => ({ ...e })),
      [{ method: 'GET', url: '/v2/keys/a', from: silent.url, to: good.url, outcome: 'won', delayMs: 40 }],
    );
    assert.deepEqual([silent.requests, good.requests], [['GET /v2/keys/a HTTP/1.1'], ['GET /v2/keys/a HTTP/1.1']]);
    assert.equal(p.balancer.endpoints.find((e) => e.url === silent.url)!.suspected, true);
    // The next read goes to the other member at once.
    const next = await send(`${p.url}/v2/keys/b`);
    assert.equal(next.status, 200);
    assert.deepEqual(good.requests.at(-1), 'GET /v2/keys/b HTTP/1.1');
    assert.equal(silent.requests.length, 1);
  });

  for (const [method, path] of [['GET', '/v2/keys/w?wait=true'], ['PUT', '/v2/keys/p?value=1'], ['POST', '/v2/keys/q?value=1']] as const) {
    it(`${method} ${path} to a silent member is never hedged: it waits for responseTimeout`, async (t) => {
      const silent = await fakeMember(() => undefined);
      const good = await fakeMember(ok);
      const p = await front(silent, good, { hedgeDelay: 20, responseTimeout: 300 });
      t.after(() => [p, silent, good].forEach((x) => x.close()));
      const res = await send(`${p.url}${path}`, method);
      assert.ok(res.ms >= 290, `answered after ${res.ms} ms`);
      assert.deepEqual(p.hedged, []);
      // A watch is a GET: it moves on after the deadline, as before; a write gets 504 and is not re-sent.
      assert.equal(res.status, method === 'GET' ? 200 : 504);
      assert.deepEqual(good.requests, method === 'GET' ? [`GET ${path} HTTP/1.1`] : []);
      assert.deepEqual(silent.requests, [`${method} ${path} HTTP/1.1`]);
    });
  }

  it('a GET whose answer started (head sent, body slow) is not hedged', async (t) => {
    const slowBody = await fakeMember((s) => {
      s.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{');
      setTimeout(() => s.write('}'), 200);
    });
    const good = await fakeMember(ok);
    const p = await front(slowBody, good, { hedgeDelay: 20 });
    t.after(() => [p, slowBody, good].forEach((x) => x.close()));
    const res = await send(`${p.url}/v2/keys/a`);
    assert.deepEqual([res.status, res.body], [200, '{}']);
    assert.ok(res.ms >= 190, `answered after ${res.ms} ms`);
    assert.deepEqual(p.hedged, []);
    assert.deepEqual(good.requests, []);
  });

  it('the first answer wins when the hedge is slower: the hedge is aborted, outcome lost', async (t) => {
    const slow = await fakeMember((s) => setTimeout(() => ok(s), 300));
    const slower = await fakeMember((s) => setTimeout(() => ok(s), 3000));
    const p = await front(slow, slower, { hedgeDelay: 20 });
    t.after(() => [p, slow, slower].forEach((x) => x.close()));
    const res = await send(`${p.url}/v2/keys/a`);
    assert.equal(res.status, 200);
    assert.ok(res.ms < 2500, `answered after ${res.ms} ms`);
    assert.deepEqual(p.hedged.map((e) => [e.to, e.outcome]), [[slower.url, 'lost']]);
    // The hedge's request was aborted: its connection closed without waiting for the answer.
    const deadline = performance.now() + 2000;
    while (slower.closedByProxy() === 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(slower.closedByProxy(), 1);
    // It had waited longer than the delay (about 280 ms against 20) when the first answer came: suspected.
    assert.equal(p.balancer.endpoints.find((e) => e.url === slower.url)!.suspected, true);
  });

  it('hedgeDelay: 0 turns hedging off', async (t) => {
    const slow = await fakeMember((s) => setTimeout(() => ok(s), 100));
    const good = await fakeMember(ok);
    const p = await front(slow, good, { hedgeDelay: 0 });
    t.after(() => [p, slow, good].forEach((x) => x.close()));
    assert.equal((await send(`${p.url}/v2/keys/a`)).status, 200);
    assert.deepEqual(p.hedged, []);
    assert.deepEqual(good.requests, []);
  });
});
