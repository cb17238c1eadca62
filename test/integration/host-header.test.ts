/**
 * The Host header of client requests (issue 19), through createProxy (its
 * own HTTP/1.1 reader hands such requests to node:http) and through the
 * embedded V2ProxyHandler in a plain node:http server, against a real
 * member:
 *  - more than one Host: 400 and the connection closed (RFC 9112 section
 *    3.2), as node:http answers a request without one; nothing is forwarded;
 *  - no Host (HTTP/1.0, which node:http lets through without one): the
 *    request goes to the member as HTTP/1.1 with the member's authority as
 *    Host; etcd answers an HTTP/1.1 request without one with 400.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EndpointBalancer, V2ProxyHandler } from '../../src/index.js';
import { cleanup, http, member, proxy, RawConnection, requestsReceived, serveHandler, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';

describe('client requests with two Host headers, or none', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  const targets: Array<{ name: string; url: string }> = [];
  const opened: RawConnection[] = [];
  const open = async (url: string): Promise<RawConnection> => {
    const c = await RawConnection.open(url);
    opened.push(c);
    return c;
  };

  before(async () => {
    m = await member();
    assert.equal((await http(`${m.clientUrl}/v2/keys/host/k`, { method: 'PUT', body: 'value=v' })).status, 201);
    const p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() });
    targets.push({ name: 'createProxy', url: p.url });
    const balancer = new EndpointBalancer({ endpoints: [m.clientUrl] });
    targets.push({ name: 'V2ProxyHandler in node:http', url: await serveHandler(new V2ProxyHandler({ balancer }), balancer) });
  });
  after(async () => {
    for (const c of opened) c.close();
    await cleanup();
  });

  it('two Host headers: 400 and the connection closed, nothing forwarded', async () => {
    for (const { name, url } of targets) {
      const before = await requestsReceived(m.clientUrl, 'GET');
      for (const hosts of ['Host: a\r\nHost: b\r\n', 'Host: a\r\nhost: a\r\n']) {
        const c = await open(url);
        c.write(`GET /v2/keys/host/k HTTP/1.1\r\n${hosts}\r\n`);
        const answer = await c.read();
        assert.equal(answer.status, 400, `${name}: ${answer.lines.join(' | ')}`);
        assert.equal(answer.headers.get('connection'), 'close', name);
        await c.closedWithin(2000);
      }
      // After a request with one Host on the same kind of connection, the member saw only that one.
      const c = await open(url);
      c.write('GET /v2/keys/host/k HTTP/1.1\r\nHost: a\r\n\r\n');
      assert.equal((await c.read()).status, 200, name);
      assert.equal(await requestsReceived(m.clientUrl, 'GET'), before + 1, `${name}: only the request with one Host reached the member`);
    }
  });

  it('no Host (HTTP/1.0): forwarded with the member\'s authority, and the member answers it', async () => {
    // What etcd answers when the proxy forwards an HTTP/1.1 request without Host.
    const direct = await open(m.clientUrl);
    direct.write('GET /v2/keys/host/k HTTP/1.1\r\n\r\n');
    assert.equal((await direct.read()).status, 400);
    for (const { name, url } of targets) {
      const c = await open(url);
      c.write('GET /v2/keys/host/k HTTP/1.0\r\n\r\n');
      const answer = await c.read();
      assert.equal(answer.status, 200, `${name}: ${answer.body}`);
      assert.equal((JSON.parse(answer.body) as { node: { value: string } }).node.value, 'v', name);
    }
  });
});
