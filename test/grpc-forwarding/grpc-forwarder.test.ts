/**
 * GrpcForwarder against fake members (node:http2 servers on 127.0.0.1) for
 * what a real etcd member does not produce on demand or does not show: a
 * stream refused with REFUSED_STREAM, a stream ended without a gRPC status,
 * and the exact headers a member received (etcd does not echo them). The
 * bytes are opaque here (the forwarder decodes nothing); the real-etcd
 * behaviour is in test/integration/grpc-*.test.ts.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, constants, createServer } from 'node:http2';
import type { Http2Server, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { EndpointBalancer, GrpcForwarder } from '../../src/index.js';
import type { GrpcDroppedEvent, GrpcRetriedEvent } from '../../src/index.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

async function listen(server: Http2Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A fake member: `onStream` gets each call. Its sessions are destroyed at clean-up. */
async function fakeMember(onStream: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void): Promise<{ url: string; calls: number }> {
  const server = createServer();
  const state = { url: '', calls: 0 };
  server.on('stream', (stream, headers) => {
    state.calls++;
    stream.on('error', () => undefined);
    onStream(stream, headers);
  });
  server.on('session', (s) => cleanups.push(() => s.destroy()));
  state.url = await listen(server);
  return state;
}

/** Echoes the request's bytes back as the response, with grpc-status 0 in the trailers. */
function echo(stream: ServerHttp2Stream): void {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('end', () => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(Buffer.concat(chunks));
  });
}

/** A proxy front (node:http2 server) over a forwarder whose balancer tries `urls` in order. */
async function front(urls: string[]): Promise<{ url: string; fwd: GrpcForwarder; balancer: EndpointBalancer }> {
  const inOrder = { name: 'in-order', pick: (candidates: readonly { url: string }[]) => candidates.find((e) => e.url === urls[0]) ?? candidates[0]! };
  const balancer = new EndpointBalancer({ endpoints: urls, strategy: inOrder as never, leaderWrites: false, failureWait: 60000 });
  const fwd = new GrpcForwarder({ balancer });
  const server = createServer();
  server.on('stream', fwd.handle);
  server.on('session', (s) => cleanups.push(() => s.destroy()));
  const url = await listen(server);
  cleanups.push(() => {
    fwd.close();
    balancer.close();
  });
  return { url, fwd, balancer };
}

/** One call through `url`: the response headers, body and trailers (5 s bound). */
function call(url: string, path: string, body: Buffer): Promise<{ headers: IncomingHttpHeaders; body: Buffer; trailers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const session = connect(url);
    session.on('error', reject);
    const timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5000);
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => (headers = h));
    req.on('trailers', (t) => (trailers = t));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', reject);
    req.on('close', () => {
      clearTimeout(timer);
      session.close();
      resolve({ headers, body: Buffer.concat(chunks), trailers });
    });
    req.end(body);
  });
}

