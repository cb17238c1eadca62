/**
 * v2 watches (`?wait=true`, `?wait=true&stream=true`) through the proxy:
 * headers at once, events as they happen, and no upstream watcher left
 * behind when the client or the proxy goes away.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { cleanup, eventually, form, http, member, proxy, skipWithoutEtcd, tempDir, watcherCount } from './harness.js';
import type { LocalEtcd } from './harness.js';

interface WatchEvent {
  action: string;
  node: { key: string; value?: string; modifiedIndex: number };
}

/** A GET kept open, with what arrived so far and when. */
interface OpenWatch {
  readonly req: ClientRequest;
  readonly startedAt: number;
  /** Resolves with the response head (and when it came). */
  readonly response: Promise<{ res: IncomingMessage; at: number }>;
  /** Body text received so far. */
  text(): string;
  /** Resolves when the exchange is over: `end` (complete body), `error` or `close` (cut short). */
  readonly ended: Promise<{ how: 'end' | 'error' | 'close'; at: number; error?: Error }>;
}

/** Opens a long-lived GET (no agent, no timeout: the test bounds it with `eventually`). */
function openWatch(url: string): OpenWatch {
  const startedAt = Date.now();
  let body = '';
  let settle!: (v: { how: 'end' | 'error' | 'close'; at: number; error?: Error }) => void;
  const ended = new Promise<{ how: 'end' | 'error' | 'close'; at: number; error?: Error }>((r) => (settle = r));
  const req = httpRequest(url, { agent: false });
  const response = new Promise<{ res: IncomingMessage; at: number }>((resolve, reject) => {
    req.once('response', (res) => {
      const at = Date.now();
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.once('end', () => settle({ how: 'end', at: Date.now() }));
      res.once('error', (error) => settle({ how: 'error', at: Date.now(), error }));
      res.once('close', () => settle({ how: res.complete ? 'end' : 'close', at: Date.now() }));
      resolve({ res, at });
    });
    req.once('error', (error) => {
      settle({ how: 'error', at: Date.now(), error });
      reject(error);
    });
  });
  response.catch(() => undefined);
  req.end();
  return { req, startedAt, response, text: () => body, ended };
}

