/**
 * A request without Host (HTTP/1.0) is forwarded as HTTP/1.1 with a Host
 * naming the authority of the member each attempt goes to, the retry's too
 * (issue 19). Recording servers stand in for the members: a real etcd
 * member does not say which Host it got (test/integration/host-header.test.ts
 * checks against a real member that such a request is answered).
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { EndpointBalancer, V2ProxyHandler } from '../../src/index.js';

/** Requests seen by all recorders: the first of them is dropped unanswered (the retry goes to the other member). */
let seen = 0;

/** A server that records each request's Host, then answers (the very first request of all is dropped unanswered). */
async function recorder(): Promise<{ url: string; hosts: Array<string | undefined>; close(): Promise<void> }> {
  const hosts: Array<string | undefined> = [];
  const server = createServer((req, res) => {
    hosts.push(req.headers.host);
    if (seen++ === 0) req.socket.destroy();
    else res.end('{"action":"get","node":{"key":"/k","value":"v","modifiedIndex":1,"createdIndex":1}}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hosts,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

describe('Host for a request that came without one', () => {
  it('each attempt names the authority of the member it goes to', async (t) => {
    const first = await recorder();
    const second = await recorder();
    const balancer = new EndpointBalancer({ endpoints: [first.url, second.url], leaderWrites: false });
    const handler = new V2ProxyHandler({ balancer, hedgeDelay: 0 });
    const front = createServer(handler.handle);
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    t.after(async () => {
      handler.close();
      balancer.close();
      front.closeAllConnections();
      await new Promise<void>((resolve) => front.close(() => resolve()));
      await first.close();
      await second.close();
    });
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect((front.address() as AddressInfo).port, '127.0.0.1', () => socket.write('GET /v2/keys/k HTTP/1.0\r\n\r\n'));
      let text = '';
      socket.on('data', (b: Buffer) => (text += b.toString('latin1')));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    assert.match(answer, /^HTTP\/1\.1 200 /);
    // One attempt each (the first dropped, the retry answered), each with its own member's authority.
    assert.deepEqual(first.hosts, [new URL(first.url).host]);
    assert.deepEqual(second.hosts, [new URL(second.url).host]);
  });
});