describe('GrpcForwarder: faults only a fake member produces', () => {
  it('a stream the member refuses (REFUSED_STREAM) after its request arrived goes to the next member, whole; the first is not marked down', async () => {
    const refusing = await fakeMember((stream) => stream.once('data', () => stream.close(constants.NGHTTP2_REFUSED_STREAM)));
    const good = await fakeMember(echo);
    const { url, fwd, balancer } = await front([refusing.url, good.url]);
    const retried: GrpcRetriedEvent[] = [];
    fwd.on('retried', (e) => retried.push(e));
    const body = randomBytes(20000);
    const res = await call(url, '/etcdserverpb.KV/Put', body);
    assert.equal(res.trailers['grpc-status'], '0');
    assert.ok(res.body.equals(body), 'the second member got the whole request');
    assert.equal(refusing.calls, 1);
    assert.equal(good.calls, 1);
    assert.deepEqual(retried.map((e) => [e.from, e.to]), [[refusing.url, good.url]]);
    assert.equal(balancer.endpoints.find((e) => e.url === refusing.url)?.state, 'up');
  });

  it('a request refused after more than 64 KiB of it was sent is not sent again: the client gets UNAVAILABLE', async () => {
    const refusing = await fakeMember((stream) => {
      let got = 0;
      stream.on('data', (c: Buffer) => {
        got += c.length;
        if (got > 100000 && !stream.closed) stream.close(constants.NGHTTP2_REFUSED_STREAM);
      });
    });
    const good = await fakeMember(echo);
    const { url, fwd } = await front([refusing.url, good.url]);
    const dropped: GrpcDroppedEvent[] = [];
    fwd.on('dropped', (e) => dropped.push(e));
    const res = await call(url, '/etcdserverpb.KV/Put', randomBytes(200000));
    assert.equal(res.headers['grpc-status'] ?? res.trailers['grpc-status'], '14');
    assert.equal(good.calls, 0);
    assert.equal(dropped[0]?.reason, 'member-lost');
  });

  it('a member that ends a call without a gRPC status: the client gets INTERNAL, not a hang nor UNAVAILABLE', async () => {
    const noStatus = await fakeMember((stream) => {
      stream.resume();
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
        stream.end(Buffer.from([0, 0, 0, 0, 0]));
      });
    });
    const { url } = await front([noStatus.url]);
    const res = await call(url, '/etcdserverpb.KV/Range', Buffer.from([0, 0, 0, 0, 0]));
    assert.equal(res.trailers['grpc-status'], '13');
    assert.match(decodeURIComponent(String(res.trailers['grpc-message'])), /ended the call without a status/);
  });

  it('metadata and trailers pass both ways untouched, binary ones included', async () => {
    let seen: IncomingHttpHeaders = {};
    const member = await fakeMember((stream, headers) => {
      seen = headers;
      stream.resume();
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-answer-bin': Buffer.from([1, 2, 3]).toString('base64') }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '9', 'grpc-message': 'not%20yet', 'grpc-status-details-bin': 'AAEC' }));
        stream.end();
      });
    });
    const { url } = await front([member.url]);
    const session = connect(url);
    cleanups.push(() => session.destroy());
    const req = session.request({ ':method': 'POST', ':path': '/etcdserverpb.KV/Txn', 'content-type': 'application/grpc', te: 'trailers', token: 'secret-token', 'grpc-timeout': '2S' });
    const response = new Promise<IncomingHttpHeaders>((resolve) => req.on('response', resolve));
    const trailers = new Promise<IncomingHttpHeaders>((resolve) => req.on('trailers', resolve));
    req.resume();
    req.end(Buffer.from([0, 0, 0, 0, 0]));
    assert.equal((await response)['x-answer-bin'], 'AQID');
    const t = await trailers;
    assert.deepEqual([t['grpc-status'], t['grpc-message'], t['grpc-status-details-bin']], ['9', 'not%20yet', 'AAEC']);
    assert.equal(seen.token, 'secret-token');
    assert.equal(seen['grpc-timeout'], '2S');
    assert.equal(seen[':path'], '/etcdserverpb.KV/Txn');
  });
});

describe('GrpcForwarder options', () => {
  it('are checked when it is made, with messages naming the option', () => {
    const balancer = new EndpointBalancer({});
    cleanups.push(() => balancer.close());
    assert.throws(() => new GrpcForwarder({ balancer: undefined as never }), { message: 'invalid option balancer: expected an EndpointBalancer, got undefined' });
    assert.throws(() => new GrpcForwarder({ balancer, mode: 'on' as never }), { message: 'invalid option mode: expected "readwrite" or "readonly", got "on"' });
    assert.throws(() => new GrpcForwarder({ balancer, dialTimeout: 0 }), /^InvalidOptionError: invalid option dialTimeout: /);
    assert.throws(() => new GrpcForwarder({ balancer, keepaliveTime: -1 }), /^InvalidOptionError: invalid option keepaliveTime: /);
    assert.throws(() => new GrpcForwarder({ balancer, keepaliveTimeout: '5s' as never }), /^InvalidOptionError: invalid option keepaliveTimeout: /);
    assert.throws(() => new GrpcForwarder({ balancer, tls: { certFile: '/nonexistent/cert.pem', keyFile: '/nonexistent/key.pem' } }), /invalid option tls\.certFile: cannot read/);
  });

  it('an aborted signal closes it: later calls get UNAVAILABLE without reaching a member', async () => {
    // Nothing listens there: a call that tried would fail differently (no member reachable, after a dial).
    const balancer = new EndpointBalancer({ endpoints: ['http://127.0.0.1:1'] });
    const dropped: string[] = [];
    const controller = new AbortController();
    const fwd = new GrpcForwarder({ balancer, signal: controller.signal });
    const server = createServer();
    server.on('stream', fwd.handle);
    server.on('session', (s) => cleanups.push(() => s.destroy()));
    const url = await listen(server);
    cleanups.push(() => balancer.close());
    fwd.on('dropped', (e) => dropped.push(e.reason));
    controller.abort();
    const res = await call(url, '/etcdserverpb.KV/Range', Buffer.from([0, 0, 0, 0, 0]));
    assert.equal(res.headers['grpc-status'], '14');
    assert.deepEqual(dropped, ['shutting-down']);
  });
});
