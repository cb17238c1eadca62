/**
 * createProxy(): how it refuses bad options, how it fails (bounded) when the
 * cluster cannot be reached or a listen port is taken, that close() and the
 * signal leave nothing running, and that a failed refresh keeps the last
 * known endpoints until the member is back. Real etcd members throughout.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import type { Server } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import {
  ClusterUnreachableError,
  InitialClusterError,
  InvalidOptionError,
  ListenError,
  createProxy,
} from '../../src/index.js';
import type { CreateProxyOptions } from '../../src/index.js';
import {
  cleanup,
  eventually,
  form,
  freePort,
  http,
  member,
  onCleanup,
  proxy,
  skipWithoutEtcd,
  tempDir,
  watcherCount,
} from './harness.js';
import type { LocalEtcd } from './harness.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const childScript = join(repoRoot, 'test', 'fixtures', 'proxy-lifecycle-child.ts');

/** Resolves `true` when a TCP connection to 127.0.0.1:port is refused, `false` when it is accepted. */
function refused(port: number): Promise<boolean> {
  return new Promise((done, fail) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      done(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNREFUSED' ? done(true) : fail(err)));
  });
}

/** A TCP server of the test's own holding a port, closed by cleanup(). */
async function holdPort(): Promise<{ port: number; server: Server }> {
  const server = createServer((s) => s.destroy());
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  onCleanup(() => new Promise<void>((done) => server.close(() => done())));
  return { port: (server.address() as { port: number }).port, server };
}

/** Rejects after `ms` with `what`; for racing promises that must settle in time. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

type ChildLine = Record<string, unknown> & { event: string };

/**
 * test/fixtures/proxy-lifecycle-child.ts in its own node process. Killed by
 * its PID (SIGKILL) at cleanup if it is still running.
 */
function runChild(scenario: string, args: Record<string, unknown>) {
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, ['--import', 'tsx', childScript, scenario, JSON.stringify(args)], {
    cwd: repoRoot,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let output = '';
  let pending = '';
  const lines: ChildLine[] = [];
  child.stdout.on('data', (b: Buffer) => {
    output += b.toString();
    pending += b.toString();
    let nl: number;
    while ((nl = pending.indexOf('\n')) !== -1) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      try {
        lines.push(JSON.parse(line) as ChildLine);
      } catch {
        // not one of the fixture's lines
      }
    }
  });
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((done) =>
    child.once('exit', (code, signal) => done({ code, signal, at: Date.now() })),
  );
  onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      process.kill(child.pid, 'SIGKILL');
      await exit;
    }
  });
  return {
    child,
    exit,
    output: () => output,
    async next(event: string, timeoutMs: number): Promise<ChildLine> {
      let found: ChildLine | undefined;
      await eventually(
        () => (found = lines.find((l) => l.event === event)) !== undefined || child.exitCode !== null,
        timeoutMs,
        `the child to print "${event}"`,
      ).catch((err: Error) => assert.fail(`${err.message}\n${output}`));
      assert.ok(found, `the child exited without printing "${event}"\n${output}`);
      return found;
    },
    /** Waits until the child exits by itself, `ms` at most, and asserts it exited 0. */
    async exitsCleanly(ms: number): Promise<number> {
      const from = Date.now();
      const result = await within(exit, ms, 'the child exiting by itself').catch((err: Error) => assert.fail(`${err.message}\n${output}`));
      assert.equal(result.signal, null, output);
      assert.equal(result.code, 0, output);
      return result.at - from;
    },
  };
}

