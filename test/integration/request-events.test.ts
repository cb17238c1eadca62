/**
 * The handler's typed request events, with their payloads, against a real
 * member: request, forwarded, retried, dropped (each reason that a real
 * member can cause) and clientAborted.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { EndpointBalancer, UpstreamError, V2ProxyHandler } from '../../src/index.js';
import type { ClientAbortedEvent, DroppedEvent, ForwardedEvent, RetriedEvent, V2ProxyHandlerOptions } from '../../src/index.js';
import {
  cleanup,
  eventually,
  form,
  freePort,
  http,
  member,
  pipelineReadsUnderTest,
  serveHandler,
  skipWithoutEtcd,
} from './harness.js';
import type { LocalEtcd } from './harness.js';

interface Recorded {
  requests: Array<[string, string]>;
  forwarded: ForwardedEvent[];
  retried: RetriedEvent[];
  dropped: DroppedEvent[];
  aborted: ClientAbortedEvent[];
}

/** A handler over `endpoints` (tried in the order given) on 127.0.0.1:0, with every request event recorded. */
async function embed(endpoints: readonly string[], options: Omit<V2ProxyHandlerOptions, 'balancer'> = {}): Promise<{ url: string; handler: V2ProxyHandler; events: Recorded }> {
  const balancer = new EndpointBalancer({
    endpoints,
    strategy: { name: 'in-order', pick: (candidates) => candidates.find((e) => e.url === endpoints[0]) ?? candidates[0]! },
    leaderWrites: false,
  });
  const handler = new V2ProxyHandler({ balancer, ...pipelineReadsUnderTest, ...options });
  const events: Recorded = { requests: [], forwarded: [], retried: [], dropped: [], aborted: [] };
  handler.on('request', (method, url) => events.requests.push([method, url]));
  handler.on('forwarded', (e) => events.forwarded.push(e));
  handler.on('retried', (e) => events.retried.push(e));
  handler.on('dropped', (e) => events.dropped.push(e));
  handler.on('clientAborted', (e) => events.aborted.push(e));
  const url = await serveHandler(handler, balancer);
  return { url, handler, events };
}

