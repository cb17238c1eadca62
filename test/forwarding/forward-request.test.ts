/**
 * Hop-by-hop header handling of the forwarder (RFC 9110 section 7.6.1), as
 * plain functions over node's `rawHeaders` arrays; and its retries while the
 * handler drains. No etcd needed.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { describe, it } from 'node:test';
import { downstreamResponseHeaders, upstreamRequestHeaders } from '../../src/forwarding/forward-request.js';
import { EndpointBalancer, V2ProxyHandler } from '../../src/index.js';

/** `[name, value]` pairs of a raw header array. */
function pairs(raw: readonly string[]): Array<[string, string]> {
  assert.equal(raw.length % 2, 0, 'a raw header array has an even length');
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

/** Lower-cased names present in a raw header array. */
function names(raw: readonly string[]): string[] {
  return pairs(raw).map(([n]) => n.toLowerCase());
}

const HOP_BY_HOP_REQUEST = [
  ['Connection', 'keep-alive'],
  ['Keep-Alive', 'timeout=5'],
  ['Proxy-Authorization', 'Basic Zm9vOmJhcg=='],
  ['Proxy-Connection', 'keep-alive'],
  ['TE', 'trailers'],
  ['Trailer', 'X-Checksum'],
  ['Transfer-Encoding', 'chunked'],
  ['Upgrade', 'websocket'],
] as const;

describe('upstreamRequestHeaders', () => {
  it('drops every hop-by-hop header, whatever its case, and keeps the end-to-end ones in order', () => {
    const raw = [
      'Host', 'proxy.example:2379',
      ...HOP_BY_HOP_REQUEST.flat(),
      'Accept', 'application/json',
      'authorization', 'Basic cm9vdDpyb290',
      'conNECTion', 'Upgrade',
      'UPGRADE', 'h2c',
      'Content-Type', 'application/x-www-form-urlencoded',
    ];
    const out = upstreamRequestHeaders(raw, undefined, -1);
    assert.deepEqual(pairs(out), [
      ['Host', 'proxy.example:2379'],
      ['Accept', 'application/json'],
      ['authorization', 'Basic cm9vdDpyb290'],
      ['Content-Type', 'application/x-www-form-urlencoded'],
    ]);
  });

  it('drops the headers named in Connection (one or several Connection headers), not the close/keep-alive tokens', () => {
    const raw = [
      'Connection', 'close, X-Hop-One',
      'X-Hop-One', '1',
      'connection', ' x-hop-two ,, Keep-Alive',
      'X-Hop-Two', '2',
      'X-End-To-End', '3',
      'Close', 'not a hop-by-hop header, only a token',
    ];
    const out = upstreamRequestHeaders(raw, undefined, -1);
    assert.deepEqual(pairs(out), [
      ['X-End-To-End', '3'],
      ['Close', 'not a hop-by-hop header, only a token'],
    ]);
  });

  it('keeps Host as the client sent it (the member sees the proxy\'s host, as with etcd\'s proxy)', () => {
    const out = upstreamRequestHeaders(['host', 'Proxy.Example:2379'], '127.0.0.1', -1);
    assert.deepEqual(pairs(out)[0], ['host', 'Proxy.Example:2379']);
    assert.equal(names(out).filter((n) => n === 'host').length, 1);
  });

  it('adds X-Forwarded-For with the client address', () => {
    const out = upstreamRequestHeaders(['Host', 'h:1'], '10.0.0.7', -1);
    assert.deepEqual(pairs(out), [
      ['Host', 'h:1'],
      ['X-Forwarded-For', '10.0.0.7'],
    ]);
  });

  it('appends the client address to an existing X-Forwarded-For (a, b, client), as one header', () => {
    const out = upstreamRequestHeaders(['x-forwarded-for', 'a, b', 'Host', 'h:1'], '10.0.0.7', -1);
    assert.deepEqual(pairs(out), [
      ['Host', 'h:1'],
      ['X-Forwarded-For', 'a, b, 10.0.0.7'],
    ]);
  });

  it('joins several X-Forwarded-For headers before appending', () => {
    const out = upstreamRequestHeaders(['X-Forwarded-For', 'a', 'X-Forwarded-For', 'b'], '::1', -1);
    assert.deepEqual(pairs(out), [['X-Forwarded-For', 'a, b, ::1']]);
  });

  it('keeps an existing X-Forwarded-For unchanged when the client address is unknown', () => {
    const out = upstreamRequestHeaders(['X-Forwarded-For', 'a, b'], undefined, -1);
    assert.deepEqual(pairs(out), [['X-Forwarded-For', 'a, b']]);
  });

  it('sets Content-Length from the body actually read, replacing the client\'s', () => {
    const raw = ['Content-Length', '999', 'content-length', '999', 'Transfer-Encoding', 'chunked', 'Content-Type', 'application/x-www-form-urlencoded'];
    assert.deepEqual(pairs(upstreamRequestHeaders(raw, undefined, 11)), [
      ['Content-Type', 'application/x-www-form-urlencoded'],
      ['Content-Length', '11'],
    ]);
    assert.deepEqual(pairs(upstreamRequestHeaders(raw, undefined, 0)), [
      ['Content-Type', 'application/x-www-form-urlencoded'],
      ['Content-Length', '0'],
    ]);
  });

  it('sends no Content-Length when there is no body (bodyLength -1)', () => {
    const out = upstreamRequestHeaders(['Content-Length', '5', 'Accept', '*/*'], undefined, -1);
    assert.deepEqual(pairs(out), [['Accept', '*/*']]);
  });

  it('drops Expect: the proxy answers 100-continue itself', () => {
    const out = upstreamRequestHeaders(['Expect', '100-continue', 'Accept', '*/*'], undefined, 3);
    assert.deepEqual(pairs(out), [
      ['Accept', '*/*'],
      ['Content-Length', '3'],
    ]);
  });

  it('does not modify the array it is given', () => {
    const raw = ['Connection', 'X-A', 'X-A', '1', 'X-Forwarded-For', 'a'];
    const copy = [...raw];
    upstreamRequestHeaders(raw, '127.0.0.1', 0);
    assert.deepEqual(raw, copy);
  });
});

describe('downstreamResponseHeaders', () => {
  it('drops hop-by-hop headers and those named in Connection, keeps etcd\'s own headers once and in order', () => {
    const raw = [
      'Access-Control-Allow-Origin', '*',
      'Content-Type', 'application/json',
      'X-Etcd-Cluster-Id', 'cdf818194e3a8c32',
      'X-Etcd-Index', '42',
      'Connection', 'keep-alive, X-Internal',
      'Keep-Alive', 'timeout=5',
      'X-Internal', 'secret',
      'Proxy-Authenticate', 'Basic',
      'Trailer', 'X-Checksum',
      'Transfer-Encoding', 'chunked',
      'Upgrade', 'h2c',
      'Date', 'Mon, 01 Jan 2024 00:00:00 GMT',
      'Content-Length', '100',
    ];
    assert.deepEqual(pairs(downstreamResponseHeaders(raw)), [
      ['Access-Control-Allow-Origin', '*'],
      ['Content-Type', 'application/json'],
      ['X-Etcd-Cluster-Id', 'cdf818194e3a8c32'],
      ['X-Etcd-Index', '42'],
      ['Date', 'Mon, 01 Jan 2024 00:00:00 GMT'],
      ['Content-Length', '100'],
    ]);
  });

  it('keeps repeated end-to-end headers (e.g. Set-Cookie, Vary) as they came', () => {
    const raw = ['Set-Cookie', 'a=1', 'Vary', 'Accept', 'Set-Cookie', 'b=2'];
    assert.deepEqual(downstreamResponseHeaders(raw), raw);
  });

  it('returns nothing for a response made only of hop-by-hop headers', () => {
    assert.deepEqual(downstreamResponseHeaders(['Connection', 'close', 'Transfer-Encoding', 'chunked', 'Keep-Alive', 'timeout=5']), []);
  });
});

/**
 * The forwarder during drain(), with fake members: a real etcd member can't be
 * made to answer 503 after a chosen delay, exactly while the proxy drains.
 */
describe('forwarding while the handler drains', () => {
  async function fakeMember(answer: (socket: Socket) => void): Promise<{ url: string; seen: () => number; close: () => void }> {
    let seen = 0;
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('data', (d: Buffer) => {
        if (d.toString('latin1').startsWith('GET /v2/keys/')) {
          seen++;
          answer(socket);
        } else socket.write('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      seen: () => seen,
      close: () => {
        for (const s of sockets) s.destroy();
        server.close();
      },
    };
  }

  it('a GET that gets a 503 during drain() still moves on to the next member and is answered', async () => {
    const slow503 = await fakeMember((s) => setTimeout(() => s.write('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n'), 300));
    const good = await fakeMember((s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    const balancer = new EndpointBalancer({ endpoints: [slow503.url, good.url], strategy: 'first-available', leaderWrites: false });
    const handler = new V2ProxyHandler({ balancer });
    const server = createHttpServer(handler.handle);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      // setEndpoints shuffles: make the slow member first.
      while (balancer.order()[0]!.url !== slow503.url) balancer.setEndpoints([slow503.url, good.url]);
      const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequest(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/keys/a`, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end();
      });
      await new Promise((r) => setTimeout(r, 100));
      const drained = handler.drain(2000);
      assert.deepEqual(await answer, { status: 200, body: 'ok' });
      assert.deepEqual([slow503.seen(), good.seen()], [1, 1]);
      await drained;
    } finally {
      server.close();
      balancer.close();
      slow503.close();
      good.close();
    }
  });
});