describe('createProxy refuses bad options before touching the network', { skip: skipWithoutEtcd }, () => {
  after(cleanup);
  const base: CreateProxyOptions = { listenClientUrls: ['http://127.0.0.1:0'], initialCluster: 'a=http://127.0.0.1:1' };

  const badClusters: Array<{ value: string; part: string; problem: string }> = [
    { value: 'noequals', part: 'noequals', problem: 'no "="' },
    { value: 'a=notaurl', part: 'a=notaurl', problem: '"notaurl" is not a URL' },
    { value: 'a=ftp://x:1', part: 'a=ftp://x:1', problem: 'must use http:// or https://' },
    { value: 'a=http://127.0.0.1', part: 'a=http://127.0.0.1', problem: 'must give a port (host:port)' },
    { value: 'a=http://127.0.0.1:2380,b=http://127.0.0.1', part: 'b=http://127.0.0.1', problem: 'must give a port' },
    { value: '', part: '', problem: 'it is empty' },
  ];
  for (const c of badClusters) {
    it(`initialCluster ${JSON.stringify(c.value)} → InitialClusterError naming ${JSON.stringify(c.part)}`, async () => {
      await assert.rejects(createProxy({ ...base, initialCluster: c.value }), (err: unknown) => {
        assert.ok(err instanceof InitialClusterError, `expected an InitialClusterError, got ${String(err)}`);
        assert.equal(err.part, c.part);
        if (c.part !== '') assert.ok(err.message.includes(`"${c.part}"`), err.message);
        assert.ok(err.message.includes(c.problem), err.message);
        return true;
      });
    });
  }

  it('a malformed initialCluster is refused even when a cluster file would be used instead', async () => {
    const dataDir = await tempDir();
    await mkdir(join(dataDir, 'proxy'));
    await writeFile(join(dataDir, 'proxy', 'cluster'), '{"PeerURLs":["http://127.0.0.1:1"]}');
    await assert.rejects(createProxy({ ...base, dataDir, initialCluster: 'a=notaurl' }), InitialClusterError);
  });

  const badListen: Array<{ urls: unknown; option: string; problem: string }> = [
    { urls: ['notaurl'], option: 'listenClientUrls[0]', problem: '"notaurl" is not a URL' },
    { urls: ['http://127.0.0.1:0', 'https://127.0.0.1:2379'], option: 'certFile', problem: 'an https:// listen URL needs certFile and keyFile' },
    { urls: ['http://127.0.0.1'], option: 'listenClientUrls[0]', problem: 'must give a port' },
    { urls: ['unix:///tmp/etcd.sock'], option: 'listenClientUrls[0]', problem: 'must use http://' },
    { urls: ['http://127.0.0.1:2379/v2'], option: 'listenClientUrls[0]', problem: 'must not have a path or query' },
    { urls: [], option: 'listenClientUrls', problem: 'expected a non-empty array' },
    { urls: 'http://127.0.0.1:2379', option: 'listenClientUrls', problem: 'expected a non-empty array' },
  ];
  for (const c of badListen) {
    it(`listenClientUrls ${JSON.stringify(c.urls)} → InvalidOptionError naming ${c.option}`, async () => {
      await assert.rejects(createProxy({ ...base, listenClientUrls: c.urls as string[] }), (err: unknown) => {
        assert.ok(err instanceof InvalidOptionError, `expected an InvalidOptionError, got ${String(err)}`);
        assert.equal(err.option, c.option);
        assert.ok(err.message.startsWith(`invalid option ${c.option}: `), err.message);
        assert.ok(err.message.includes(c.problem), err.message);
        return true;
      });
    });
  }

  const badValues: Array<{ options: Partial<Record<keyof CreateProxyOptions, unknown>>; option: string; message: string }> = [
    { options: { failureWait: -1 }, option: 'failureWait', message: 'expected a whole number of milliseconds >= 0, got -1' },
    { options: { dialTimeout: 1.5 }, option: 'dialTimeout', message: 'expected a whole number of milliseconds >= 1, got 1.5' },
    { options: { dialTimeout: 0 }, option: 'dialTimeout', message: 'expected a whole number of milliseconds >= 1, got 0' },
    { options: { writeTimeout: '5000' }, option: 'writeTimeout', message: 'expected a whole number of milliseconds >= 0, got "5000"' },
    { options: { readTimeout: -5 }, option: 'readTimeout', message: 'expected a whole number of milliseconds >= 0, got -5' },
    { options: { refreshInterval: 0 }, option: 'refreshInterval', message: 'expected a whole number of milliseconds >= 1, got 0' },
    { options: { startTimeout: Number.POSITIVE_INFINITY }, option: 'startTimeout', message: 'expected a whole number of milliseconds >= 1, got Infinity' },
    { options: { maxBodyBytes: 0 }, option: 'maxBodyBytes', message: 'expected a positive whole number, got 0' },
    { options: { pipelineReads: 65 }, option: 'pipelineReads', message: 'expected a whole number from 1 to 64, got 65' },
    { options: { mode: 'on' }, option: 'mode', message: 'expected "readwrite" or "readonly", got "on"' },
    { options: { dataDir: '' }, option: 'dataDir', message: 'expected a directory path, got ""' },
    { options: { signal: 'stop' }, option: 'signal', message: 'expected an AbortSignal, got "stop"' },
  ];
  for (const c of badValues) {
    it(`${c.option}: ${c.message}`, async () => {
      await assert.rejects(createProxy({ ...base, ...c.options } as CreateProxyOptions), (err: unknown) => {
        assert.ok(err instanceof InvalidOptionError, `expected an InvalidOptionError, got ${String(err)}`);
        assert.equal(err.option, c.option);
        assert.equal(err.message, `invalid option ${c.option}: ${c.message}`);
        return true;
      });
    });
  }

  it('options that are not an object are refused', async () => {
    await assert.rejects(createProxy(null as unknown as CreateProxyOptions), {
      name: 'InvalidOptionError',
      message: 'invalid option options: expected an object, got null',
    });
  });

  it('without initialCluster nor a cluster file: initialCluster is required', async () => {
    await assert.rejects(createProxy({ listenClientUrls: ['http://127.0.0.1:0'] }), (err: unknown) => {
      assert.ok(err instanceof InvalidOptionError, String(err));
      assert.equal(err.option, 'initialCluster');
      assert.equal(err.message, 'invalid option initialCluster: required: name=peerURL[,name=peerURL...]');
      return true;
    });
    const dataDir = await tempDir();
    await assert.rejects(createProxy({ listenClientUrls: ['http://127.0.0.1:0'], dataDir }), (err: unknown) => {
      assert.ok(err instanceof InvalidOptionError, String(err));
      assert.equal(err.option, 'initialCluster');
      assert.match(err.message, /^invalid option initialCluster: required: /);
      assert.ok(err.message.includes(join(dataDir, 'proxy', 'cluster')), err.message);
      assert.ok(err.message.includes('does not exist yet'), err.message);
      return true;
    });
    assert.deepEqual(await readdir(dataDir), [], 'nothing was written in the data dir');
  });
});

