/**
 * v3 mode, the proxy's own HTTP/1.1 reader: a /v2/keys write whose head
 * arrived before the handler stopped, and whose body finished arriving
 * after, gets the 503 a forwarded request gets then, and is not applied.
 * (Found in review, fixed in eecf3ae: it used to be applied.) The same for
 * a forwarded request, on an embedded handler's node:http route, is in
 * v2-proxy-handler.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cleanup, http, member, proxy, RawConnection, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';

describe('v3 mode: a keys request whose body ends after the handler stopped', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  before(async () => {
    m = await member({ enableV2: false });
  });
  after(cleanup);

  test('gets 503 with Connection: close and is not applied (own HTTP/1.1 reader)', async () => {
    const dataDir = await tempDir();
    const p = await proxy({ backend: 'v3', initialCluster: `${m.name}=${m.peerUrl}`, dataDir });
    let byNodeHttp = 0;
    for (const s of p.servers) s.on('request', () => byNodeHttp++);
    const host = new URL(p.url).host;
    const late = await RawConnection.open(p.url);
    const body = 'value=late';
    late.write(`PUT /v2/keys/late HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\nvalue=`);
    // A request sent after that one's head, on another connection, answered through the v3 backend: its answer needs
    // a round trip to the member, and the head above was in the proxy's socket before this request was (loopback
    // delivers a write before it returns), so it has been read by the time this answer comes.
    const other = await RawConnection.open(p.url);
    other.write(`GET /v2/keys/?quorum=true HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    assert.equal((await other.read()).status, 200);
    other.close();
    p.handler.close();
    late.write('late');
    const answer = await late.read();
    assert.equal(answer.status, 503);
    assert.equal(answer.headers.get('connection'), 'close');
    assert.match(answer.body, /shutting down/);
    assert.equal(byNodeHttp, 0, 'both requests were read by the own reader, not by node:http');
    late.close();
    await p.close();
    // A new proxy on the same prefix: nothing was written.
    const q = await proxy({ backend: 'v3', initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() });
    assert.equal((await http(`${q.url}/v2/keys/late?quorum=true`)).status, 404);
  });
});
