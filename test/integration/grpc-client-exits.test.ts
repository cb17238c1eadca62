/**
 * A v3 client that exits (etcdctl done, or killed) closes its connection:
 * the proxy kept its side open (CLOSE-WAIT), with the HTTP/2 session and
 * every call on it, so a watch of a client long gone stayed open on the
 * member, and each etcdctl run left a socket behind. node:http's sockets are
 * half-open, and node:http2 does not end a session on the client's FIN.
 * Found by comparing etcdctl v3 through the proxy with etcdctl direct.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { cleanup, eventually, member, onCleanup, proxy, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';
import { ctl3, memberMetric } from './grpc-client.js';

const WATCHERS = 'etcd_debugging_mvcc_watcher_total';

describe('v3 clients that exit', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  let p: Awaited<ReturnType<typeof proxy>>;
  before(async () => {
    m = await member();
    p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() });
  });
  after(cleanup);

  const connections = (): Promise<number> =>
    new Promise((resolve, reject) => p.servers[0]!.getConnections((err, n) => (err ? reject(err) : resolve(n))));

  it('a killed etcdctl watch: its connection closes and its watch on the member ends', async () => {
    const before = await memberMetric(m.clientUrl, WATCHERS);
    const open = await connections();
    const child = spawn('etcdctl', [`--endpoints=${new URL(p.url).host}`, 'watch', 'exits'], { env: { ...process.env, ETCDCTL_API: '3' }, stdio: 'ignore' });
    onCleanup(() => child.kill('SIGKILL'));
    await eventually(async () => (await memberMetric(m.clientUrl, WATCHERS)) === before + 1, 10000, 'the watch to be on the member');
    assert.equal(await connections(), open + 1);
    child.kill('SIGKILL');
    await eventually(async () => (await connections()) === open, 5000, "the proxy to close the client's connection");
    await eventually(async () => (await memberMetric(m.clientUrl, WATCHERS)) === before, 5000, 'the watch to end on the member');
  });

  it('etcdctl runs one after the other leave no connection behind', async () => {
    const open = await connections();
    for (let i = 0; i < 3; i++) {
      const r = await ctl3(new URL(p.url).host, ['put', 'exits', String(i)]);
      assert.equal(r.code, 0, r.stderr);
    }
    await eventually(async () => (await connections()) === open, 5000, 'every etcdctl connection to be closed');
  });
});