describe('createProxy against real etcd: failures, close() and refresh', { skip: skipWithoutEtcd }, () => {
  after(cleanup);
  let m: LocalEtcd;
  let initialCluster: string;

  before(async () => {
    m = await member();
    initialCluster = `${m.name}=${m.peerUrl}`;
  });

  it('a peer that accepts connections but never answers (SIGSTOPped member) → ClusterUnreachableError within startTimeout', async () => {
    const t0 = Date.now();
    m.signal('SIGSTOP');
    try {
      await assert.rejects(proxy({ initialCluster, startTimeout: 2000, dialTimeout: 500 }), (err: unknown) => {
        assert.ok(err instanceof ClusterUnreachableError, `expected a ClusterUnreachableError, got ${String(err)}`);
        assert.equal(err.code, 'ERR_ETCD_PROXY_CLUSTER_UNREACHABLE');
        assert.deepEqual(err.peerUrls, [m.peerUrl]);
        assert.ok(err.message.includes(m.peerUrl), err.message);
        assert.ok(err.message.includes('within 2000 ms (startTimeout)'), err.message);
        return true;
      });
    } finally {
      m.signal('SIGCONT');
    }
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 1800 && elapsed < 4000, `rejected after ${elapsed} ms for a 2000 ms startTimeout`);
    await eventually(async () => (await http(`${m.clientUrl}/health`, { timeout: 1000 }).catch(() => undefined))?.status === 200, 10000, 'the member to be healthy after SIGCONT');
  });

  it('a peer port where nothing listens → ClusterUnreachableError saying ECONNREFUSED, within startTimeout', async () => {
    const port = await freePort();
    const listenPort = await freePort();
    const t0 = Date.now();
    const options = { listenClientUrls: [`http://127.0.0.1:${listenPort}`], initialCluster: `gone=http://127.0.0.1:${port}`, startTimeout: 1500 };
    await assert.rejects(proxy(options), (err: unknown) => {
      assert.ok(err instanceof ClusterUnreachableError, `expected a ClusterUnreachableError, got ${String(err)}`);
      assert.deepEqual(err.peerUrls, [`http://127.0.0.1:${port}`]);
      assert.match(err.message, /within 1500 ms \(startTimeout\); last error: .*ECONNREFUSED/);
      return true;
    });
    const elapsed = Date.now() - t0;
    assert.ok(elapsed < 3500, `rejected after ${elapsed} ms for a 1500 ms startTimeout`);
    assert.equal(await refused(listenPort), true, 'the listen port is released after a failed start');
  });

  it('a failed start leaves nothing holding the process (child process exits by itself)', async () => {
    const run = runChild('unreachable', { initialCluster: `gone=http://127.0.0.1:${await freePort()}` });
    const rejected = await run.next('rejected', 15000);
    assert.equal(rejected.name, 'ClusterUnreachableError');
    await run.exitsCleanly(5000);
  });

  it('a listen URL whose port is taken → ListenError naming the URL; the listeners already bound are closed', async () => {
    const { port: taken } = await holdPort();
    const free = await freePort();
    const takenUrl = `http://127.0.0.1:${taken}`;
    await assert.rejects(
      proxy({ listenClientUrls: [`http://127.0.0.1:${free}`, takenUrl], initialCluster, refreshInterval: 200 }),
      (err: unknown) => {
        assert.ok(err instanceof ListenError, `expected a ListenError, got ${String(err)}`);
        assert.equal(err.code, 'ERR_ETCD_PROXY_LISTEN');
        assert.equal(err.url, takenUrl);
        assert.ok(err.message.includes(takenUrl), err.message);
        assert.ok(err.message.includes('EADDRINUSE'), err.message);
        return true;
      },
    );
    assert.equal(await refused(free), true, `the first listen URL (port ${free}) still accepts connections`);
  });

  it('a listen failure leaves nothing running (child process exits by itself)', async () => {
    const { port: taken } = await holdPort();
    const run = runChild('listen-taken', {
      initialCluster,
      listenClientUrls: ['http://127.0.0.1:0', `http://127.0.0.1:${taken}`],
    });
    const rejected = await run.next('rejected', 15000);
    assert.equal(rejected.name, 'ListenError');
    assert.ok(String(rejected.message).includes(`http://127.0.0.1:${taken}`), String(rejected.message));
    await run.exitsCleanly(5000);
  });

  it('nothing outlives close(): a process with a proxy, requests and an open watch exits by itself', async () => {
    const watchersBefore = await watcherCount(m.clientUrl);
    const dataDir = await tempDir();
    const run = runChild('serve-and-close', { initialCluster, dataDir });
    const watching = await run.next('watching', 20000);
    assert.equal(watching.status, 200, 'the watch through the proxy got its headers');
    assert.equal(watching.put, 201);
    assert.equal(watching.get, 200);
    assert.equal(watching.config, JSON.stringify({ endpoints: [m.clientUrl] }));
    await eventually(async () => (await watcherCount(m.clientUrl)) === watchersBefore + 1, 5000, 'the watch to reach the member');

    run.child.stdin.end(); // tells the child to close the proxy
    const closed = await run.next('closed', 5000);
    // The child's shutdownTimeout is 300 ms: the watch gets that long, then is cut.
    assert.ok((closed.closeMs as number) < 1500, `close() took ${String(closed.closeMs)} ms with a watch open`);
    assert.match(String(closed.watch), /error/, 'the open watch was cut by close()');
    assert.equal(closed.listening, false);
    const exitMs = await run.exitsCleanly(5000);
    assert.ok(exitMs < 5000);
    await eventually(async () => (await watcherCount(m.clientUrl)) === watchersBefore, 5000, "the member's watcher count to come back");
    assert.equal(await readFile(join(dataDir, 'proxy', 'cluster'), 'utf8'), JSON.stringify({ PeerURLs: [m.peerUrl] }));
  });

  it("nothing outlives close() with backend 'v3' (gRPC channels, the shared watch stream, the auth watch): the process exits by itself", async () => {
    const v3only = await member({ enableV2: false });
    const run = runChild('serve-and-close', { initialCluster: `${v3only.name}=${v3only.peerUrl}`, dataDir: await tempDir(), backend: 'v3' });
    const watching = await run.next('watching', 20000);
    assert.equal(watching.status, 200, 'the watch through the proxy got its headers');
    assert.equal(watching.put, 201);
    assert.equal(watching.get, 200);
    run.child.stdin.end();
    const closed = await run.next('closed', 5000);
    assert.ok((closed.closeMs as number) < 1500, `close() took ${String(closed.closeMs)} ms with a watch open`);
    assert.notEqual(closed.watch, 'none', 'the open watch was ended by close()');
    assert.equal(closed.listening, false);
    await run.exitsCleanly(5000);
  });

  it('after close() the proxy stops refreshing the members and stops listening; close() is idempotent', async () => {
    const p = await proxy({ initialCluster, refreshInterval: 100 });
    const first = p.resolver.lastRefresh!.getTime();
    await eventually(() => p.resolver.lastRefresh!.getTime() > first, 3000, 'a periodic refresh');
    await p.close();
    const last = p.resolver.lastRefresh!.getTime();
    await sleep(400);
    assert.equal(p.resolver.lastRefresh!.getTime(), last, 'no refresh after close()');
    assert.equal(await refused(p.addresses[0]!.port), true);
    assert.ok(p.servers.every((s) => !s.listening));
    await p.close();
  });

  it('close() is not held up by connections that sent nothing (a TCP port probe that left, an idle client)', async () => {
    const p = await proxy({ initialCluster, shutdownTimeout: 200 });
    const port = p.addresses[0]!.port;
    const probe = connect(port, '127.0.0.1'); // what a TCP health check does: connect, then leave
    await once(probe, 'connect');
    probe.destroy();
    const idle = connect(port, '127.0.0.1');
    idle.on('error', () => {});
    await once(idle, 'connect');
    const idleClosed = once(idle, 'close');
    await sleep(100);
    const t0 = Date.now();
    await within(p.close(), 3000, 'close()');
    assert.ok(Date.now() - t0 < 1500, `close() took ${Date.now() - t0} ms`);
    await within(idleClosed, 1000, 'the idle client connection to be closed');
  });

  it('aborting the signal closes the proxy: the listen port stops accepting connections and open watches end', async () => {
    const ac = new AbortController();
    const p = await proxy({ initialCluster, signal: ac.signal, shutdownTimeout: 200 });
    const put = await http(`${p.url}/v2/keys/signal-key`, { method: 'PUT', body: form({ value: 'v' }) });
    assert.equal(put.status, 201);
    const watch = http(`${p.url}/v2/keys/signal-key?wait=true&waitIndex=1000000`, { timeout: 20000 }).then(
      (res) => `answered ${res.status}`,
      (err: Error) => `failed: ${err.message}`,
    );
    await sleep(200);
    assert.equal(await refused(p.addresses[0]!.port), false);
    ac.abort();
    await eventually(() => refused(p.addresses[0]!.port), 3000, 'the listen port to refuse connections after abort()');
    const outcome = await within(watch, 3000, 'the open watch to end after abort()');
    assert.match(outcome, /^failed: /, 'the open watch was cut');
  });

  it('an already aborted signal makes createProxy reject without listening', async () => {
    const port = await freePort();
    await assert.rejects(
      createProxy({ listenClientUrls: [`http://127.0.0.1:${port}`], initialCluster, signal: AbortSignal.abort() }),
      { name: 'AbortError' },
    );
    assert.equal(await refused(port), true);
  });

  it('a failed refresh keeps the last known endpoints; requests work again once the member is back', async () => {
    // A member of its own, with a data dir of the test's (kept across the restart).
    const dataDir = join(await tempDir(), 'member');
    const m3 = await member({ dataDir });
    const p = await proxy({ initialCluster: `${m3.name}=${m3.peerUrl}`, refreshInterval: 200 });
    const errors: ClusterUnreachableError[] = [];
    p.resolver.on('error', (err) => errors.push(err));
    const put = await http(`${p.url}/v2/keys/refresh-key`, { method: 'PUT', body: form({ value: 'kept' }) });
    assert.equal(put.status, 201);

    await m3.stop();
    await sleep(700); // more than 2 refresh intervals
    assert.deepEqual(
      p.balancer.endpoints.map((e) => e.url),
      [m3.clientUrl],
      'the endpoint is kept while the member is away',
    );
    assert.equal(p.resolver.stale, true);
    assert.ok(errors.length >= 1, 'the resolver emitted an error');
    assert.ok(errors[0] instanceof ClusterUnreachableError);
    assert.deepEqual(errors[0].peerUrls, [m3.peerUrl]);
    const down = await http(`${p.url}/v2/keys/refresh-key`);
    assert.equal(down.status, 502, `while the member is down: ${down.status} ${down.body}`);

    const back = await member({ name: m3.name, clientPort: m3.clientPort, peerPort: m3.peerPort, dataDir });
    assert.ok(existsSync(join(dataDir, 'member')));
    const got = await http(`${p.url}/v2/keys/refresh-key`);
    assert.equal(got.status, 200, `once the member is back: ${got.status} ${got.body}`);
    assert.equal((got.json() as { node: { value: string } }).node.value, 'kept');
    await eventually(() => !p.resolver.stale, 3000, 'a refresh to succeed again');
    assert.deepEqual(p.balancer.endpoints.map((e) => e.url), [back.clientUrl]);
  });
});