/** Within `ms`, or fails naming `what`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('watches through the proxy', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  let p: Awaited<ReturnType<typeof proxy>>;
  const opened: OpenWatch[] = [];

  before(async () => {
    m = await member();
    p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() });
  });
  after(async () => {
    for (const w of opened) w.req.destroy();
    await cleanup();
  });

  function watch(url: string): OpenWatch {
    const w = openWatch(url);
    opened.push(w);
    return w;
  }

  async function put(key: string, value: string): Promise<number> {
    const res = await http(`${m.clientUrl}/v2/keys/${key}`, { method: 'PUT', body: form({ value }) });
    assert.ok(res.status === 200 || res.status === 201, res.body);
    return (res.json() as WatchEvent).node.modifiedIndex;
  }

  it('?wait=true: the response head arrives at once, the event when it happens', async () => {
    const w = watch(`${p.url}/v2/keys/w1?wait=true`);
    const { res, at } = await within(w.response, 1000, 'the watch response head');
    assert.equal(res.statusCode, 200);
    assert.ok(at - w.startedAt < 1000, `head after ${at - w.startedAt} ms`);
    assert.match(String(res.headers['x-etcd-index']), /^\d+$/);
    assert.match(String(res.headers['x-etcd-cluster-id']), /^[0-9a-f]+$/);
    assert.equal(res.headers['content-type'], 'application/json');

    // Nothing has happened yet: no body, the exchange is still open.
    await sleep(1500 - (Date.now() - w.startedAt));
    assert.equal(w.text(), '');
    const writtenAt = Date.now();
    const index = await put('w1', 'hello');

    const end = await within(w.ended, 3000, 'the watch event');
    assert.equal(end.how, 'end');
    assert.ok(end.at >= writtenAt, 'the body ended before the event was written');
    const event = JSON.parse(w.text()) as WatchEvent;
    assert.equal(event.action, 'set');
    assert.equal(event.node.key, '/w1');
    assert.equal(event.node.value, 'hello');
    assert.equal(event.node.modifiedIndex, index);
    await eventually(() => p.handler.inFlight === 0, 2000, 'no upstream request in flight');
  });

  it('?wait=true&stream=true: each event arrives as it happens', async () => {
    const w = watch(`${p.url}/v2/keys/w2?wait=true&stream=true`);
    const { res } = await within(w.response, 1000, 'the stream response head');
    assert.equal(res.statusCode, 200);
    const events = (): WatchEvent[] =>
      w
        .text()
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as WatchEvent);

    const first = await put('w2', 'one');
    await eventually(() => events().length >= 1, 3000, 'the first streamed event (before the second write)');
    assert.deepEqual(
      events().map((e) => [e.action, e.node.value, e.node.modifiedIndex]),
      [['set', 'one', first]],
    );

    const second = await put('w2', 'two');
    await eventually(() => events().length >= 2, 3000, 'the second streamed event');
    assert.deepEqual(
      events().map((e) => [e.action, e.node.value, e.node.modifiedIndex]),
      [
        ['set', 'one', first],
        ['set', 'two', second],
      ],
    );
    // A stream stays open for more events.
    assert.equal(res.complete, false);
    assert.equal(p.handler.inFlight, 1);
    w.req.destroy();
    await eventually(() => p.handler.inFlight === 0, 3000, 'the stream to be released');
  });

  it('a client that disconnects leaves no watcher on etcd, and the member is not blamed', async () => {
    await eventually(() => p.handler.inFlight === 0, 3000, 'no request in flight before the test');
    const before = await watcherCount(m.clientUrl);
    const downs: string[] = [];
    p.balancer.on('endpointDown', (e) => downs.push(e.url));

    const w = watch(`${p.url}/v2/keys/w3?wait=true`);
    await within(w.response, 1000, 'the watch response head');
    await eventually(async () => (await watcherCount(m.clientUrl)) === before + 1, 3000, 'etcd to count the watcher');
    assert.equal(p.handler.inFlight, 1);

    w.req.destroy();
    await eventually(async () => (await watcherCount(m.clientUrl)) === before, 5000, 'etcd to drop the watcher');
    await eventually(() => p.handler.inFlight === 0, 3000, 'handler.inFlight back to 0');
    assert.deepEqual(downs, []);
    assert.deepEqual(
      p.balancer.available.map((e) => e.url),
      [m.clientUrl],
    );
    // The proxy still serves.
    const res = await http(`${p.url}/v2/keys/`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-etcd-cluster-id'] !== undefined, true);
  });

  it('proxy.close() with a watch open: the watch ends, etcd drops the watcher, close() resolves promptly', async () => {
    const p2 = await proxy({ initialCluster: `${m.name}=${m.peerUrl}` });
    const before = await watcherCount(m.clientUrl);
    const w = watch(`${p2.url}/v2/keys/w4?wait=true`);
    await within(w.response, 1000, 'the watch response head');
    await eventually(async () => (await watcherCount(m.clientUrl)) === before + 1, 3000, 'etcd to count the watcher');
    assert.equal(p2.handler.inFlight, 1);

    const closing = Date.now();
    await within(p2.close(), 5000, 'proxy.close()');
    assert.ok(Date.now() - closing < 3000, `close() took ${Date.now() - closing} ms`);
    assert.equal(p2.handler.inFlight, 0);

    const end = await within(w.ended, 3000, 'the client watch to end');
    assert.notEqual(end.how, 'end', 'a watch cut by close() must not look like a complete answer');
    assert.equal(w.text(), '');
    await eventually(async () => (await watcherCount(m.clientUrl)) === before, 5000, 'etcd to drop the watcher');

    // The listener is gone.
    await assert.rejects(http(`${p2.url}/v2/keys/w4`, { timeout: 2000 }), /ECONNREFUSED/);
  });
});
