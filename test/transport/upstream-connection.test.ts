/**
 * The upstream HTTP/1.1 client's response parser, against crafted answers.
 *
 * A fake upstream (a net server writing exact bytes) is used here because a
 * real etcd member can't be made to split its answers at chosen bytes, send
 * chunk extensions and trailers, interim 1xx answers, HTTP/1.0 or malformed
 * heads. Everything a real member does produce is covered by the suites in
 * test/integration/ (watches are chunked, GETs have a Content-Length, TLS).
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { SLOW_CLIENT_MS, UpstreamFramingError, UpstreamPool, UpstreamReadTimeout } from '../../src/transport/upstream-connection.js';
import type { UpstreamConnection, UpstreamHandler } from '../../src/transport/upstream-connection.js';

interface Outcome {
  status?: number;
  statusText?: string;
  headers?: string[];
  hasBody?: boolean;
  body: Buffer[];
  ended: boolean;
  error?: Error;
  connected: boolean;
  written: boolean;
  detached?: boolean;
}

/** Collects what a connection reports, and resolves when the request is over. */
function collect(): { handler: UpstreamHandler; done: Promise<Outcome> } {
  const outcome: Outcome = { body: [], ended: false, connected: false, written: false };
  let resolve!: (o: Outcome) => void;
  const done = new Promise<Outcome>((r) => (resolve = r));
  const handler: UpstreamHandler = {
    onUpstreamConnected: () => void (outcome.connected = true),
    onUpstreamWritten: () => void (outcome.written = true),
    onUpstreamHead(c: UpstreamConnection, status, statusText, hasBody) {
      Object.assign(outcome, { status, statusText, headers: c.headerList(), hasBody });
    },
    onUpstreamData(_c, chunk) {
      outcome.body.push(Buffer.from(chunk));
      return true;
    },
    onUpstreamEnd() {
      outcome.ended = true;
      resolve(outcome);
    },
    onUpstreamError(_c, err) {
      outcome.error = err;
      resolve(outcome);
    },
    onUpstreamDetached() {
      outcome.detached = true;
      resolve(outcome);
    },
  };
  return { handler, done };
}

