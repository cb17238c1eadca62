/**
 * createProxy()'s own HTTP/1.1 server side (src/transport/client-connection.ts) on one
 * client connection, against a real member: keep-alive and pipelined
 * requests, bodies split over packets, HEAD, Connection: close, re-chunked
 * watch answers, a client that half-closes, and the hand-over to node:http
 * of what this reader does not take (metrics, readiness, Expect, chunked
 * request bodies, HTTP/1.0) in the middle of a connection.
 */
import assert from 'node:assert/strict';
import { connect, createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { cleanup, eventually, freePort, http, member, onCleanup, proxy, RawConnection, skipWithoutEtcd, tempDir, watcherCount } from './harness.js';
import type { Answer, LocalEtcd } from './harness.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const get = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: proxy\r\n${extra}\r\n`;
const put = (path: string, body: string, extra = ''): string =>
  `PUT ${path} HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
const valueOf = (a: Answer): string | undefined => (JSON.parse(a.body) as { node?: { value?: string } }).node?.value;

describe('client connections read by the proxy itself', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  let url: string;
  let p: Awaited<ReturnType<typeof proxy>>;
  const opened: RawConnection[] = [];
  const open = async (): Promise<RawConnection> => {
    const c = await RawConnection.open(url);
    opened.push(c);
    return c;
  };
  before(async () => {
    m = await member();
    p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() });
    url = p.url;
  });
  after(async () => {
    for (const c of opened) c.close();
    await cleanup();
  });

  test('keep-alive: requests one after another on one connection get the member\'s answers', async () => {
    const c = await open();
    c.write(put('/v2/keys/cc/a', 'value=one'));
    const created = await c.read();
    assert.equal(created.status, 201);
    assert.equal(valueOf(created), 'one');
    for (let i = 0; i < 3; i++) {
      c.write(get('/v2/keys/cc/a'));
      const a = await c.read();
      assert.equal(a.status, 200);
      assert.equal(a.framing, 'length');
      assert.equal(valueOf(a), 'one');
      assert.ok(a.headers.has('x-etcd-index'), 'the member\'s headers pass through');
    }
    c.write(get('/v2/keys/cc/missing'));
    const missing = await c.read();
    assert.equal(missing.status, 404);
    assert.equal((JSON.parse(missing.body) as { errorCode: number }).errorCode, 100);
    assert.equal(c.closed, false);
  });

  test('pipelined requests, a body in the same packet, are answered in order', async () => {
    const c = await open();
    c.write(put('/v2/keys/cc/p', 'value=first') + get('/v2/keys/cc/p') + put('/v2/keys/cc/p', 'value=second') + get('/v2/keys/cc/p'));
    const answers = [await c.read(), await c.read(), await c.read(), await c.read()];
    assert.deepEqual(
      answers.map((a) => a.status),
      [201, 200, 200, 200],
    );
    assert.deepEqual(answers.map(valueOf), ['first', 'first', 'second', 'second']);
  });

  test('a body split over several packets is forwarded whole', async () => {
    const c = await open();
    const body = `value=${'v'.repeat(3000)}`;
    const whole = put('/v2/keys/cc/split', body);
    const parts = [whole.slice(0, 20), whole.slice(20, whole.length - 2000), whole.slice(whole.length - 2000, whole.length - 7), whole.slice(whole.length - 7)];
    for (const part of parts) {
      c.write(part);
      await new Promise((r) => setTimeout(r, 30));
    }
    const a = await c.read();
    assert.equal(a.status, 201);
    const stored = (await http(`${m.clientUrl}/v2/keys/cc/split`)).json() as { node: { value: string } };
    assert.equal(stored.node.value, 'v'.repeat(3000));
  });

  test('a 1 MiB value read by a client that stops reading for a while arrives whole', { timeout: 30000 }, async () => {
    const value = Array.from({ length: 1024 * 1024 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
    assert.equal((await http(`${m.clientUrl}/v2/keys/cc/big`, { method: 'PUT', body: `value=${value}` })).status, 201);
    const c = await open();
    c.socket.once('data', () => {
      c.socket.pause();
      setTimeout(() => c.socket.resume(), 300);
    });
    c.write(get('/v2/keys/cc/big'));
    const a = await c.read({ ms: 10000 });
    assert.equal(a.status, 200);
    assert.equal(valueOf(a), value);
    // The connection is still usable afterwards.
    c.write(get('/v2/keys/cc/a'));
    assert.equal(valueOf(await c.read()), 'one');
  });

  test('HEAD: the member\'s head without a body, and the connection goes on', async () => {
    const c = await open();
    c.write(`HEAD /v2/keys/cc/a HTTP/1.1\r\nHost: proxy\r\n\r\n`);
    const head = await c.read({ head: true });
    assert.equal(head.status, 200);
    assert.ok(Number(head.headers.get('content-length')) > 0);
    c.write(get('/v2/keys/cc/a'));
    const a = await c.read();
    assert.equal(valueOf(a), 'one');
  });

  test('Connection: close is answered with Connection: close, then the proxy closes', async () => {
    const c = await open();
    c.write(get('/v2/keys/cc/a', 'Connection: close\r\n'));
    const a = await c.read();
    assert.equal(a.status, 200);
    assert.equal(a.headers.get('connection'), 'close');
    await c.closedWithin(2000);
  });

  test('a watch answers its head at once and its event re-chunked; a client that half-closes ends the member\'s watch', async () => {
    const before = await watcherCount(m.clientUrl);
    const c = await open();
    c.write(get('/v2/keys/cc/w?wait=true'));
    await eventually(async () => (await watcherCount(m.clientUrl)) === before + 1, 3000, 'the member to register the watch');
    await http(`${m.clientUrl}/v2/keys/cc/w`, { method: 'PUT', body: 'value=event' });
    const event = await c.read();
    assert.equal(event.status, 200);
    assert.equal(event.framing, 'chunked');
    assert.equal(valueOf(event), 'event');
    // Keep-alive after a chunked answer: the next watch on the same connection.
    c.write(get('/v2/keys/cc/w?wait=true'));
    await eventually(async () => (await watcherCount(m.clientUrl)) === before + 1, 3000, 'the second watch');
    c.socket.end();
    await c.closedWithin(3000);
    await eventually(async () => (await watcherCount(m.clientUrl)) === before, 3000, 'the member\'s watch to end');
    assert.equal(p.handler.inFlight, 0);
  });

  test('what this reader does not take goes to node:http mid-connection, answered as before', async () => {
    const c = await open();
    c.write(get('/v2/keys/cc/a'));
    assert.equal(valueOf(await c.read()), 'one');
    // The proxy's own paths.
    c.write(get('/metrics'));
    const metrics = await c.read();
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /^etcd_proxy_requests_total\{method="GET"\} \d+$/m);
    c.write(get('/proxy/ready'));
    assert.equal((JSON.parse((await c.read()).body) as { ready: boolean }).ready, true);
    // Expect: 100-continue (node:http sends the 100 Continue).
    c.write(`PUT /v2/keys/cc/e HTTP/1.1\r\nHost: proxy\r\nExpect: 100-continue\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\n`);
    const cont = await c.read({ head: true });
    assert.equal(cont.status, 100);
    c.write('value=cont1');
    assert.equal(valueOf(await c.read()), 'cont1');
    // A chunked request body.
    c.write(`PUT /v2/keys/cc/t HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nvalue=\r\n7\r\nchunked\r\n0\r\n\r\n`);
    assert.equal(valueOf(await c.read()), 'chunked');
    // And plain requests still work on the same connection.
    c.write(get('/v2/keys/cc/t'));
    assert.equal(valueOf(await c.read()), 'chunked');
    const stored = (await http(`${m.clientUrl}/v2/keys/cc/e`)).json() as { node: { value: string } };
    assert.equal(stored.node.value, 'cont1');
  });

  test('HTTP/1.0 and malformed requests get node:http\'s answers', async () => {
    const c10 = await open();
    c10.write('GET /v2/keys/cc/a HTTP/1.0\r\nHost: proxy\r\n\r\n');
    const a = await c10.read();
    assert.equal(a.status, 200);
    assert.equal(valueOf(a), 'one');
    await c10.closedWithin(2000);
    const bad = await open();
    bad.write(get('/v2/keys/cc/a') + 'GET /v2/keys/cc/a HTTP/1.1\r\nHost: proxy\r\nBad Header: x\r\n\r\n');
    assert.equal(valueOf(await bad.read()), 'one');
    assert.equal((await bad.read()).status, 400);
    await bad.closedWithin(2000);
  });

  test('a client that pipelines without end while reading its answers: the proxy reads at most 64 KiB ahead', { timeout: 30000 }, async () => {
    const { port } = new URL(url);
    const socket = connect(Number(port), '127.0.0.1');
    socket.on('error', () => undefined);
    let answered = 0;
    socket.on('data', (chunk: Buffer) => {
      for (let i = chunk.indexOf('HTTP/1.1 '); i >= 0; i = chunk.indexOf('HTTP/1.1 ', i + 1)) answered++;
    });
    await new Promise((resolve) => socket.once('connect', resolve));
    const batch = get('/v2/keys/cc/a').repeat(1000);
    gc();
    const before = process.memoryUsage().arrayBuffers;
    const started = Date.now();
    let peak = 0;
    while (Date.now() - started < 3000) {
      if (!socket.write(batch)) {
        // Wait for room, but not past the 3 s: the kernel's buffers hold thousands of requests the proxy answers one by one.
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, Math.max(0, 3000 - (Date.now() - started)));
          socket.once('drain', () => resolve(clearTimeout(timer)));
        });
      }
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
    }
    socket.destroy();
    assert.ok(answered > 1000, `${answered} answers`);
    // Unbounded read-ahead held tens of MB of unread requests here (about 4 MB more per second).
    assert.ok(peak < 12 * 1024 * 1024, `buffers grew by ${(peak / 1048576).toFixed(1)} MiB while ${answered} requests were answered`);
  });

  test('Connection: close to a client that keeps its side open: the proxy closes it, and close() does not wait for it', async () => {
    const m3 = await member();
    const p3 = await proxy({ initialCluster: `${m3.name}=${m3.peerUrl}`, dataDir: await tempDir() });
    const c = await RawConnection.open(p3.url, true);
    opened.push(c);
    c.write(get('/v2/keys/', 'Connection: close\r\n'));
    assert.equal((await c.read()).status, 200);
    await new Promise((resolve) => (c.socket.readableEnded ? resolve(undefined) : c.socket.once('end', resolve)));
    const started = Date.now();
    await p3.close();
    assert.ok(Date.now() - started < 1500, `close() took ${Date.now() - started} ms`);
  });

  test('keep-alive: answers say the listener\'s keepAliveTimeout, read when it is changed, and idle connections close after it', async () => {
    const m4 = await member();
    const p4 = await proxy({ initialCluster: `${m4.name}=${m4.peerUrl}`, dataDir: await tempDir() });
    p4.servers[0]!.keepAliveTimeout = 1500;
    const c = await RawConnection.open(p4.url);
    opened.push(c);
    c.write(get('/v2/keys/'));
    const a = await c.read();
    assert.equal(a.headers.get('connection'), 'keep-alive');
    assert.equal(a.headers.get('keep-alive'), 'timeout=1');
    const idleFrom = Date.now();
    await c.closedWithin(4000);
    const idle = Date.now() - idleFrom;
    assert.ok(idle >= 1400 && idle < 3000, `closed after ${idle} ms idle`);
    // The proxy's own answers carry a Date, as node:http's do.
    await m4.stop();
    const e = await RawConnection.open(p4.url);
    opened.push(e);
    e.write(get('/v2/keys/'));
    const failed = await e.read();
    assert.equal(failed.status, 502);
    assert.match(failed.headers.get('date') ?? '', /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
  });

  test('a bare LF in a head, or a head cut short by FIN: 400 at once, as node:http answers', async () => {
    const lf = await open();
    const started = Date.now();
    lf.write('GET /v2/keys/cc/a HTTP/1.1\nHost: x\n');
    const a = await lf.read();
    assert.equal(a.status, 400);
    assert.ok(Date.now() - started < 1000, `answered after ${Date.now() - started} ms`);
    const cut = await RawConnection.open(url, true);
    opened.push(cut);
    cut.write('GET /v2/keys/cc/a HTTP/1.1\r\nHost: x\r\n');
    await new Promise((r) => setTimeout(r, 50));
    cut.socket.end();
    assert.equal((await cut.read()).status, 400);
  });

  test('the same pipelined requests split at random places get the same answers as sent whole (seeded, 40 connections)', { timeout: 60000 }, async () => {
    // A fixed seed: the splits differ from one request to the next, not from one run to the next.
    let seed = 6;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const requests = (i: number): string[] => [
      put(`/v2/keys/cc/split${i}`, `value=v${i}`),
      get(`/v2/keys/cc/split${i}`),
      `HEAD /v2/keys/cc/split${i} HTTP/1.1\r\nHost: proxy\r\n\r\n`,
      get('/v2/keys/cc/none'),
      `DELETE /v2/keys/cc/split${i} HTTP/1.1\r\nHost: proxy\r\n\r\n`,
      get(`/v2/keys/cc/split${i}`),
    ];
    const expected = [201, 200, 200, 404, 200, 404];
    const one = async (i: number): Promise<void> => {
      const bytes = Buffer.from(requests(i).join(''), 'latin1');
      const c = await open();
      for (let at = 0; at < bytes.length; ) {
        const next = Math.min(bytes.length, at + 1 + random(60));
        c.write(bytes.subarray(at, next));
        at = next;
        if (random(4) === 0) await new Promise((r) => setTimeout(r, random(5)));
      }
      const statuses: number[] = [];
      for (let k = 0; k < expected.length; k++) statuses.push((await c.read({ head: k === 2 })).status);
      assert.deepEqual(statuses, expected, `connection ${i}`);
      c.close();
    };
    for (let i = 0; i < 40; i += 10) await Promise.all(Array.from({ length: 10 }, (_, j) => one(i + j)));
    await eventually(() => p.handler.inFlight === 0, 2000, 'no request left in flight');
  });

  test('close() ends idle keep-alive connections and open watches at once', async () => {
    const m2 = await member();
    const p2 = await proxy({ initialCluster: `${m2.name}=${m2.peerUrl}`, dataDir: await tempDir() });
    const idle = await RawConnection.open(p2.url);
    opened.push(idle);
    idle.write(get('/v2/keys/'));
    const first = await idle.read();
    assert.equal(first.status, 200, first.body);
    const watch = await RawConnection.open(p2.url);
    opened.push(watch);
    watch.write(get('/v2/keys/cc/closing?wait=true'));
    await eventually(async () => (await watcherCount(m2.clientUrl)) === 1, 3000, 'the watch');
    const started = Date.now();
    await p2.close();
    assert.ok(Date.now() - started < 2000, `close() took ${Date.now() - started} ms`);
    await idle.closedWithin(1000);
    await watch.closedWithin(1000);
    await eventually(async () => (await watcherCount(m2.clientUrl)) === 0, 3000, 'the member\'s watch to end');
  });

  test('the member\'s status and header lines reach the client as sent and in order; the proxy adds only Connection and Keep-Alive', async () => {
    const direct = await RawConnection.open(m.clientUrl);
    const c = await open();
    opened.push(direct);
    direct.write(get('/v2/keys/cc/a'));
    c.write(get('/v2/keys/cc/a'));
    const [fromMember, fromProxy] = [await direct.read(), await c.read()];
    assert.equal(fromProxy.lines[0], fromMember.lines[0]);
    const names = (a: Answer): string[] => a.lines.slice(1).map((l) => l.slice(0, l.indexOf(':')));
    assert.deepEqual(names(fromProxy), [...names(fromMember), 'Connection', 'Keep-Alive']);
    for (const same of ['Content-Type', 'Content-Length', 'X-Etcd-Cluster-Id']) {
      assert.ok(fromProxy.lines.includes(fromMember.lines.find((l) => l.startsWith(`${same}:`))!), `${same} unchanged`);
    }
    assert.equal(fromProxy.body, fromMember.body);
  });
});

/**
 * A fake member behind a real one: the real member's `/members` advertises
 * the fake's client URL. A real etcd member can't be made to answer
 * HTTP/1.0, leave out the reason phrase or the Date, or send hop-by-hop
 * headers; the proxy must then rebuild the head instead of passing it on.
 */
describe('member answers whose head the proxy must change', { skip: skipWithoutEtcd }, () => {
  const answers: Record<string, string> = {
    '/v2/keys/http10': 'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\nKeep-Alive: timeout=30\r\nContent-Length: 2\r\n\r\nok',
    '/v2/keys/no-reason': 'HTTP/1.1 200\r\nDate: Fri, 04 Dec 2026 05:00:00 GMT\r\nContent-Length: 2\r\n\r\nok',
    '/v2/keys/hop': 'HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nX-Kept: 2\r\nProxy-Connection: keep-alive\r\nDate: Fri, 04 Dec 2026 05:00:00 GMT\r\nContent-Length: 2\r\n\r\nok',
    '/v2/keys/no-date': 'HTTP/1.1 200 OK\r\nX-Etcd-Index: 7\r\nContent-Length: 2\r\n\r\nok',
  };
  let url: string;
  const opened: RawConnection[] = [];
  before(async () => {
    const sockets = new Set<Socket>();
    const fake = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      let seen = '';
      socket.on('data', (d) => {
        seen += d.toString('latin1');
        for (let end = seen.indexOf('\r\n\r\n'); end >= 0; end = seen.indexOf('\r\n\r\n')) {
          const path = seen.slice(0, end).split(' ')[1]!;
          seen = seen.slice(end + 4);
          socket.write(answers[path] ?? 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
        }
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    onCleanup(() => new Promise<void>((resolve) => {
      fake.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    }));
    const m = await member({ advertiseClientUrl: `http://127.0.0.1:${(fake.address() as AddressInfo).port}` });
    url = (await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() })).url;
  });
  after(async () => {
    for (const c of opened) c.close();
    await cleanup();
  });
  const through = async (path: string): Promise<Answer> => {
    const c = await RawConnection.open(url);
    opened.push(c);
    c.write(get(path));
    return c.read();
  };

  test('HTTP/1.0 with its own keep-alive headers: HTTP/1.1 to the client, with the proxy\'s Connection and Keep-Alive only, and a Date', async () => {
    const a = await through('/v2/keys/http10');
    assert.equal(a.lines[0], 'HTTP/1.1 200 OK');
    assert.equal(a.body, 'ok');
    assert.deepEqual(a.lines.filter((l) => /^(connection|keep-alive):/i.test(l)), ['Connection: keep-alive', 'Keep-Alive: timeout=120']);
    assert.ok(a.headers.has('date'));
  });

  test('no reason phrase: the standard one is filled in', async () => {
    const a = await through('/v2/keys/no-reason');
    assert.equal(a.lines[0], 'HTTP/1.1 200 OK');
    assert.equal(a.headers.get('date'), 'Fri, 04 Dec 2026 05:00:00 GMT');
  });

  test('hop-by-hop headers and those the member\'s Connection names are dropped; the others kept', async () => {
    const a = await through('/v2/keys/hop');
    assert.equal(a.headers.get('x-kept'), '2');
    assert.equal(a.headers.has('x-secret'), false);
    assert.equal(a.headers.has('proxy-connection'), false);
    assert.equal(a.headers.get('connection'), 'keep-alive');
  });

  test('no Date from the member: the head passes through and the proxy adds one', async () => {
    const a = await through('/v2/keys/no-date');
    assert.deepEqual(a.lines.slice(0, 3), ['HTTP/1.1 200 OK', 'X-Etcd-Index: 7', 'Content-Length: 2']);
    assert.match(a.headers.get('date') ?? '', /GMT$/);
    assert.equal(a.body, 'ok');
  });
});

