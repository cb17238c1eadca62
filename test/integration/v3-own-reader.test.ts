/**
 * `/v2/keys` requests in v3 mode are read and answered by createProxy's own
 * HTTP/1.1 reader (client-connection.ts), not node:http: the v3 backend
 * writes its answers, watches included, through the same narrow writer the
 * forwarder uses. What a client must not notice: auth checks (Basic
 * credentials from the raw headers), keep-alive connections carrying plain
 * requests, HEAD and watches in turn, and the framing of each answer.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cleanup, etcdctl, form, http, member, proxy, RawConnection, skipWithoutEtcd, tempDir } from './harness.js';
import type { Answer } from './harness.js';

describe("v3 mode: keys requests on createProxy's own reader", { skip: skipWithoutEtcd }, () => {
  let url: string;
  before(async () => {
    const m = await member({ enableV2: false });
    url = (await proxy({ backend: 'v3', initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() })).url;
  });
  after(cleanup);

  test('one keep-alive connection: PUT, GET, HEAD, a watch and a GET after it, each framed as node:http frames it', async () => {
    const conn = await RawConnection.open(url);
    const host = new URL(url).host;
    const send = (method: string, target: string, body?: string): void => {
      const head = `${method} ${target} HTTP/1.1\r\nHost: ${host}\r\n`;
      conn.write(
        body === undefined ? `${head}\r\n` : `${head}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    };
    const index = (a: Answer): number => Number(a.headers.get('x-etcd-index'));

    send('PUT', '/v2/keys/own/a', form({ value: 'one' }));
    const put = await conn.read();
    assert.equal(put.status, 201, put.body);
    assert.equal(put.framing, 'length');
    assert.equal((JSON.parse(put.body) as { action: string }).action, 'set');

    send('GET', '/v2/keys/own/a');
    const get = await conn.read();
    assert.equal(get.status, 200);
    assert.equal((JSON.parse(get.body) as { node: { value: string } }).node.value, 'one');
    assert.ok(get.headers.has('date') && get.headers.get('connection') === 'keep-alive', get.lines.join('\n'));

    send('HEAD', '/v2/keys/own/a');
    const head = await conn.read({ head: true });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), get.headers.get('content-length'), 'HEAD: the length of the GET');
    assert.equal(index(head), index(get));

    send('GET', `/v2/keys/own/a?wait=true&waitIndex=${index(get) + 1}`);
    const changed = await http(`${url}/v2/keys/own/a`, { method: 'PUT', body: form({ value: 'two' }) });
    assert.equal(changed.status, 200);
    const watched = await conn.read();
    assert.equal(watched.status, 200);
    assert.equal(watched.framing, 'chunked');
    const ev = JSON.parse(watched.body) as { action: string; node: { value: string }; prevNode: { value: string } };
    assert.deepEqual([ev.action, ev.node.value, ev.prevNode.value], ['set', 'two', 'one']);

    send('GET', '/v2/keys/own/missing');
    const missing = await conn.read();
    assert.equal(missing.status, 404);
    assert.equal((JSON.parse(missing.body) as { errorCode: number }).errorCode, 100);
    assert.ok(index(missing) >= index(watched), 'X-Etcd-Index never goes back');
    conn.close();
  });

  test('a malformed request and a method keys do not take get v2 answers', async () => {
    const bad = await http(`${url}/v2/keys/own/b?ttl=abc`, { method: 'PUT', body: form({ value: 'x' }) });
    assert.equal(bad.status, 400);
    assert.equal((bad.json() as { errorCode: number }).errorCode, 202);
    const patch = await http(`${url}/v2/keys/own/b`, { method: 'PATCH' });
    assert.equal(patch.status, 405);
    assert.equal(patch.headers.allow, 'HEAD,GET,PUT,POST,DELETE');
    // Framed as Go frames it: a length, not chunks.
    assert.equal(patch.headers['content-length'], '19');
    assert.equal(patch.headers['transfer-encoding'], undefined);
    assert.equal(patch.body, 'Method Not Allowed\n');
  });

  test('etcdctl v2 with auth enabled: the checks read the credentials of each request', async () => {
    const ctl = (...args: string[]): ReturnType<typeof etcdctl> => etcdctl(url, ['--no-sync', ...args]);
    const ok = async (...args: string[]): Promise<string> => {
      const r = await ctl(...args);
      assert.equal(r.code, 0, `etcdctl ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    await ok('user', 'add', 'root:rootpw');
    await ok('user', 'add', 'app:apppw');
    await ok('role', 'add', 'app-rw');
    await ok('role', 'grant', 'app-rw', '--path', '/app/*', '--readwrite');
    await ok('user', 'grant', 'app', '--roles', 'app-rw');
    await ok('set', '/app/k', 'v1');
    await ok('auth', 'enable');
    await ok('--username', 'root:rootpw', 'role', 'revoke', 'guest', '--path', '/*', '--readwrite');
    try {
      const guest = await ctl('get', '/app/k');
      assert.notEqual(guest.code, 0);
      assert.match(guest.stderr, /Insufficient credentials/);
      const wrong = await ctl('--username', 'app:nope', 'get', '/app/k');
      assert.match(wrong.stderr, /Insufficient credentials/);
      assert.equal(await ok('--username', 'app:apppw', 'set', '/app/k', 'v2'), 'v2\n');
      assert.equal(await ok('--username', 'app:apppw', 'get', '/app/k'), 'v2\n');
      const outside = await ctl('--username', 'app:apppw', 'set', '/other', 'x');
      assert.match(outside.stderr, /Insufficient credentials/);
      // A watch is checked too.
      const watch = await http(`${url}/v2/keys/app/k?wait=true`, { timeout: 3000 });
      assert.equal(watch.status, 401);
      assert.equal((watch.json() as { errorCode: number }).errorCode, 110);
    } finally {
      await ok('--username', 'root:rootpw', 'auth', 'disable');
    }
    assert.equal(await ok('get', '/app/k'), 'v2\n');
  });
});