describe('request events of V2ProxyHandler, with their payloads', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  let dead: string;
  before(async () => {
    m = await member();
    dead = `http://127.0.0.1:${await freePort()}`;
  });
  after(cleanup);

  it('request and forwarded: the member, its status, one attempt; watch: true for a long poll', async () => {
    const { url, events } = await embed([m.clientUrl]);
    assert.equal((await http(`${url}/v2/keys/ev/a`, { method: 'PUT', body: form({ value: '1' }) })).status, 201);
    assert.equal((await http(`${url}/v2/keys/ev/a?quorum=true`)).status, 200);
    assert.deepEqual(events.requests, [['PUT', '/v2/keys/ev/a'], ['GET', '/v2/keys/ev/a?quorum=true']]);
    assert.equal(events.forwarded.length, 2);
    const [put, get] = events.forwarded;
    assert.deepEqual({ ...put!, durationMs: 0 }, { method: 'PUT', url: '/v2/keys/ev/a', endpoint: m.clientUrl, status: 201, durationMs: 0, attempts: 1, watch: false });
    assert.deepEqual({ ...get!, durationMs: 0 }, { method: 'GET', url: '/v2/keys/ev/a?quorum=true', endpoint: m.clientUrl, status: 200, durationMs: 0, attempts: 1, watch: false });
    assert.ok(get!.durationMs > 0 && get!.durationMs < 5000, String(get!.durationMs));

    const watch = http(`${url}/v2/keys/ev/a?wait=true`);
    await eventually(() => events.forwarded.length === 3, 5000, 'the watch headers');
    assert.equal(events.forwarded[2]!.watch, true);
    assert.equal(events.forwarded[2]!.status, 200);
    await http(`${m.clientUrl}/v2/keys/ev/a`, { method: 'PUT', body: form({ value: '2' }) });
    assert.equal((await watch).status, 200);
    assert.deepEqual(events.dropped, []);
    assert.deepEqual(events.retried, []);
  });

  it('retried: from the endpoint that failed to the next, with the failure; then forwarded on attempt 2', async () => {
    const { url, events } = await embed([dead, m.clientUrl]);
    assert.equal((await http(`${url}/v2/keys/ev/a`)).status, 200);
    assert.equal(events.retried.length, 1);
    const r = events.retried[0]!;
    assert.equal(r.method, 'GET');
    assert.equal(r.url, '/v2/keys/ev/a');
    assert.equal(r.from, dead);
    assert.equal(r.to, m.clientUrl);
    assert.ok(r.error instanceof UpstreamError);
    assert.equal(r.error.endpoint, dead);
    assert.equal(r.error.phase, 'connect');
    assert.match(r.error.message, /ECONNREFUSED/);
    assert.equal(events.forwarded.length, 1);
    assert.equal(events.forwarded[0]!.attempts, 2);
    assert.equal(events.forwarded[0]!.endpoint, m.clientUrl);
  });

  it('dropped, with the reason, the status sent and the member\'s failure', async () => {
    const empty = await embed([]);
    assert.equal((await http(`${empty.url}/v2/keys/ev/a`)).status, 503);
    assert.deepEqual(empty.events.dropped, [{ method: 'GET', url: '/v2/keys/ev/a', reason: 'zero-endpoints', status: 503 }]);

    const deadOnly = await embed([dead]);
    assert.equal((await http(`${deadOnly.url}/v2/keys/ev/a`)).status, 502);
    const failed = deadOnly.events.dropped[0]!;
    assert.equal(failed.reason, 'failed-sending');
    assert.equal(failed.status, 502);
    assert.ok(failed.error instanceof UpstreamError && failed.error.endpoint === dead);

    const ro = await embed([m.clientUrl], { mode: 'readonly', maxBodyBytes: 16 });
    assert.equal((await http(`${ro.url}/v2/keys/ev/a`, { method: 'DELETE' })).status, 501);
    assert.equal((await http(`${ro.url}/v2/keys/ev/a`, { method: 'GET', headers: { Via: '1.1 etcd-v2-proxy-loop' } })).status, 200);
    assert.deepEqual(ro.events.dropped, [{ method: 'DELETE', url: '/v2/keys/ev/a', reason: 'readonly', status: 501 }]);

    const small = await embed([m.clientUrl], { maxBodyBytes: 16, proxyId: 'events-test' });
    assert.equal((await http(`${small.url}/v2/keys/ev/big`, { method: 'PUT', body: form({ value: 'x'.repeat(64) }) })).status, 413);
    assert.equal((await http(`${small.url}/v2/keys/ev/a`, { headers: { Via: '1.1 etcd-v2-proxy-events-test' } })).status, 508);
    assert.deepEqual(small.events.dropped, [
      { method: 'PUT', url: '/v2/keys/ev/big', reason: 'body-too-large', status: 413 },
      { method: 'GET', url: '/v2/keys/ev/a', reason: 'loop', status: 508 },
    ]);

    const closing = await embed([m.clientUrl]);
    closing.handler.close();
    assert.equal((await http(`${closing.url}/v2/keys/ev/a`)).status, 503);
    assert.deepEqual(closing.events.dropped, [{ method: 'GET', url: '/v2/keys/ev/a', reason: 'shutting-down', status: 503 }]);
  });

  it('dropped with reason timeout: a write to a member that stopped answering gets 504, not re-sent', async () => {
    const stopped = await member();
    const { url, events } = await embed([stopped.clientUrl, m.clientUrl], { responseTimeout: 300 });
    stopped.signal('SIGSTOP');
    try {
      const res = await http(`${url}/v2/keys/ev/t`, { method: 'PUT', body: form({ value: 'once' }) });
      assert.equal(res.status, 504);
    } finally {
      stopped.signal('SIGCONT');
    }
    assert.equal(events.dropped.length, 1);
    const d = events.dropped[0]!;
    assert.equal(d.reason, 'timeout');
    assert.equal(d.status, 504);
    assert.equal(d.error!.timeout, true);
    assert.equal(d.error!.endpoint, stopped.clientUrl);
    assert.deepEqual(events.retried, [], 'a write that may have reached etcd is not sent elsewhere');
  });

  it('clientAborted: the client left a watch; the endpoint it was on and how long it lasted', async () => {
    const { url, handler, events } = await embed([m.clientUrl]);
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(`${url}/v2/keys/ev/nothing?wait=true`, { agent: false });
      req.on('response', () => setTimeout(() => {
        req.destroy();
        resolve();
      }, 50));
      req.on('error', (err) => (err.message.includes('socket hang up') ? undefined : reject(err)));
      req.end();
    });
    await eventually(() => events.aborted.length === 1 && handler.inFlight === 0, 5000, 'clientAborted and the upstream watch aborted');
    const a = events.aborted[0]!;
    assert.equal(a.method, 'GET');
    assert.equal(a.url, '/v2/keys/ev/nothing?wait=true');
    assert.equal(a.endpoint, m.clientUrl);
    assert.ok(a.durationMs >= 50 && a.durationMs < 5000, String(a.durationMs));
    assert.deepEqual(events.dropped, [], 'a client leaving is not a drop');
  });
});
