/**
 * The article's walkthrough (shared/reference/etcd-proxy-article.txt) with
 * `ETCDCTL_API=2 etcdctl` through a proxy with `backend: 'v3'` in front of a
 * v3-only member (etcd 3.5/3.6's default: `/v2/keys` answers 404 there): set,
 * get, mk, mkdir, ls -r, update, rm -r, watch, set --ttl, member list and
 * cluster-health behave as against native v2, and the data lands in the v3
 * key space in the layout of etcd's `--experimental-enable-v2v3`.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { cleanup, etcdctl, eventually, http, member, onCleanup, proxy, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';
import type { ForwardedEvent } from '../../src/index.js';

/** `ETCDCTL_API=3 etcdctl get <key> --print-value-only` on the member itself; undefined when the key is absent. */
function v3Value(endpoint: string, key: string): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    execFile(
      'etcdctl',
      [`--endpoints=${endpoint}`, '--dial-timeout=3s', '--command-timeout=4s', 'get', key, '--print-value-only'],
      { env: { ...process.env, ETCDCTL_API: '3' }, timeout: 10000 },
      (err, stdout, stderr) => {
        if (err !== null) reject(new Error(`etcdctl v3 get ${key}: ${stderr}`));
        else resolve(stdout === '' ? undefined : stdout.replace(/\n$/, ''));
      },
    );
  });
}

/** A long-running `ETCDCTL_API=2 etcdctl ... watch ...`: its output so far, and its exit. */
function startWatch(endpoint: string, args: readonly string[]): { output(): string; exited: Promise<number | null>; pid: number } {
  const child = spawn('etcdctl', ['--endpoints', endpoint, ...args], { env: { ...process.env, ETCDCTL_API: '2' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  // 'close', not 'exit': the output is all read only once stdout and stderr have ended.
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const pid = child.pid!;
  onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(pid, 'SIGTERM');
      await exited;
    }
  });
  return { output: () => out, exited, pid };
}

const lines = (s: string): string[] => s.split('\n').filter((l) => l !== '');
/** Listed keys, without /synced (made by the etcdctl-defaults test, which may fail on its own). */
const listed = (s: string): string[] => lines(s).filter((l) => l !== '/synced').sort();

