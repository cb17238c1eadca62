/**
 * The persisted peer list `<dataDir>/proxy/cluster` against real etcd: its
 * exact format and permissions, restarts that use it instead of
 * initialCluster, compatibility both ways with the file `etcd --proxy on`
 * itself writes, refusal of corrupt files and of a member's data dir, and
 * the file following the cluster's real peer URLs.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, stat, utimes, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ClusterFileError, MemberDataDirError } from '../../src/index.js';
import {
  cleanup,
  eventually,
  etcdctl,
  form,
  freePort,
  http,
  member,
  onCleanup,
  proxy,
  skipWithoutEtcd,
  spawnProcess,
  tempDir,
} from './harness.js';
import type { LocalEtcd } from './harness.js';

function clusterFileOf(dataDir: string): string {
  return join(resolve(dataDir), 'proxy', 'cluster');
}

/** Sets a key through `url` and reads it back through `url`; returns the value read. */
async function setAndGet(url: string, key: string, value: string): Promise<string> {
  const put = await http(`${url}/v2/keys/${key}`, { method: 'PUT', body: form({ value }) });
  assert.equal(put.status, 201, `PUT through ${url}: ${put.status} ${put.body}`);
  // quorum=true: with more than one member, a plain GET may reach a follower that has not applied the PUT yet.
  const got = await http(`${url}/v2/keys/${key}?quorum=true`);
  assert.equal(got.status, 200, `GET through ${url}: ${got.status} ${got.body}`);
  return (got.json() as { node: { value: string } }).node.value;
}

/**
 * etcd's own Go proxy (`etcd --proxy on`) on a free 127.0.0.1 port. It is
 * stopped by its PID (SIGTERM, SIGKILL after 5 s), and only it.
 */
async function startGoProxy(dataDir: string, initialCluster: string): Promise<{ url: string; log(): string; stop(): Promise<void> }> {
  const url = `http://127.0.0.1:${await freePort()}`;
  const { log, stop } = spawnProcess('etcd', ['--proxy', 'on', '--listen-client-urls', url, '--initial-cluster', initialCluster, '--data-dir', dataDir]);
  onCleanup(stop);
  return { url, log, stop };
}

