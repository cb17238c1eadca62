import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { V3_REFUSAL_MESSAGE } from '../../src/index.js';
import { cleanup, connectAndReset, etcdctl, etcdctlV3, http, member, proxy, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';

/** Sends raw bytes on one connection, `gapMs` apart, and resolves with what was read once `done(read)` holds (5 s bound). */
function rawExchange(url: string, pieces: string[], gapMs: number, done: (read: string) => boolean): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let got = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within 5 s; got: ${got}`));
    }, 5000);
    socket.on('data', (b) => {
      got += b.toString('latin1');
      if (!done(got)) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(got);
    });
    socket.on('error', reject);
    socket.on('connect', async () => {
      for (const p of pieces) {
        socket.write(p);
        await new Promise((r) => setTimeout(r, gapMs));
      }
    });
  });
}

const count = (text: string, part: string): number => text.split(part).length - 1;

describe("with v3Clients: 'refuse', v3 (gRPC) clients get a clear answer at once", { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  let url: string;
  before(async () => {
    m = await member();
    url = (await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir(), v3Clients: 'refuse' })).url;
  });
  after(cleanup);

  test('ETCDCTL_API=3 etcdctl get through the proxy fails in under a second and says why', async () => {
    // Directly against the member, v3 works: the failure below is the proxy's answer.
    assert.equal((await etcdctlV3(m.clientUrl, ['put', 'key2', 'sssssssssss'])).code, 0);
    const res = await etcdctlV3(url, ['get', 'key2']);
    assert.notEqual(res.code, 0);
    assert.ok(res.ms < 1000, `took ${res.ms} ms`);
    assert.match(res.stderr, /code = Unimplemented/);
    assert.ok(res.stderr.includes(V3_REFUSAL_MESSAGE), res.stderr);
  });

  test('etcdctl v3 put is refused the same way and writes nothing', async () => {
    const res = await etcdctlV3(url, ['put', 'v3key', 'x']);
    assert.notEqual(res.code, 0);
    assert.ok(res.ms < 1000, `took ${res.ms} ms`);
    assert.ok(res.stderr.includes(V3_REFUSAL_MESSAGE));
    assert.equal((await etcdctlV3(m.clientUrl, ['get', 'v3key', '--print-value-only'])).code, 0);
    assert.equal((await http(`${m.clientUrl}/v2/keys/v3key`)).status, 404);
  });

  test('v2 on the same listener still works: etcdctl v2, keep-alive and pipelined HTTP/1.1', async () => {
    assert.equal((await etcdctl(url, ['--no-sync', 'set', 'k', 'v'])).stdout, 'v\n');
    assert.equal((await etcdctl(url, ['--no-sync', 'get', 'k'])).stdout, 'v\n');
    const host = new URL(url).host;
    const two = await rawExchange(
      url,
      [`GET /v2/keys/k HTTP/1.1\r\nHost: ${host}\r\n\r\nGET /v2/keys/k HTTP/1.1\r\nHost: ${host}\r\n\r\n`],
      0,
      (read) => count(read, '"value":"v"') === 2,
    );
    assert.equal(count(two, 'HTTP/1.1 200 OK'), 2);
  });

  test('a request whose first bytes trickle in (P, U, then the rest) is still HTTP/1.1', async () => {
    const host = new URL(url).host;
    const got = await rawExchange(url, ['P', 'U', `T /v2/keys/trickle?value=t HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 0\r\n\r\n`], 30, (read) => read.includes('"value":"t"'));
    assert.match(got, /^HTTP\/1\.1 201 Created/);
  });

  test('clients that reset the connection before their first byte do not take the proxy down', async () => {
    // Nothing sent, or the start of the h2c preface: the connection is still undecided when the RST
    // comes, 50 ms after connecting (the proxy has taken the connection), as some health checkers close.
    for (const first of ['', 'PRI', '', 'PRI * HTTP/2.0']) await connectAndReset(url, first, 50);
    await new Promise((r) => setTimeout(r, 100));
    // An 'error' with no listener would have ended this process (the proxy runs in it) before this line.
    assert.equal((await http(`${url}/v2/keys/k`)).status, 200);
  });

  test('close() does not wait for a v3 client that keeps its connection open', async () => {
    const p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir(), v3Clients: 'refuse' });
    const { hostname, port } = new URL(p.url);
    const s = connect(Number(port), hostname);
    let answered = '';
    s.on('data', (b) => (answered += b.toString('latin1')));
    const closedByProxy = new Promise<void>((resolve) => s.on('close', () => resolve()));
    s.on('error', () => undefined);
    // The h2c preface and an empty SETTINGS frame, then nothing: an idle gRPC client.
    s.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]));
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(answered.length > 0, 'the proxy answered the preface (its SETTINGS)');
    const started = Date.now();
    const closed = await Promise.race([p.close().then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
    s.destroy(); // lets a close() that waited for it finish
    assert.ok(closed, 'close() was still waiting for the v3 client after 3 s');
    assert.ok(Date.now() - started < 2000, `close() took ${Date.now() - started} ms`);
    await closedByProxy;
  });
});
