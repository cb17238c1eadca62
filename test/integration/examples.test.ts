/**
 * The embedding examples (examples/raw-http.ts, express.ts, koa.ts), each run
 * as its own process the way the README tells users to run it, against a
 * real etcd member: parse the address it prints, do a v2 set/get through it,
 * then stop it by PID with SIGTERM and expect a clean exit.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { V3_REFUSAL_MESSAGE } from '../../src/index.js';
import { cleanup, etcdctlV3, eventually, form, http, member, onCleanup, skipWithoutEtcd, watcherCount } from './harness.js';
import type { LocalEtcd, RawResponse } from './harness.js';

const example = (name: string): string => fileURLToPath(new URL(`../../examples/${name}`, import.meta.url));

interface Example {
  pid: number;
  /** The URL from its `listening on ...` line. */
  url: string;
  stdout(): string;
  stderr(): string;
  /** Sends SIGTERM to its PID and resolves with its exit code, failing after `timeoutMs`. */
  stop(timeoutMs?: number): Promise<number | null>;
}

/** Starts `node --import tsx examples/<file> ...args` and waits (20 s at most) for its `listening on` line. */
async function startExample(file: string, args: string[], env: Record<string, string> = {}): Promise<Example> {
  const child = spawn(process.execPath, ['--import', 'tsx', example(file), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const pid = child.pid!;
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  onCleanup(() => {
    if (running()) process.kill(pid, 'SIGKILL');
  });
  const deadline = Date.now() + 20000;
  let match: RegExpExecArray | null = null;
  while ((match = /^listening on (http:\/\/\S+)$/m.exec(out)) === null) {
    if (!running()) throw new Error(`${file} exited with ${child.exitCode} before listening:\n${out}${err}`);
    if (Date.now() > deadline) throw new Error(`${file} printed no "listening on" line within 20 s:\n${out}${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    pid,
    url: match[1]!,
    stdout: () => out,
    stderr: () => err,
    async stop(timeoutMs = 5000) {
      if (running()) process.kill(pid, 'SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${file} did not exit within ${timeoutMs} ms of SIGTERM:\n${err}`)), timeoutMs);
      });
      try {
        return await Promise.race([exited, late]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** Opens a `?wait=true` watch and resolves once its response headers arrived; the request stays open until the process closes it. */
function openWatch(url: string): Promise<{ ended: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: 10000 }, (res) => {
      const ended = new Promise<void>((done) => res.once('close', () => done()));
      res.resume();
      resolve({ ended });
    });
    req.on('timeout', () => req.destroy(new Error(`no watch headers within 10 s from ${url}`)));
    req.on('error', (e) => reject(e));
    // An error after the headers (the process closing the connection) is expected.
    req.end();
  });
}

/** v2 set then get through `base`; checks the value on the member itself too. */
async function setAndGet(base: string, m: LocalEtcd, key: string, value: string): Promise<{ set: RawResponse; get: RawResponse }> {
  type Answer = { action: string; node: { key: string; value: string } };
  const set = await http(`${base}/v2/keys/${key}`, { method: 'PUT', body: form({ value }) });
  assert.equal(set.status, 201, set.body);
  assert.equal((set.json() as Answer).action, 'set');
  const get = await http(`${base}/v2/keys/${key}`);
  assert.equal(get.status, 200, get.body);
  assert.equal((get.json() as Answer).node.key, `/${key}`);
  assert.equal((get.json() as Answer).node.value, value);
  assert.ok(get.headers['x-etcd-index'], 'etcd headers reach the client');
  // The write reached etcd under the key asked for (no prefix left on the path).
  const direct = await http(`${m.clientUrl}/v2/keys/${key}`);
  assert.equal((direct.json() as Answer).node.value, value);
  return { set, get };
}

/** How many times the response carries the header `name`. */
const headerCount = (res: RawResponse, name: string): number =>
  res.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === name).length;

