/**
 * How a v2 watch served by the v3 backend ends, when the proxy or the client
 * ends it:
 * - a client that leaves while its watch is still being authorized (the
 *   bcrypt check of its Basic credentials) leaves no watch behind: its
 *   connection's 'close' came before the watch listened for it, and the
 *   watch stayed open (counted in /v2/stats/store, its v3 watch on the
 *   member) until its next event;
 * - a graceful stop ends every open watch's answer with its last chunk, so
 *   that the client sees a finished answer and polls again with its
 *   waitIndex; it used to be left open until the connections were cut.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cleanup, eventually, form, http, member, proxy, RawConnection, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';

const watchers = async (url: string): Promise<number> => ((await http(`${url}/v2/stats/store`)).json() as { watchers: number }).watchers;

describe('v3 mode: how a watch ends', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  before(async () => {
    m = await member({ enableV2: false });
  });
  after(cleanup);

  test('a client that leaves while its watch is authorized leaves no watch behind', async () => {
    const p = await proxy({ backend: 'v3', initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir(), v3Prefix: '/authed' });
    const put = (path: string, body: object, auth?: string): Promise<{ status: number }> =>
      http(`${p.url}${path}`, { method: 'PUT', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json', ...(auth === undefined ? {} : { Authorization: `Basic ${Buffer.from(auth).toString('base64')}` }) } });
    assert.equal((await put('/v2/auth/users/root', { user: 'root', password: 'rootpw' })).status, 201);
    assert.equal((await put('/v2/auth/enable', {})).status, 200);
    const host = new URL(p.url).host;
    // Each watcher is a user of its own: its first check runs bcrypt (tens of ms), and the client is gone before it ends.
    assert.equal((await put('/v2/auth/roles/reader', { role: 'reader', permissions: { kv: { read: ['/*'], write: [] } } }, 'root:rootpw')).status, 201);
    for (let i = 0; i < 5; i++) {
      assert.equal((await put(`/v2/auth/users/u${i}`, { user: `u${i}`, password: 'pw' }, 'root:rootpw')).status, 201);
      assert.equal((await put(`/v2/auth/users/u${i}`, { user: `u${i}`, grant: ['reader'] }, 'root:rootpw')).status, 200);
      const conn = await RawConnection.open(p.url);
      const auth = Buffer.from(`u${i}:pw`).toString('base64');
      conn.write(`GET /v2/keys/w?wait=true HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Basic ${auth}\r\n\r\n`);
      conn.close();
    }
    // One watch that stays: the count is read while the left ones would still be there.
    const stays = await RawConnection.open(p.url);
    stays.write(`GET /v2/keys/w?wait=true HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Basic ${Buffer.from('root:rootpw').toString('base64')}\r\n\r\n`);
    const head = await stays.read({ head: true });
    assert.equal(head.status, 200);
    await eventually(async () => (await watchers(p.url)) === 1, 5000, 'only the watch whose client stayed to be counted');
    assert.equal(p.handler.inFlight, 1, 'nothing else in flight');
    stays.close();
    await eventually(async () => (await watchers(p.url)) === 0, 5000, 'no watch left');
    const disabled = await http(`${p.url}/v2/auth/enable`, { method: 'DELETE', headers: { Authorization: `Basic ${Buffer.from('root:rootpw').toString('base64')}` } });
    assert.equal(disabled.status, 200);
  });

  test('a graceful stop ends each open watch with its last chunk', async () => {
    const p = await proxy({ backend: 'v3', initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() });
    assert.equal((await http(`${p.url}/v2/keys/g`, { method: 'PUT', body: form({ value: 'a' }) })).status, 201);
    const host = new URL(p.url).host;
    const conns = await Promise.all([RawConnection.open(p.url), RawConnection.open(p.url)]);
    conns[0]!.write(`GET /v2/keys/g?wait=true HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    conns[1]!.write(`GET /v2/keys/g?wait=true&stream=true HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    await eventually(async () => (await watchers(p.url)) === 2, 5000, 'both watches to be open');
    const closing = p.close();
    for (const conn of conns) {
      const answer = await conn.read({ ms: 3000 });
      assert.equal(answer.status, 200);
      assert.equal(answer.framing, 'chunked');
      assert.equal(answer.body, '', 'no event: the answer just ends');
    }
    await closing;
    for (const conn of conns) conn.close();
  });
});