/**
 * What a real member receives through the proxy, seen by a byte-for-byte
 * relay between them: the member advertises the relay's port as its client
 * URL, and the relay records the bytes it passes on.
 */
describe('requests as the member receives them', { skip: skipWithoutEtcd }, () => {
  let url: string;
  let received = '';
  const opened: RawConnection[] = [];
  before(async () => {
    const clientPort = await freePort();
    const sockets = new Set<Socket>();
    const relay = createServer((client) => {
      const upstream = connect({ port: clientPort, host: '127.0.0.1' });
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('close', () => {
          sockets.delete(s);
          (s === client ? upstream : client).destroy();
        });
        s.on('error', () => undefined);
      }
      client.on('data', (d: Buffer) => {
        received += d.toString('latin1');
        upstream.write(d);
      });
      upstream.pipe(client);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    onCleanup(
      () =>
        new Promise<void>((resolve) => {
          relay.close(() => resolve());
          for (const s of sockets) s.destroy();
        }),
    );
    const m = await member({ clientPort, advertiseClientUrl: `http://127.0.0.1:${(relay.address() as AddressInfo).port}` });
    url = (await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() })).url;
  });
  after(async () => {
    for (const c of opened) c.close();
    await cleanup();
  });
  /** Sends `request` on a new connection and returns its answer and the head the member got for it. */
  const exchange = async (request: string): Promise<{ answer: Answer; sent: string }> => {
    const c = await RawConnection.open(url);
    opened.push(c);
    received = '';
    c.write(request);
    const answer = await c.read();
    return { answer, sent: received.slice(0, received.indexOf('\r\n\r\n') + 4) };
  };
  const via = /^Via: 1\.1 etcd-v2-proxy-\S+$/;

  test('a request with nothing to drop arrives as the client sent it, then X-Forwarded-For and Via', async () => {
    const head = 'PUT /v2/keys/cc/relay HTTP/1.1\r\nHost: proxy\r\nUser-Agent: test/1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n';
    const { answer, sent } = await exchange(`${head}\r\nvalue=1`);
    assert.equal(answer.status, 201, answer.body);
    assert.ok(sent.startsWith(head), sent);
    const added = sent.slice(head.length).split('\r\n');
    assert.equal(added[0], 'X-Forwarded-For: 127.0.0.1');
    assert.match(added[1]!, via);
    assert.deepEqual(added.slice(2), ['', '']);
  });

  test('a DELETE with no body gets Content-Length: 0', async () => {
    const { answer, sent } = await exchange('DELETE /v2/keys/cc/relay HTTP/1.1\r\nHost: proxy\r\n\r\n');
    assert.equal(answer.status, 200, answer.body);
    assert.match(sent, /\r\nContent-Length: 0\r\n\r\n$/);
  });

  test('hop-by-hop headers are dropped, X-Forwarded-For and Via chains extended, the rest kept in order', async () => {
    const { answer, sent } = await exchange(
      'GET /v2/keys/ HTTP/1.1\r\nHost: proxy\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=9\r\nTE: trailers\r\n' +
        'Proxy-Authorization: Basic eA==\r\nX-Forwarded-For: 10.0.0.1\r\nVia: 1.1 edge\r\nAccept: application/json\r\n\r\n',
    );
    assert.equal(answer.status, 200, answer.body);
    const lines = sent.split('\r\n');
    assert.deepEqual(lines.slice(0, 3), ['GET /v2/keys/ HTTP/1.1', 'Host: proxy', 'Accept: application/json']);
    assert.equal(lines[3], 'X-Forwarded-For: 10.0.0.1, 127.0.0.1');
    assert.match(lines[4]!, /^Via: 1\.1 edge, 1\.1 etcd-v2-proxy-\S+$/);
    assert.deepEqual(lines.slice(5), ['', '']);
  });
});
