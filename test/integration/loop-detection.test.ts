/**
 * A member that advertises the proxy's own address as its client URL (easy
 * on a host that runs both) must not make the proxy forward to itself, and a
 * request that comes back through the same proxy is answered 508.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { cleanup, freePort, http, member, proxy, skipWithoutEtcd, tempDir } from './harness.js';

describe('forwarding loops', { skip: skipWithoutEtcd }, () => {
  after(cleanup);

  test("a member advertising the proxy's own address: that endpoint is dropped with a warning", async () => {
    const proxyPort = await freePort();
    const m = await member({ advertiseClientUrl: `http://127.0.0.1:${proxyPort}` });
    const warnings: string[] = [];
    const p = await proxy({ listenClientUrls: [`http://127.0.0.1:${proxyPort}`], initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() });
    p.on('warning', (w) => warnings.push(w));
    await new Promise((r) => setImmediate(r));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, new RegExp(`ignoring client URL http://127.0.0.1:${proxyPort}: it is this proxy's own address`));
    assert.deepEqual(p.balancer.endpoints.map((e) => e.url), []);
    const res = await http(`${p.url}/v2/keys/x`, { timeout: 3000 });
    assert.equal(res.status, 503, 'no endpoint left: answered at once, not forwarded to itself');
    assert.equal(p.handler.inFlight, 0);
  });

  test('two proxies pointed at each other: the request that comes back gets 508 instead of looping', async () => {
    const [portA, portB] = [await freePort(), await freePort()];
    // One real member advertising both proxies' addresses: A drops its own and forwards to B; B drops its own and forwards to A.
    const m = await member({ advertiseClientUrl: `http://127.0.0.1:${portA},http://127.0.0.1:${portB}` });
    const initialCluster = `${m.name}=${m.peerUrl}`;
    const a = await proxy({ listenClientUrls: [`http://127.0.0.1:${portA}`], initialCluster, dataDir: await tempDir() });
    const b = await proxy({ listenClientUrls: [`http://127.0.0.1:${portB}`], initialCluster, dataDir: await tempDir() });
    assert.deepEqual(a.balancer.endpoints.map((e) => e.url), [`http://127.0.0.1:${portB}`]);
    assert.deepEqual(b.balancer.endpoints.map((e) => e.url), [`http://127.0.0.1:${portA}`]);
    const res = await http(`${a.url}/v2/keys/loop`, { timeout: 3000 });
    assert.equal(res.status, 508);
    assert.match((res.json() as { message: string }).message, /request loop detected/);
    assert.equal(a.handler.inFlight + b.handler.inFlight, 0);
  });
});