describe('walkthrough with etcdctl v2 through a v3-mode proxy on a v3-only member', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  let p: Awaited<ReturnType<typeof proxy>>;

  before(async () => {
    m = await member({ enableV2: false });
    const direct = await http(`${m.clientUrl}/v2/keys/`);
    assert.equal(direct.status, 404, 'the member must not serve v2 itself');
    p = await proxy({ backend: 'v3', initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() });
  });
  after(cleanup);

  /** etcdctl v2 through the proxy only (--no-sync: it does not switch to the members' own URLs). */
  const ctl = (...args: string[]): ReturnType<typeof etcdctl> => etcdctl(p.url, ['--no-sync', ...args]);

  it('set and get print the value; the value is in the v3 key space in the emulation layout', async () => {
    const set = await ctl('set', 'key1', 'xxxxx');
    assert.equal(set.code, 0, set.stderr);
    assert.equal(set.stdout, 'xxxxx\n');
    const get = await ctl('get', 'key1');
    assert.equal(get.code, 0, get.stderr);
    assert.equal(get.stdout, 'xxxxx\n');
    // etcd 3.4/3.5's --experimental-enable-v2v3 /v2 keeps /key1 at "/v2/002/k//1/key1": its store paths carry v2's
    // "/1" keys prefix (etcdserver.StoreKeysPrefix), counted in the depth. Data written here must be where it looks.
    assert.equal(await v3Value(m.clientUrl, '/v2/002/k//1/key1'), 'xxxxx', 'the value is not at the emulation\'s key /v2/002/k//1/key1');
  });

  it('set and get with etcdctl defaults (it first syncs the member list through the proxy, then uses what it got)', async () => {
    const set = await etcdctl(p.url, ['set', 'synced', 'yes']);
    assert.equal(set.code, 0, `etcdctl set without --no-sync failed (the /v2/members answer sent it to a member that has no v2 API?): ${set.stderr}`);
    assert.equal(set.stdout, 'yes\n');
    const get = await etcdctl(p.url, ['get', 'synced']);
    assert.equal(get.code, 0, get.stderr);
    assert.equal(get.stdout, 'yes\n');
  });

  it('get of a missing key fails with v2 error 100, exit 4', async () => {
    const get = await ctl('get', 'no-such-key');
    assert.equal(get.code, 4);
    assert.match(get.stderr, /^Error: {2}100: Key not found \(\/no-such-key\) \[\d+\]\n$/);
  });

  it('mk creates once, the second mk fails with 105', async () => {
    const mk = await ctl('mk', '/dir/k2', 'v2');
    assert.equal(mk.code, 0, mk.stderr);
    assert.equal(mk.stdout, 'v2\n');
    const again = await ctl('mk', '/dir/k2', 'v2');
    assert.equal(again.code, 4);
    assert.match(again.stderr, /^Error: {2}105: Key already exists \(\/dir\/k2\) \[\d+\]\n$/);
  });

  it('mkdir, ls, ls -r and ls --recursive list what was made (hidden keys left out)', async () => {
    for (const args of [['mkdir', '/dir2'], ['mkdir', '/dir/sub'], ['set', '/dir/sub/x', 'y'], ['set', '/dir/_hidden', 'h']]) {
      const r = await ctl(...args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    const dup = await ctl('mkdir', '/dir2');
    assert.equal(dup.code, 4);
    assert.match(dup.stderr, /105: Key already exists \(\/dir2\)/);

    const ls = await ctl('ls');
    assert.equal(ls.code, 0, ls.stderr);
    assert.deepEqual(listed(ls.stdout), ['/dir', '/dir2', '/key1']);
    const lsr = await ctl('ls', '-r');
    assert.equal(lsr.code, 0, lsr.stderr);
    assert.deepEqual(listed(lsr.stdout), ['/dir', '/dir/k2', '/dir/sub', '/dir/sub/x', '/dir2', '/key1']);
    const lsDir = await ctl('ls', '--recursive', '/dir');
    assert.equal(lsDir.code, 0, lsDir.stderr);
    assert.deepEqual(lines(lsDir.stdout).sort(), ['/dir/k2', '/dir/sub', '/dir/sub/x']);
    const lsp = await ctl('ls', '-p', '--sort', '/dir');
    assert.equal(lsp.code, 0, lsp.stderr);
    assert.deepEqual(lines(lsp.stdout), ['/dir/k2', '/dir/sub/']);
  });

  it('update changes an existing key and fails with 100 on a missing one', async () => {
    const up = await ctl('update', 'key1', 'yyy');
    assert.equal(up.code, 0, up.stderr);
    assert.equal(up.stdout, 'yyy\n');
    assert.equal((await ctl('get', 'key1')).stdout, 'yyy\n');
    const missing = await ctl('update', 'nokey', 'zzz');
    assert.equal(missing.code, 4);
    assert.match(missing.stderr, /^Error: {2}100: Key not found \(\/nokey\) \[\d+\]\n$/);
  });

  it('rm prints the previous value; rmdir of a full dir fails; rm -r removes the tree', async () => {
    const rm = await ctl('rm', 'key1');
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal(rm.stdout, 'PrevNode.Value: yyy\n');
    const rmdir = await ctl('rmdir', '/dir');
    assert.equal(rmdir.code, 4);
    assert.match(rmdir.stderr, /108: Directory not empty \(\/dir\)/);
    const rmr = await ctl('rm', '-r', '/dir');
    assert.equal(rmr.code, 0, rmr.stderr);
    const gone = await ctl('get', '/dir/sub/x');
    assert.equal(gone.code, 4);
    assert.match(gone.stderr, /100: Key not found \(\/dir\)/);
    assert.equal((await ctl('rmdir', '/dir2')).code, 0);
    const ls = await ctl('ls', '-r');
    assert.deepEqual(listed(ls.stdout), []);
  });

  it('watch: a watch started, then a set through the proxy: the watch prints the value and exits', async () => {
    const before = p.v3Backend!.watchCount;
    const w = startWatch(p.url, ['--no-sync', 'watch', 'wkey']);
    await eventually(() => p.v3Backend!.watchCount > before, 10000, 'the etcdctl watch to be registered with the proxy');
    const set = await ctl('set', 'wkey', 'hello');
    assert.equal(set.code, 0, set.stderr);
    const code = await Promise.race([w.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 10000).unref())]);
    assert.equal(code, 0, `etcdctl watch: ${code}; output ${JSON.stringify(w.output())}`);
    assert.equal(w.output(), 'hello\n');
  });

  it('watch --forever -r prints every change under a directory, with its action', async () => {
    const before = p.v3Backend!.watchCount;
    const w = startWatch(p.url, ['--no-sync', 'watch', '--forever', '-r', '/wdir']);
    await eventually(() => p.v3Backend!.watchCount > before, 10000, 'the etcdctl watch to be registered with the proxy');
    for (const args of [['set', '/wdir/a', '1'], ['update', '/wdir/a', '2'], ['rm', '/wdir/a'], ['mk', '/wdir/b', '3']]) {
      const r = await ctl(...args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    const expected = '[set] /wdir/a\n1\n[update] /wdir/a\n2\n[delete] /wdir/a\nPrevNode.Value: 2\n[create] /wdir/b\n3\n';
    await eventually(() => w.output().length >= expected.length, 10000, `the watch to print ${JSON.stringify(expected)} (got ${JSON.stringify(w.output())})`);
    assert.equal(w.output(), expected);
  });

  it('set --ttl: the TTL shows (-o extended) and the key expires', async () => {
    const set = await ctl('set', '--ttl', '100', 't1', 'tv');
    assert.equal(set.code, 0, set.stderr);
    const ext = await ctl('-o', 'extended', 'get', 't1');
    assert.equal(ext.code, 0, ext.stderr);
    assert.match(ext.stdout, /^Key: \/t1\nCreated-Index: \d+\nModified-Index: \d+\nTTL: (100|99)\nIndex: \d+\n\ntv\n$/);

    const short = await ctl('set', '--ttl', '1', 't2', 'gone-soon');
    assert.equal(short.code, 0, short.stderr);
    await eventually(async () => (await ctl('get', 't2')).code === 4, 10000, 'the ttl=1 key to expire');
    assert.match((await ctl('get', 't2')).stderr, /100: Key not found \(\/t2\)/);
  });

  it('mkdir --ttl and updatedir --ttl', async () => {
    assert.equal((await ctl('mkdir', '--ttl', '100', '/tdir')).code, 0);
    const up = await ctl('updatedir', '--ttl', '200', '/tdir');
    assert.equal(up.code, 0, up.stderr);
    const res = await http(`${p.url}/v2/keys/tdir`);
    const node = (res.json() as { node: { ttl?: number; dir?: boolean } }).node;
    assert.equal(node.dir, true);
    assert.ok(node.ttl === 200 || node.ttl === 199, `ttl ${node.ttl}`);
  });

  it('member list (--no-sync) through the proxy lists the member', async () => {
    const list = await ctl('member', 'list');
    assert.equal(list.code, 0, list.stderr);
    const out = lines(list.stdout);
    assert.equal(out.length, 1, list.stdout);
    assert.match(out[0]!, new RegExp(`^[0-9a-f]+: name=${m.name} peerURLs=${m.peerUrl} clientURLs=\\S+ isLeader=true$`));
  });

  it('member list with etcdctl defaults (synced through the proxy) lists the member', async () => {
    const list = await etcdctl(p.url, ['member', 'list']);
    assert.equal(list.code, 0, list.stderr);
    const out = lines(list.stdout);
    assert.equal(out.length, 1, list.stdout);
    // The member serves no v2: its client URLs are shown as the proxy's, so a syncing client stays on the proxy.
    assert.match(out[0]!, new RegExp(`^[0-9a-f]+: name=${m.name} peerURLs=${m.peerUrl} clientURLs=${p.url} isLeader=true$`));
    assert.equal((await http(`${p.url}/v2/machines`)).body, p.url);
  });

  it('metrics and handler events count what the v3 backend answers (endpoint "v3")', async () => {
    const seen: ForwardedEvent[] = [];
    const onForwarded = (e: ForwardedEvent): void => void seen.push(e);
    p.handler.on('forwarded', onForwarded);
    onCleanup(() => p.handler.off('forwarded', onForwarded));
    const count = async (): Promise<number> => {
      const text = (await http(`${p.url}/metrics`)).body;
      const line = text.split('\n').find((l) => /^etcd_proxy_handled_total\{.*method="GET".*\} /.test(l) && l.includes('code="404"'));
      return line === undefined ? 0 : Number(line.split(' ').pop());
    };
    const before = await count();
    assert.equal((await http(`${p.url}/v2/keys/metrics-missing`)).status, 404);
    assert.equal(await count(), before + 1);
    assert.deepEqual(seen, [{ method: 'GET', url: '/v2/keys/metrics-missing', endpoint: 'v3', status: 404, durationMs: seen[0]!.durationMs, attempts: 1, watch: false }]);
  });

  it('cluster-health through the proxy says the cluster is healthy', async () => {
    const health = await etcdctl(p.url, ['cluster-health']);
    assert.equal(health.code, 0, `${health.stdout}${health.stderr}`);
    assert.match(health.stdout, /^member [0-9a-f]+ is healthy: got healthy result from \S+\ncluster is healthy\n$/);
  });
});