/** A server that answers every request (after its head) with `answer`, `split` bytes per write. */
async function upstream(answer: (n: number) => Buffer | string, split = 0): Promise<{ server: Server; port: number; requests: string[]; sockets: Set<Socket> }> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let seen = '';
    socket.on('data', async (d) => {
      seen += d.toString('latin1');
      while (seen.includes('\r\n\r\n')) {
        const end = seen.indexOf('\r\n\r\n') + 4;
        const len = Number(/content-length: (\d+)/i.exec(seen.slice(0, end))?.[1] ?? 0);
        if (seen.length < end + len) return;
        requests.push(seen.slice(0, end + len));
        seen = seen.slice(end + len);
        const bytes = Buffer.from(answer(requests.length));
        if (split <= 0) socket.write(bytes);
        else {
          for (let i = 0; i < bytes.length; i += split) {
            socket.write(bytes.subarray(i, i + split));
            await new Promise((r) => setImmediate(r));
          }
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, requests, sockets };
}

const servers: Server[] = [];
const pools: UpstreamPool[] = [];
after(() => {
  for (const p of pools) p.close();
  for (const s of servers) s.close();
});

async function exchange(answer: (n: number) => Buffer | string, options: { split?: number; method?: string; requests?: number; readTimeout?: number } = {}) {
  const up = await upstream(answer, options.split);
  servers.push(up.server);
  const pool = new UpstreamPool({ hostname: '127.0.0.1', port: up.port, tls: undefined, idleTimeout: 5000 });
  pools.push(pool);
  const outcomes: Outcome[] = [];
  for (let i = 0; i < (options.requests ?? 1); i++) {
    const { handler, done } = collect();
    const conn = pool.acquire(handler);
    if (options.readTimeout !== undefined) conn.setReadTimeout(options.readTimeout);
    const method = options.method ?? 'GET';
    conn.send(method, `${method} /v2/keys/x HTTP/1.1\r\nHost: h\r\n\r\n`, undefined);
    outcomes.push(await done);
  }
  return { outcomes, pool, up };
}

const ok = (body: string, extra = ''): string => `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

describe('UpstreamConnection: the response parser', () => {
  it('a Content-Length answer delivered one byte at a time arrives whole, and the connection is reused', async () => {
    const { outcomes, up, pool } = await exchange(() => ok('{"action":"get"}', 'X-Etcd-Index: 7\r\n'), { split: 1, requests: 2 });
    for (const o of outcomes) {
      assert.equal(o.error, undefined);
      assert.equal(o.status, 200);
      assert.equal(o.statusText, 'OK');
      assert.deepEqual(o.headers, ['Content-Type', 'application/json', 'Content-Length', '16', 'X-Etcd-Index', '7']);
      assert.equal(Buffer.concat(o.body).toString(), '{"action":"get"}');
      assert.ok(o.connected && o.written);
    }
    assert.equal(up.requests.length, 2);
    assert.equal(pool.open, 1, 'both requests on one connection');
  });

  it('a chunked answer (as a watch gets) with extensions and trailers, split at every byte', async () => {
    const chunked = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n';
    const { outcomes, pool } = await exchange(() => chunked, { split: 1, requests: 2 });
    for (const o of outcomes) {
      assert.equal(o.error, undefined);
      assert.equal(o.hasBody, true);
      assert.equal(Buffer.concat(o.body).toString(), 'hello, world');
    }
    assert.equal(pool.open, 1);
  });

  it('an interim 100 Continue is skipped; a HEAD answer and a 304 have no body whatever their headers say', async () => {
    const interim = await exchange(() => `HTTP/1.1 100 Continue\r\n\r\n${ok('x')}`);
    assert.equal(interim.outcomes[0]!.status, 200);
    assert.equal(Buffer.concat(interim.outcomes[0]!.body).toString(), 'x');
    const head = await exchange(() => 'HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n', { method: 'HEAD', requests: 2 });
    for (const o of head.outcomes) assert.deepEqual([o.status, o.hasBody, o.body.length, o.ended], [200, false, 0, true]);
    const notModified = await exchange(() => 'HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n');
    assert.deepEqual([notModified.outcomes[0]!.hasBody, notModified.outcomes[0]!.ended], [false, true]);
  });

  it('a body that ends with the connection (HTTP/1.0, no length) is read to its end; the connection is not reused', async () => {
    const server = createServer((socket) => socket.once('data', () => socket.end('HTTP/1.0 200 OK\r\n\r\nuntil close')));
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const pool = new UpstreamPool({ hostname: '127.0.0.1', port: (server.address() as AddressInfo).port, tls: undefined, idleTimeout: 5000 });
    pools.push(pool);
    const { handler, done } = collect();
    pool.acquire(handler).send('GET', 'GET / HTTP/1.1\r\n\r\n', undefined);
    const o = await done;
    assert.equal(o.error, undefined);
    assert.equal(Buffer.concat(o.body).toString(), 'until close');
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(pool.open, 0);
  });

  it('Content-Length and chunked together: refused (llhttp refuses them too), and the connection is closed, not reused', async () => {
    // A body that contains what would be a second response if the length were believed.
    const both = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n1c\r\nhelloHTTP/1.1 200 OK\r\nX: y\r\n\r\n0\r\n\r\n';
    const { outcomes, pool, up } = await exchange(() => both, { requests: 2 });
    for (const o of outcomes) {
      assert.ok(o.error instanceof UpstreamFramingError, String(o.error));
      assert.match(o.error.message, /both Transfer-Encoding and Content-Length/);
      assert.equal(o.status, undefined, 'nothing of the answer was reported');
    }
    assert.equal(up.requests.length, 2);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(pool.open, 0, 'each connection closed');
  });

  it('bytes after an answer without a body, in the same read, fail it (test/integration/response-smuggling.test.ts splits them)', async () => {
    const sameRead = await exchange(() => 'HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    assert.ok(sameRead.outcomes[0]!.error instanceof UpstreamFramingError, String(sameRead.outcomes[0]!.error));
    assert.equal(sameRead.outcomes[0]!.status, undefined);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(sameRead.pool.open, 0);
  });

  it('a connection the member closed while idle is not handed to the next request', async () => {
    const up = await upstream(() => ok('x'));
    servers.push(up.server);
    const pool = new UpstreamPool({ hostname: '127.0.0.1', port: up.port, tls: undefined, idleTimeout: 5000 });
    pools.push(pool);
    const first = collect();
    pool.acquire(first.handler).send('POST', 'POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n', undefined);
    await first.done;
    // The idle connection's socket is destroyed (as when the member's FIN is read), and a request comes in the
    // same turn, before the socket's 'close' event.
    const idle = (pool as unknown as { idle: UpstreamConnection[] }).idle[0]!;
    idle.socket.destroy();
    const second = collect();
    const conn = pool.acquire(second.handler);
    assert.notEqual(conn, idle);
    conn.send('POST', 'POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n', undefined);
    const o = await second.done;
    assert.equal(o.error, undefined);
    assert.equal(o.status, 200);
  });

  it('the read timeout waits while the client is slow (reading paused), and applies again after', async () => {
    const body = 'b'.repeat(512 * 1024);
    const up = await upstream(() => ok(body));
    servers.push(up.server);
    const pool = new UpstreamPool({ hostname: '127.0.0.1', port: up.port, tls: undefined, idleTimeout: 5000 });
    pools.push(pool);
    let conn!: UpstreamConnection;
    const received: Buffer[] = [];
    let paused = false;
    const outcome = await new Promise<Error | undefined>((resolve) => {
      conn = pool.acquire({
        onUpstreamConnected: () => undefined,
        onUpstreamWritten: () => undefined,
        onUpstreamHead: () => undefined,
        onUpstreamData(c, chunk) {
          received.push(Buffer.from(chunk));
          if (paused) return true;
          paused = true;
          // A client that reads nothing for 4 read timeouts.
          setTimeout(() => c.resume(), 400);
          return false;
        },
        onUpstreamEnd: () => resolve(undefined),
        onUpstreamError: (_c, err) => resolve(err),
        onUpstreamDetached: () => resolve(new Error('detached')),
      });
      conn.setReadTimeout(100);
      conn.send('GET', 'GET / HTTP/1.1\r\n\r\n', undefined);
    });
    assert.equal(outcome, undefined, String(outcome));
    assert.equal(Buffer.concat(received).length, body.length);
  });

  it('malformed answers fail the request with a message saying what was wrong', async () => {
    const cases: Array<[string, RegExp]> = [
      ['SSH-2.0-OpenSSH\r\n\r\n', /not an HTTP\/1\.x status line/],
      ['HTTP/1.1 000 Weird\r\nContent-Length: 0\r\n\r\n', /not an HTTP\/1\.x status line/],
      ['HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n', /switched protocols/],
      ['HTTP/1.1 200 OK\r\nno colon here\r\n\r\n', /malformed header line/],
      ['HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok', /malformed header line/],
      ['HTTP/1.1 200 OK\r\nX-A: a\nb\r\nContent-Length: 2\r\n\r\nok', /malformed header line/],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n', /longer than its chunk size/],
      ['HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n', /bad Content-Length/],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', /bad chunk size/],
      [`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(70 * 1024)}`, /head is over 65536 bytes/],
    ];
    for (const [answer, message] of cases) {
      const { outcomes, pool } = await exchange(() => answer);
      assert.match(String(outcomes[0]!.error?.message), message, answer.slice(0, 30));
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(pool.open, 0, 'the connection is closed');
    }
  });

  it('a member that closes mid-body, or before answering, fails the request; a silent one hits the read timeout', async () => {
    const cut = await upstream(() => 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part');
    servers.push(cut.server);
    const pool = new UpstreamPool({ hostname: '127.0.0.1', port: cut.port, tls: undefined, idleTimeout: 5000 });
    pools.push(pool);
    const { handler, done } = collect();
    pool.acquire(handler).send('GET', 'GET / HTTP/1.1\r\n\r\n', undefined);
    await new Promise((r) => setTimeout(r, 50));
    for (const s of cut.sockets) s.end();
    assert.match(String((await done).error?.message), /closed the response before its end/);

    const silent = await exchange(() => '', { readTimeout: 100 });
    assert.ok(silent.outcomes[0]!.error instanceof UpstreamReadTimeout);
  });

  it('idle connections close after idleTimeout; close() closes them at once', async () => {
    const up = await upstream(() => ok('x'));
    servers.push(up.server);
    const pool = new UpstreamPool({ hostname: '127.0.0.1', port: up.port, tls: undefined, idleTimeout: 200 });
    const { handler, done } = collect();
    pool.acquire(handler).send('GET', 'GET / HTTP/1.1\r\n\r\n', undefined);
    await done;
    assert.equal(pool.open, 1);
    await new Promise((r) => setTimeout(r, 450));
    assert.equal(pool.open, 0, 'closed after idleTimeout');
    const again = collect();
    pool.acquire(again.handler).send('GET', 'GET / HTTP/1.1\r\n\r\n', undefined);
    await again.done;
    pool.close();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(pool.open, 0, 'closed by close()');
  });
});

/**
 * A server that reads requests and answers only when told: `answer(i, bytes)`
 * writes the answer to the i-th request (0-based) on the socket it came on.
 * Counts the reads (data events) each socket saw.
 */
const heldSockets = new Set<Socket>();
// The held connections end with the file (a server's close() waits for them).
after(() => {
  for (const s of heldSockets) s.destroy();
});

async function heldUpstream(): Promise<{
  server: Server;
  port: number;
  requests: Array<{ text: string; socket: Socket }>;
  reads: number;
  arrived(n: number): Promise<void>;
}> {
  const state = {
    server: undefined as unknown as Server,
    port: 0,
    requests: [] as Array<{ text: string; socket: Socket }>,
    reads: 0,
    waiters: [] as Array<() => void>,
    async arrived(n: number): Promise<void> {
      const deadline = Date.now() + 3000;
      while (state.requests.length < n) {
        if (Date.now() > deadline) throw new Error(`only ${state.requests.length} of ${n} requests arrived`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
  };
  state.server = createServer((socket) => {
    heldSockets.add(socket);
    let seen = '';
    socket.on('data', (d) => {
      state.reads++;
      seen += d.toString('latin1');
      while (seen.includes('\r\n\r\n')) {
        const end = seen.indexOf('\r\n\r\n') + 4;
        state.requests.push({ text: seen.slice(0, end), socket });
        seen = seen.slice(end);
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => state.server.listen(0, '127.0.0.1', r));
  state.port = (state.server.address() as AddressInfo).port;
  servers.push(state.server);
  return state;
}

/** A pool with one connection up and idle (a batch starts only on a connection that is up). */
async function warmPool(port: number): Promise<UpstreamPool> {
  const pool = new UpstreamPool({ hostname: '127.0.0.1', port, tls: undefined, idleTimeout: 5000 });
  pools.push(pool);
  return pool;
}

const get = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: h\r\n\r\n`;

/** Waits up to 2 s for `check()` to hold. */
async function eventuallyTrue(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within 2 s: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Sends GETs of `paths` in this one turn of the event loop, with pipelining up to `depth`. */
function sendTogether(pool: UpstreamPool, paths: readonly string[], depth: number) {
  return paths.map((path) => {
    const c = collect();
    const conn = pool.acquire(c.handler, depth);
    conn.send('GET', get(path), undefined, c.handler);
    return { ...c, conn };
  });
}

describe('UpstreamPool: pipelined GETs (pipeline > 1)', () => {
  // The upstream here holds its answers until the test writes them: a real member answers at once, so
  // the order of events these tests need (requests queued behind an unanswered one) can't be set up with it.

  async function warmed(): Promise<{ up: Awaited<ReturnType<typeof heldUpstream>>; pool: UpstreamPool }> {
    const up = await heldUpstream();
    const pool = await warmPool(up.port);
    const [first] = sendTogether(pool, ['/warm'], 8);
    await up.arrived(1);
    up.requests[0]!.socket.write(ok('warm'));
    const o = await first!.done;
    assert.equal(o.error, undefined);
    up.requests.length = 0;
    up.reads = 0;
    return { up, pool };
  }

  it('the GETs of one turn go on one connection, in one write, and each gets its own answer in order', async () => {
    const { up, pool } = await warmed();
    const sent = sendTogether(pool, ['/a', '/b', '/c'], 8);
    await up.arrived(3);
    assert.deepEqual(up.requests.map((r) => r.text.split(' ')[1]), ['/a', '/b', '/c']);
    assert.equal(new Set(up.requests.map((r) => r.socket)).size, 1, 'one connection');
    assert.equal(up.reads, 1, 'the three requests arrived in one write');
    // All three answers in one packet, split across their boundaries by the parser.
    up.requests[0]!.socket.write(ok('A') + ok('BB') + ok('CCC'));
    const outcomes = await Promise.all(sent.map((s) => s.done));
    assert.deepEqual(outcomes.map((o) => Buffer.concat(o.body).toString()), ['A', 'BB', 'CCC']);
    assert.ok(outcomes.every((o) => o.connected && o.written && o.ended && o.error === undefined));
    assert.equal(pool.open, 1);
    // The connection is back in the pool, in step: the next request gets its own answer.
    const [next] = sendTogether(pool, ['/d'], 8);
    await up.arrived(4);
    up.requests[3]!.socket.write(ok('D'));
    assert.equal(Buffer.concat((await next!.done).body).toString(), 'D');
    assert.equal(pool.open, 1);
  });

  it('at most `pipeline` requests share a connection; with 1 (the default) each has its own', async () => {
    const { up, pool } = await warmed();
    const sent = sendTogether(pool, ['/1', '/2', '/3'], 2);
    await up.arrived(3);
    const sockets = up.requests.map((r) => r.socket);
    assert.equal(sockets[0], sockets[1]);
    assert.notEqual(sockets[1], sockets[2]);
    for (const r of up.requests) r.socket.write(ok(r.text.split(' ')[1]!));
    assert.deepEqual((await Promise.all(sent.map((s) => s.done))).map((o) => Buffer.concat(o.body).toString()), ['/1', '/2', '/3']);
    up.requests.length = 0;
    const single = sendTogether(pool, ['/x', '/y'], 1);
    await up.arrived(2);
    assert.notEqual(up.requests[0]!.socket, up.requests[1]!.socket);
    for (const r of up.requests) r.socket.write(ok('z'));
    await Promise.all(single.map((s) => s.done));
  });

  it('a GET of a later turn does not join the batch of an earlier one', async () => {
    const { up, pool } = await warmed();
    const [a] = sendTogether(pool, ['/a'], 8);
    await new Promise((r) => setImmediate(r));
    const [b] = sendTogether(pool, ['/b'], 8);
    await up.arrived(2);
    assert.notEqual(up.requests[0]!.socket, up.requests[1]!.socket);
    for (const r of up.requests) r.socket.write(ok('x'));
    await Promise.all([a!.done, b!.done]);
  });

  it('a queued GET whose handler leaves gets the error once; its answer is dropped and the others get theirs', async () => {
    const { up, pool } = await warmed();
    const sent = sendTogether(pool, ['/a', '/b', '/c'], 8);
    await up.arrived(3);
    const conn = sent[1]!.conn;
    conn.abort(sent[1]!.handler, new Error('client went away'));
    const b = await sent[1]!.done;
    assert.equal(b.error?.message, 'client went away');
    up.requests[0]!.socket.write(ok('A') + ok('B') + ok('C'));
    const [a, c] = await Promise.all([sent[0]!.done, sent[2]!.done]);
    assert.equal(Buffer.concat(a.body).toString(), 'A');
    assert.equal(Buffer.concat(c.body).toString(), 'C');
    assert.equal(b.body.length, 0, "the dropped answer reached nobody");
    const [next] = sendTogether(pool, ['/d'], 8);
    await up.arrived(4);
    up.requests[3]!.socket.write(ok('D'));
    assert.equal(Buffer.concat((await next!.done).body).toString(), 'D');
    assert.equal(pool.open, 1, 'the connection stayed in step and was reused');
  });

  it('the request being answered is aborted: the ones behind are handed back to be sent again, not failed', async () => {
    const { up, pool } = await warmed();
    const sent = sendTogether(pool, ['/a', '/b'], 8);
    await up.arrived(2);
    sent[0]!.conn.abort(sent[0]!.handler, new Error('deadline'));
    const [a, b] = (await Promise.all(sent.map((s) => s.done))) as [Outcome, Outcome];
    assert.equal(a.error?.message, 'deadline');
    assert.equal(b.detached, true);
    assert.equal(b.error, undefined);
  });

  it('the connection fails: every request on it gets the error', async () => {
    const { up, pool } = await warmed();
    const sent = sendTogether(pool, ['/a', '/b', '/c'], 8);
    await up.arrived(3);
    up.requests[0]!.socket.destroy();
    const outcomes = await Promise.all(sent.map((s) => s.done));
    assert.ok(outcomes.every((o) => o.error !== undefined && o.detached !== true), JSON.stringify(outcomes));
  });

  it("an answer that says Connection: close, or a slow client: the ones behind are sent again", async () => {
    const { up, pool } = await warmed();
    const closing = sendTogether(pool, ['/a', '/b'], 8);
    await up.arrived(2);
    up.requests[0]!.socket.write(ok('A', 'Connection: close\r\n'));
    const [a, b] = (await Promise.all(closing.map((s) => s.done))) as [Outcome, Outcome];
    assert.equal(Buffer.concat(a.body).toString(), 'A');
    assert.equal(b.detached, true);

    // A slow client: the answer's handler asks to pause while a GET waits behind it.
    const [warm] = sendTogether(pool, ['/w'], 8);
    await up.arrived(3);
    up.requests[2]!.socket.write(ok('w'));
    await warm!.done;
    let resumeLater: (() => void) | undefined;
    const slow: UpstreamHandler = {
      ...collect().handler,
      onUpstreamData(c) {
        resumeLater = () => c.resume();
        return false;
      },
    };
    const conn = pool.acquire(slow, 8);
    conn.send('GET', get('/big'), undefined, slow);
    const [behind] = sendTogether(pool, ['/small'], 8);
    await up.arrived(5);
    assert.equal(up.requests[3]!.socket, up.requests[4]!.socket);
    up.requests[3]!.socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345`);
    const o = await behind!.done;
    assert.equal(o.detached, true, 'the GET behind the paused answer was handed back');
    resumeLater?.();
  });

  it('the request being answered hits a deadline (the member is at fault): the ones behind get the error too, to move on', async () => {
    // Handing them back sent them to the same silent member again, each waiting one more deadline.
    const { up, pool } = await warmed();
    const sent = sendTogether(pool, ['/a', '/b', '/c'], 8);
    await up.arrived(3);
    const timeout = new Error('no response headers within 300 ms');
    sent[0]!.conn.abort(sent[0]!.handler, timeout, true);
    const outcomes = await Promise.all(sent.map((s) => s.done));
    assert.deepEqual(
      outcomes.map((o) => [o.error?.message, o.detached ?? false]),
      outcomes.map(() => [timeout.message, false]),
    );
    assert.equal(up.requests.length, 3, 'nothing was sent again');
  });

  it('dropped requests (their clients left) and nothing else left on the connection: it is closed, not kept for their answers', async () => {
    // Their answers were read only to keep the connection in step: a member that never sent them held the
    // connection open for good, past the pool's close().
    const { up, pool } = await warmed();
    const sent = sendTogether(pool, ['/a', '/b', '/c'], 8);
    await up.arrived(3);
    sent[1]!.conn.abort(sent[1]!.handler, new Error('client went away'));
    sent[2]!.conn.abort(sent[2]!.handler, new Error('client went away'));
    up.requests[0]!.socket.write(ok('A'));
    assert.equal(Buffer.concat((await sent[0]!.done).body).toString(), 'A');
    await eventuallyTrue(() => pool.open === 0, 'the connection closed once A was answered');

    // The same when the answer being read was discarded (read on for the one behind it) and that one leaves.
    const first = collect();
    const discarding: UpstreamHandler = { ...first.handler, onUpstreamHead: (c) => c.discard() };
    const conn = pool.acquire(discarding, 8);
    conn.send('GET', get('/d'), undefined, discarding);
    const [behind] = sendTogether(pool, ['/e'], 8);
    await up.arrived(5);
    up.requests[3]!.socket.write('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 10\r\n\r\n12345');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(pool.open, 1, 'still reading the discarded answer for the one behind it');
    behind!.conn.abort(behind!.handler, new Error('client went away'));
    await eventuallyTrue(() => pool.open === 0, 'the connection closed once nobody waited on it');
  });

  it('the answer being read is discarded (a 5xx to retry elsewhere): it is read to its end and the ones behind get their answers', async () => {
    // Closing the connection sent the GETs behind it to the same member again, though their answers were on the way.
    const { up, pool } = await warmed();
    const first = collect();
    const retrying: UpstreamHandler = {
      ...first.handler,
      onUpstreamHead(c, status) {
        if (status === 503) {
          c.discard();
          first.handler.onUpstreamError(c, new Error('answered 503, retried elsewhere'));
        }
      },
    };
    const conn = pool.acquire(retrying, 8);
    conn.send('GET', get('/a'), undefined, retrying);
    const behind = sendTogether(pool, ['/b', '/c'], 8);
    await up.arrived(3);
    up.requests[0]!.socket.write(`HTTP/1.1 503 Service Unavailable\r\nContent-Length: 17\r\n\r\n{"message":"503"}` + ok('B') + ok('C'));
    const a = await first.done;
    assert.equal(a.error?.message, 'answered 503, retried elsewhere');
    assert.equal(a.body.length, 0, 'the discarded body reached nobody');
    const [b, c] = await Promise.all(behind.map((x) => x.done));
    assert.deepEqual([Buffer.concat(b!.body).toString(), Buffer.concat(c!.body).toString()], ['B', 'C']);
    assert.equal(up.requests.length, 3, 'nothing was sent again');
    assert.equal(pool.open, 1, 'the connection stayed in step and open');
  });

  it('a client that pauses and takes its answer within SLOW_CLIENT_MS keeps the GETs behind it on the connection', async () => {
    // A 16 KiB value fills node's 16 KiB socket buffer, so its write always asks to pause, and the
    // client drains at once: handing the GETs behind back then sent every one of them twice.
    const { up, pool } = await warmed();
    const brief = collect();
    let pauses = 0;
    let ended = false;
    const pausing: UpstreamHandler = {
      ...brief.handler,
      onUpstreamData(c, chunk) {
        brief.handler.onUpstreamData(c, chunk);
        pauses++;
        // As the forwarder does: its client drains at once, and it resumes only an answer not yet ended.
        setImmediate(() => ended || c.resume());
        return false;
      },
      onUpstreamEnd(c) {
        ended = true;
        brief.handler.onUpstreamEnd(c);
      },
    };
    const conn = pool.acquire(pausing, 8);
    conn.send('GET', get('/big'), undefined, pausing);
    const [behind] = sendTogether(pool, ['/small'], 8);
    await up.arrived(2);
    assert.equal(up.requests[0]!.socket, up.requests[1]!.socket);
    // The second answer in a later packet, as a member sends it: it is read only if reading resumed.
    up.requests[0]!.socket.write(ok('x'.repeat(16384)));
    const big = await brief.done;
    up.requests[0]!.socket.write(ok('S'));
    const stalled = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the GET behind got no answer within 2 s')), 2000).unref());
    const small = await Promise.race([behind!.done, stalled]);
    assert.equal(Buffer.concat(big.body).length, 16384);
    assert.ok(pauses >= 1);
    assert.equal(small.detached, undefined, 'the GET behind was not handed back');
    assert.equal(Buffer.concat(small.body).toString(), 'S');
    await new Promise((r) => setTimeout(r, SLOW_CLIENT_MS * 2));
    assert.equal(up.requests.length, 2, 'nothing was sent twice');
    assert.equal(pool.open, 1);
  });
});