describe('the embedding examples, each its own process, against a real etcd member', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  let cluster: string;
  before(async () => {
    m = await member();
    cluster = `${m.name}=${m.peerUrl}`;
  });
  after(cleanup);

  test('examples/raw-http.ts: v2 set/get, the v3 refusal on its listener, an open watch does not hold up SIGTERM', async () => {
    const ex = await startExample('raw-http.ts', ['--listen', 'http://127.0.0.1:0', '--initial-cluster', cluster]);
    assert.match(ex.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(ex.stdout(), `listening on ${ex.url}\n`, 'one line on stdout');
    await setAndGet(ex.url, m, 'raw-http', 'one');
    // refuseV3Clients is on its server: etcdctl v3 is told why at once instead of timing out.
    const v3 = await etcdctlV3(ex.url, ['get', 'raw-http']);
    assert.notEqual(v3.code, 0);
    assert.ok(v3.ms < 2000, `took ${v3.ms} ms`);
    assert.match(v3.stderr, /code = Unimplemented/);
    assert.ok(v3.stderr.includes(V3_REFUSAL_MESSAGE), v3.stderr);

    const watchersBefore = await watcherCount(m.clientUrl);
    const watch = await openWatch(`${ex.url}/v2/keys/raw-http?wait=true`);
    await eventually(async () => (await watcherCount(m.clientUrl)) === watchersBefore + 1, 5000, 'the watch to reach etcd');
    assert.equal(await ex.stop(), 0, ex.stderr());
    await watch.ended;
    await eventually(async () => (await watcherCount(m.clientUrl)) === watchersBefore, 5000, 'etcd to drop the watcher');
  });

  test('examples/express.ts: the proxy under /etcd with the prefix stripped, the app route still answers', async () => {
    const ex = await startExample('express.ts', ['--listen=http://127.0.0.1:0', `--initial-cluster=${cluster}`]);
    await setAndGet(`${ex.url}/etcd`, m, 'express', 'two');
    const proxyConfig = await http(`${ex.url}/etcd/v2/config/local/proxy`);
    assert.deepEqual(proxyConfig.json(), { endpoints: [m.clientUrl] });

    const health = await http(`${ex.url}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(health.json(), { ok: true, etcdEndpoints: [m.clientUrl] });
    // Outside the mount path, the app answers, not etcd: the proxy is only under /etcd.
    const outside = await http(`${ex.url}/v2/keys/express`);
    assert.equal(outside.status, 404);
    assert.equal(outside.headers['x-etcd-index'], undefined);

    const watch = await openWatch(`${ex.url}/etcd/v2/keys/express?wait=true`);
    assert.equal(await ex.stop(), 0, ex.stderr());
    await watch.ended;
  });

  test('examples/koa.ts (settings from the environment): v2 set/get, the header from the Koa middleware before it, its access log', async () => {
    const ex = await startExample('koa.ts', [], { LISTEN_URL: 'http://127.0.0.1:0', ETCD_INITIAL_CLUSTER: cluster });
    const { set, get } = await setAndGet(ex.url, m, 'koa', 'three');
    for (const res of [set, get]) {
      assert.equal(res.headers['x-proxied-by'], 'koa-example');
      // Koa's header and etcd's are merged, each once.
      assert.equal(headerCount(res, 'x-proxied-by'), 1);
      assert.equal(headerCount(res, 'access-control-allow-origin'), 1);
    }
    // The middleware before the proxy sees the end of each proxied request with its real status.
    await eventually(() => /^PUT \/v2\/keys\/koa 201 \d+ms$/m.test(ex.stderr()) && /^GET \/v2\/keys\/koa 200 \d+ms$/m.test(ex.stderr()), 5000, 'the access log lines');

    const watch = await openWatch(`${ex.url}/v2/keys/koa?wait=true`);
    assert.equal(await ex.stop(), 0, ex.stderr());
    await watch.ended;
  });

  test('a bad argument: one line naming it, exit 2', async () => {
    for (const file of ['raw-http.ts', 'express.ts', 'koa.ts']) {
      const { code, stderr } = await spawnAndWait(file, ['--listen', 'http://127.0.0.1:0', '--nope']);
      assert.equal(code, 2, `${file}: ${stderr}`);
      assert.match(stderr, /^unknown argument "--nope"/);
      assert.equal(stderr.trimEnd().split('\n').length, 1, stderr);
    }
  });
});

/** Runs an example to its exit (15 s bound) and resolves with its exit code and stderr. */
function spawnAndWait(file: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', example(file), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const pid = child.pid!;
  onCleanup(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
  });
  let err = '';
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${file} did not exit within 15 s`)), 15000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr: err });
    });
  });
}