describe('cluster file <dataDir>/proxy/cluster', { skip: skipWithoutEtcd }, () => {
  after(cleanup);
  let m: LocalEtcd;
  let initialCluster: string;
  let expectedFile: string;

  before(async () => {
    m = await member();
    initialCluster = `${m.name}=${m.peerUrl}`;
    expectedFile = `{"PeerURLs":["http://127.0.0.1:${m.peerPort}"]}`;
  });

  it("is written at start in etcd's format, 0700 dir and 0600 file, with no temp file left", async () => {
    const dataDir = join(await tempDir(), 'data'); // does not exist yet
    const p = await proxy({ initialCluster, dataDir });
    const path = clusterFileOf(dataDir);
    assert.equal(p.clusterFile, path);
    assert.equal(p.peerUrlsSource, 'initial-cluster');
    assert.equal(await readFile(path, 'utf8'), expectedFile);
    assert.equal((await stat(join(dataDir, 'proxy'))).mode & 0o777, 0o700);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(join(dataDir, 'proxy')), ['cluster']);
    assert.deepEqual(await readdir(dataDir), ['proxy']);
  });

  it('on restart the file wins over a different, bogus initialCluster', async () => {
    const dataDir = await tempDir();
    const first = await proxy({ initialCluster, dataDir });
    await first.close();
    const bogus = `other=http://127.0.0.1:${await freePort()}`;
    const second = await proxy({ initialCluster: bogus, dataDir });
    assert.equal(second.peerUrlsSource, 'cluster-file');
    assert.deepEqual(second.resolver.peerUrls, [m.peerUrl]);
    assert.equal(await setAndGet(second.url, 'cf-restart', 'v1'), 'v1');
    // It is the real member that holds the key.
    const direct = await http(`${m.clientUrl}/v2/keys/cf-restart`);
    assert.equal((direct.json() as { node: { value: string } }).node.value, 'v1');
    assert.equal(await readFile(clusterFileOf(dataDir), 'utf8'), expectedFile);
  });

  it('reads the file written by the real `etcd --proxy on` (no initialCluster given)', async () => {
    const goDir = await tempDir();
    const go = await startGoProxy(goDir, initialCluster);
    const path = clusterFileOf(goDir);
    await eventually(() => existsSync(path), 15000, `etcd --proxy on to write ${path}\n${go.log()}`);
    await go.stop();
    // etcd's bytes are exactly what this library writes.
    assert.equal(await readFile(path, 'utf8'), expectedFile);

    const p = await proxy({ dataDir: goDir });
    assert.equal(p.peerUrlsSource, 'cluster-file');
    assert.equal(await setAndGet(p.url, 'cf-from-go', 'go'), 'go');
  });

  it('writes a data dir that the real `etcd --proxy on` accepts (with a bogus --initial-cluster)', async () => {
    const dataDir = await tempDir();
    const ours = await proxy({ initialCluster, dataDir });
    await ours.close();
    const put = await http(`${m.clientUrl}/v2/keys/cf-to-go`, { method: 'PUT', body: form({ value: 'ours' }) });
    assert.equal(put.status, 201);

    const go = await startGoProxy(dataDir, `other=http://127.0.0.1:${await freePort()}`);
    let last = '';
    await eventually(
      async () => {
        try {
          const res = await http(`${go.url}/v2/keys/cf-to-go`, { timeout: 2000 });
          last = `${res.status} ${res.body}`;
          return res.status === 200 && (res.json() as { node: { value: string } }).node.value === 'ours';
        } catch (err) {
          last = (err as Error).message;
          return false;
        }
      },
      15000,
      `a GET through etcd --proxy on to answer 200 (last: ${last})`,
    ).catch((err: Error) => assert.fail(`${err.message}; last answer: ${last}\n${go.log()}`));
    await go.stop();
  });

  describe('a corrupt cluster file is refused and left as it is', () => {
    const corrupt: Array<{ label: string; content: string; problem: RegExp }> = [
      { label: 'truncated JSON', content: '{"PeerURLs":["http://127.0.0.1:2380"', problem: /is not valid JSON/ },
      { label: 'not JSON at all', content: 'http://127.0.0.1:2380\n', problem: /is not valid JSON/ },
      { label: 'an empty PeerURLs', content: '{"PeerURLs":[]}', problem: /expected \{"PeerURLs":\["http:\/\/host:port", \.\.\.\]\}/ },
      { label: 'another shape', content: '{"peers":["x"]}', problem: /expected \{"PeerURLs":/ },
      { label: 'JSON null', content: 'null', problem: /expected \{"PeerURLs":/ },
      { label: 'PeerURLs not an array', content: '{"PeerURLs":"http://127.0.0.1:2380"}', problem: /expected \{"PeerURLs":/ },
      {
        label: 'a PeerURL that is not a URL',
        content: '{"PeerURLs":["http://127.0.0.1:2380","notaurl"]}',
        problem: /PeerURLs\[1\]: "notaurl" is not a URL/,
      },
    ];
    for (const c of corrupt) {
      for (const withInitialCluster of [true, false]) {
        it(`${c.label}${withInitialCluster ? ' (initialCluster given too)' : ''}`, async () => {
          const dataDir = await tempDir();
          const path = clusterFileOf(dataDir);
          await mkdir(join(dataDir, 'proxy'), { mode: 0o700 });
          await writeFile(path, c.content, { mode: 0o600 });
          const old = new Date('2001-02-03T04:05:06Z');
          await utimes(path, old, old);

          await assert.rejects(proxy({ dataDir, ...(withInitialCluster ? { initialCluster } : {}) }), (err: unknown) => {
            assert.ok(err instanceof ClusterFileError, `expected a ClusterFileError, got ${String(err)}`);
            assert.equal(err.code, 'ERR_ETCD_PROXY_CLUSTER_FILE');
            assert.equal(err.path, path);
            assert.ok(err.message.includes(path), err.message);
            assert.match(err.message, c.problem);
            return true;
          });
          assert.equal(await readFile(path, 'utf8'), c.content);
          assert.equal((await stat(path)).mtimeMs, old.getTime());
          assert.deepEqual(await readdir(join(dataDir, 'proxy')), ['cluster']);
        });
      }
    }

    it('a cluster "file" that cannot be read (a directory) is refused too', async () => {
      const dataDir = await tempDir();
      const path = clusterFileOf(dataDir);
      await mkdir(path, { recursive: true });
      await assert.rejects(proxy({ dataDir, initialCluster }), (err: unknown) => {
        assert.ok(err instanceof ClusterFileError, String(err));
        assert.ok(err.message.includes(path), err.message);
        assert.match(err.message, /cannot be read .*EISDIR/);
        return true;
      });
      assert.deepEqual(await readdir(join(dataDir, 'proxy')), ['cluster']);
    });
  });

  it("refuses an etcd member's data dir and writes nothing in it", async () => {
    const before = (await readdir(m.dataDir)).sort();
    assert.ok(before.includes('member'));
    for (const options of [{ initialCluster }, {}]) {
      await assert.rejects(proxy({ dataDir: m.dataDir, ...options }), (err: unknown) => {
        assert.ok(err instanceof MemberDataDirError, `expected a MemberDataDirError, got ${String(err)}`);
        assert.equal(err.code, 'ERR_ETCD_PROXY_MEMBER_DATA_DIR');
        assert.equal(err.dataDir, resolve(m.dataDir));
        assert.ok(err.message.includes(resolve(m.dataDir)), err.message);
        return true;
      });
    }
    assert.deepEqual((await readdir(m.dataDir)).sort(), before);
    assert.equal(existsSync(join(m.dataDir, 'proxy')), false);
    // The member is unharmed.
    assert.equal((await http(`${m.clientUrl}/health`)).status, 200);
  });

  it("rewrites a file listing a dead extra peer to the cluster's real peer URLs", async () => {
    const dataDir = await tempDir();
    const path = clusterFileOf(dataDir);
    const dead = `http://127.0.0.1:${await freePort()}`;
    await mkdir(join(dataDir, 'proxy'), { mode: 0o700 });
    // The dead peer first: it is asked first, refuses, and the real one answers.
    await writeFile(path, JSON.stringify({ PeerURLs: [dead, m.peerUrl] }), { mode: 0o600 });

    const p = await proxy({ dataDir });
    // createProxy resolves only once that first write is done (so its
    // clusterFileWritten event fires before anyone can listen; the event is
    // checked on a change at run time below).
    assert.equal(p.peerUrlsSource, 'cluster-file');
    assert.equal(await readFile(path, 'utf8'), expectedFile);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(join(dataDir, 'proxy')), ['cluster']);
    assert.deepEqual(p.resolver.peerUrls, [m.peerUrl]);
    assert.equal(await setAndGet(p.url, 'cf-dead-peer', 'x'), 'x');
  });

  it('follows a peer URL change made with `etcdctl member update` and emits clusterFileWritten', async () => {
    // A member of its own: its membership is changed.
    const m2 = await member();
    const dataDir = await tempDir();
    const path = clusterFileOf(dataDir);
    const p = await proxy({ initialCluster: `${m2.name}=${m2.peerUrl}`, dataDir, refreshInterval: 200 });
    assert.equal(await readFile(path, 'utf8'), `{"PeerURLs":["${m2.peerUrl}"]}`);
    const written = new Promise<[string, readonly string[]]>((done) => p.once('clusterFileWritten', (f, urls) => done([f, urls])));
    const errors: Error[] = [];
    p.on('clusterFileError', (err) => errors.push(err));

    const id = p.resolver.snapshot!.members[0]!.id;
    const extra = `http://localhost:${m2.peerPort}`;
    const update = await etcdctl(m2.clientUrl, ['member', 'update', id, `${m2.peerUrl},${extra}`]);
    assert.equal(update.code, 0, `etcdctl member update ${id}: ${update.stderr}${update.stdout}`);

    let timer: NodeJS.Timeout | undefined;
    const [file, urls] = await Promise.race([
      written,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('no clusterFileWritten within 5 s of the member update')), 5000);
      }),
    ]).finally(() => clearTimeout(timer));
    assert.equal(file, path);
    assert.deepEqual(urls, [m2.peerUrl, extra]);
    assert.equal(await readFile(path, 'utf8'), `{"PeerURLs":["${m2.peerUrl}","${extra}"]}`);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(join(dataDir, 'proxy')), ['cluster']);
    assert.deepEqual(errors, []);
    assert.equal(await setAndGet(p.url, 'cf-member-update', 'y'), 'y');
  });
});
