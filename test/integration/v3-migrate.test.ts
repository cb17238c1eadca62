/**
 * The v2-to-v3 migration against real etcd: the source is a native v2
 * member (etcd 3.4 --enable-v2), the target a v3-only member (as etcd 3.5 and
 * 3.6 run by default), written through V3Client and read back in the key
 * layout.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EndpointBalancer } from '../../src/balancer/endpoint-balancer.js';
import { KeyLayout } from '../../src/v3-backend/key-layout.js';
import { MigrationError, migrateV2Store } from '../../src/v3-backend/migrate-v2-store.js';
import type { MigrateV2StoreOptions, MigrationProgress } from '../../src/v3-backend/migrate-v2-store.js';
import type { KeyValue } from '../../src/v3-backend/rpc-types.js';
import { V3Client } from '../../src/v3-backend/v3-client.js';
import { V3Store } from '../../src/v3-backend/v3-store.js';
import { cleanup, etcdctl, form, freePort, http, member, onCleanup, proxy, skipWithoutEtcd } from './harness.js';
import type { LocalEtcd } from './harness.js';

const CLI = fileURLToPath(new URL('../../examples/cli.ts', import.meta.url));

/** A V3Client on `urls`, closed by cleanup(). */
function v3Client(urls: readonly string[], options: { dialTimeout?: number; callTimeout?: number } = {}): V3Client {
  const balancer = new EndpointBalancer({ endpoints: urls, leaderWrites: false });
  const client = new V3Client({ balancer, ...options });
  onCleanup(() => {
    client.close();
    balancer.close();
  });
  return client;
}

/** Every key under `${prefix}/`, as key -> { value, lease }. */
async function dump(client: V3Client, prefix: string): Promise<Map<string, KeyValue>> {
  const res = await client.range({ key: Buffer.from(`${prefix}/`), rangeEnd: Buffer.from(`${prefix}0`) });
  return new Map(res.kvs.map((kv) => [kv.key.toString('utf8'), kv]));
}

async function v2(url: string, method: string, path: string, params: Record<string, string | number | boolean> = {}): Promise<unknown> {
  // etcd reads a DELETE's parameters from the query string only.
  const res =
    method === 'DELETE'
      ? await http(`${url}/v2/keys${path}?${form(params)}`, { method })
      : await http(`${url}/v2/keys${path}`, { method, body: form(params) });
  assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${res.body}`);
  return res.json();
}

/** A v2 node without its indexes (and with `ttl` left out: it counts down), children in order. */
function strip(node: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === 'modifiedIndex' || k === 'createdIndex' || k === 'ttl' || k === 'expiration') continue;
    out[k] = k === 'nodes' ? (v as Record<string, unknown>[]).map(strip) : v;
  }
  if ('ttl' in node) out.hasTtl = true;
  return out;
}

function runMigrate(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'migrate', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    onCleanup(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('migrateV2Store: a live v2 store copied into the v3 layout', { skip: skipWithoutEtcd }, () => {
  let source: LocalEtcd;
  let target: LocalEtcd;
  let client: V3Client;
  const queue: string[] = [];
  let ttlExpiration = 0;
  const P = '/v2';
  const layout = new KeyLayout(P);

  before(async () => {
    [source, target] = await Promise.all([member(), member({ enableV2: false })]);
    client = v3Client([target.clientUrl]);
    const s = source.clientUrl;
    await v2(s, 'PUT', '/a/b', { value: '1' });
    await v2(s, 'PUT', '/a/c/d', { value: '2' });
    await v2(s, 'PUT', '/a/c/e', { value: 'ü spaced % value\nline 2' });
    await v2(s, 'PUT', '/a/c/with space', { value: '' });
    await v2(s, 'PUT', '/empty', { dir: true });
    await v2(s, 'PUT', '/_hidden/x', { value: 'h' });
    await v2(s, 'PUT', '/a/_h', { value: 'hh' });
    const t = (await v2(s, 'PUT', '/ttl', { value: 't', ttl: 300 })) as { node: { expiration: string } };
    ttlExpiration = Date.parse(t.node.expiration);
    await v2(s, 'PUT', '/tdir', { dir: true, ttl: 200 });
    await v2(s, 'PUT', '/tdir/child', { value: 'c' });
    for (const v of ['q1', 'q2', 'q3']) queue.push(((await v2(s, 'POST', '/queue', { value: v })) as { node: { key: string } }).node.key);
    // The discovery service's layout: visible token dirs, each with a hidden _config.
    await v2(s, 'PUT', '/_etcd/registry/tok1/_config/size', { value: '3' });
    await v2(s, 'PUT', '/_etcd/registry/tok1/m1', { value: 'peer1' });
    await v2(s, 'PUT', '/_etcd/registry/tok2/_config/size', { value: '5' });
  });
  after(cleanup);

  test('copies files, directories, hidden nodes, TTLs and in-order keys; the layout holds exactly them', async () => {
    const progress: MigrationProgress[] = [];
    const report = await migrateV2Store({
      source: source.clientUrl,
      target: client,
      hidden: ['/_hidden', '/a/_h', '/_etcd/registry/*/_config', '/_nope'],
      batchOps: 4, // several transactions
      onProgress: (p) => progress.push(p),
    });
    // Visible (14): /a /a/b /a/c /a/c/d /a/c/e "/a/c/with space" /empty /ttl /tdir /tdir/child /queue and 3 in it.
    // Hidden (12): /_hidden /_hidden/x /a/_h /_etcd /_etcd/registry /_etcd/registry/tok1 /tok1/m1 /tok2,
    // /tok1/_config /tok1/_config/size /tok2/_config /tok2/_config/size.
    assert.deepEqual(
      { files: report.files, dirs: report.dirs, hidden: report.hidden, withTtl: report.withTtl },
      { files: 14, dirs: 12, hidden: 12, withTtl: 2 },
    );
    assert.equal(report.written, 26);
    assert.equal(report.unchanged, 0);
    assert.equal(report.skippedExpired, 0);
    assert.deepEqual(report.hiddenMissing, ['/_nope']);
    assert.equal(report.dryRun, false);
    // The target's v2 index (revision - 1) caught up with the source's.
    const sourceIndex = Number((await http(`${source.clientUrl}/v2/keys/`)).headers['x-etcd-index']);
    assert.equal(report.sourceIndex, sourceIndex);
    assert.ok(report.indexAdvanced > 0);
    // Caught up, one beyond at most (the pad key outside the prefix is deleted at the end), and that key is gone.
    const pad = await client.range({ key: Buffer.from('\0etcd-v2-proxy/migrate-index-pad') });
    assert.equal(pad.kvs.length, 0);
    const targetIndex = pad.header.revision - 1;
    assert.ok(targetIndex >= sourceIndex && targetIndex <= sourceIndex + 1, `target index ${targetIndex}, source ${sourceIndex}`);
    assert.ok(progress.length >= 2, 'progress after the plan and after batches');
    assert.deepEqual(progress.at(-2), { copied: 26, skipped: 0, total: 26 });
    assert.deepEqual(progress.at(-1), { copied: 26, skipped: 0, total: 26, indexGap: 0 });

    const kvs = await dump(client, P);
    const files: Record<string, string> = {
      '/a/b': '1', '/a/c/d': '2', '/a/c/e': 'ü spaced % value\nline 2', '/a/c/with space': '', '/_hidden/x': 'h', '/a/_h': 'hh',
      '/ttl': 't', '/tdir/child': 'c', '/_etcd/registry/tok1/_config/size': '3', '/_etcd/registry/tok1/m1': 'peer1',
      '/_etcd/registry/tok2/_config/size': '5',
      ...Object.fromEntries(queue.map((k, i) => [k, `q${i + 1}`])),
    };
    const dirs = ['/a', '/a/c', '/empty', '/_hidden', '/tdir', '/queue', '/_etcd', '/_etcd/registry', '/_etcd/registry/tok1',
      '/_etcd/registry/tok2', '/_etcd/registry/tok1/_config', '/_etcd/registry/tok2/_config'];
    const expected = new Map<string, string>([
      ...Object.entries(files).map(([p, v]): [string, string] => [layout.fileKey(p).toString(), v]),
      ...dirs.map((p): [string, string] => [layout.dirKey(p).toString(), '']),
      [`${P}/act`, 'set'],
    ]);
    assert.deepEqual(new Map([...kvs].map(([k, kv]) => [k, kv.value.toString('utf8')])), expected);

    // TTLs: a lease whose ID encodes the expiry; the child of a TTL dir shares the dir's lease.
    const ttlKv = kvs.get(layout.fileKey('/ttl').toString())!;
    assert.notEqual(ttlKv.lease, 0);
    assert.ok(Math.abs(Math.floor(ttlKv.lease / 2048) - ttlExpiration) <= 1000, `lease ${ttlKv.lease} encodes ${Math.floor(ttlKv.lease / 2048)}, expected ~${ttlExpiration}`);
    const granted = await client.leaseTimeToLive(ttlKv.lease);
    assert.ok(granted.TTL > 290 && granted.TTL <= 300, `lease TTL ${granted.TTL}`);
    const tdir = kvs.get(layout.dirKey('/tdir').toString())!;
    assert.notEqual(tdir.lease, 0);
    assert.equal(kvs.get(layout.fileKey('/tdir/child').toString())!.lease, tdir.lease);
    assert.equal(kvs.get(layout.fileKey('/a/b').toString())!.lease, 0);

    // In-order keys: creation order is key order, and creation (revision) order too.
    const q = [...kvs.values()].filter((kv) => kv.key.toString().startsWith(layout.childrenPrefix('/queue').toString()));
    assert.deepEqual(q.map((kv) => kv.value.toString()), ['q1', 'q2', 'q3']);
    assert.deepEqual(q.map((kv) => kv.key.toString()), [...q].sort((x, y) => x.createRevision - y.createRevision).map((kv) => kv.key.toString()));
  });

  test('a recursive sorted GET through V3Store and through a --backend v3 proxy equals the native one (indexes and TTL countdown aside)', async () => {
    const native = (await http(`${source.clientUrl}/v2/keys/?recursive=true&sorted=true`)).json() as { node: Record<string, unknown> };
    const store = new V3Store({ client, prefix: P });
    onCleanup(() => store.close());
    const fromStore = await store.get('/', { recursive: true, sorted: true });
    assert.deepEqual(strip(JSON.parse(JSON.stringify(fromStore.node)) as Record<string, unknown>), strip(native.node));

    const { url } = await proxy({ initialCluster: `${target.name}=${target.peerUrl}`, backend: 'v3', v3Prefix: P });
    const viaV3 = (await http(`${url}/v2/keys/?recursive=true&sorted=true`)).json() as { node: Record<string, unknown> };
    assert.deepEqual(strip(viaV3.node), strip(native.node));
    for (const path of ['/_hidden', '/_etcd/registry/tok1/_config', '/a/_h']) {
      const n = (await http(`${source.clientUrl}/v2/keys${path}?recursive=true&sorted=true`)).json() as { node: Record<string, unknown> };
      const v = (await http(`${url}/v2/keys${path}?recursive=true&sorted=true`)).json() as { node: Record<string, unknown> };
      assert.deepEqual(strip(v.node), strip(n.node), path);
    }
    const ttl = (await http(`${url}/v2/keys/ttl`)).json() as { node: { ttl: number; expiration: string } };
    assert.ok(ttl.node.ttl > 290 && ttl.node.ttl <= 300, `ttl ${ttl.node.ttl}`);
    assert.ok(Math.abs(Date.parse(ttl.node.expiration) - ttlExpiration) <= 1000);

    // The index caught up, so a new in-order key sorts after the copied ones.
    const posted = (await http(`${url}/v2/keys/queue`, { method: 'POST', body: form({ value: 'q4' }) })).json() as { node: { key: string } };
    const listed = (await http(`${url}/v2/keys/queue?sorted=true`)).json() as { node: { nodes: Array<{ key: string; value: string }> } };
    assert.deepEqual(listed.node.nodes.map((n) => n.value), ['q1', 'q2', 'q3', 'q4']);
    assert.equal(listed.node.nodes.at(-1)!.key, posted.node.key);
    assert.equal((await http(`${url}/v2/keys${posted.node.key}`, { method: 'DELETE' })).status, 200);
  });

  test('a re-run writes nothing; a changed source is refused without force, then updated with it', async () => {
    const hidden = ['/_hidden', '/a/_h', '/_etcd/registry/*/_config'];
    const rev0 = (await client.range({ key: Buffer.from(`${P}/act`) })).header.revision;
    const again = await migrateV2Store({ source: source.clientUrl, target: client, hidden });
    assert.equal(again.written, 0);
    assert.equal(again.unchanged, 26);
    assert.equal((await client.range({ key: Buffer.from(`${P}/act`) })).header.revision, rev0, 'no revision written');
    // Without `hidden` the hidden copies are not compared (the source was not asked about them): kept, no refusal.
    const noHidden = await migrateV2Store({ source: source.clientUrl, target: client, prune: true, dryRun: true });
    assert.deepEqual({ written: noHidden.written, unchanged: noHidden.unchanged, deleted: noHidden.deleted, extra: noHidden.extra }, { written: 0, unchanged: 14, deleted: 0, extra: 12 });

    await v2(source.clientUrl, 'PUT', '/a/b', { value: 'changed' });
    await assert.rejects(migrateV2Store({ source: source.clientUrl, target: client, hidden }), (err: MigrationError) => {
      assert.ok(err instanceof MigrationError);
      assert.equal(err.reason, 'target-not-empty');
      assert.equal(
        err.message,
        `target prefix /v2 is not empty: it holds 26 key(s), 1 of them not equal to the source (e.g. ${JSON.stringify(layout.fileKey('/a/b').toString())}); give force (--force) to copy into it anyway`,
      );
      return true;
    });

    // A dry run says what a forced run would write, and writes nothing.
    const dry = await migrateV2Store({ source: source.clientUrl, target: client, hidden, force: true, dryRun: true });
    assert.deepEqual({ written: dry.written, unchanged: dry.unchanged, dryRun: dry.dryRun }, { written: 1, unchanged: 25, dryRun: true });
    assert.equal((await client.range({ key: Buffer.from(`${P}/act`) })).header.revision, rev0, 'the dry run wrote nothing');

    const forced = await migrateV2Store({ source: source.clientUrl, target: client, hidden, force: true });
    assert.deepEqual({ written: forced.written, unchanged: forced.unchanged }, { written: 1, unchanged: 25 });
    const kv = (await client.range({ key: layout.fileKey('/a/b') })).kvs[0]!;
    assert.equal(kv.value.toString(), 'changed');
  });

  test('a node that changed kind replaces the old one and its subtree; prune deletes what the source lost, hidden nodes only when asked about', async () => {
    const P2 = '/kinds';
    const l2 = new KeyLayout(P2);
    const s = source.clientUrl;
    const hidden = ['/k/_h'];
    await v2(s, 'PUT', '/k/x/y', { value: 'old' });
    await v2(s, 'PUT', '/k/gone', { value: 'bye' });
    await v2(s, 'PUT', '/k/_h/z', { value: 'hidden' });
    await v2(s, 'PUT', '/k/f', { value: 'a file, then a dir' });
    try {
      await migrateV2Store({ source: s, target: client, prefix: P2, hidden });
      await v2(s, 'DELETE', '/k/x', { recursive: true });
      await v2(s, 'PUT', '/k/x', { value: 'now a file' });
      await v2(s, 'DELETE', '/k/gone');
      await v2(s, 'DELETE', '/k/_h', { recursive: true });
      await v2(s, 'DELETE', '/k/f');
      await v2(s, 'PUT', '/k/f/inside', { value: 'in the dir' });
      await assert.rejects(migrateV2Store({ source: s, target: client, prefix: P2, hidden }), /hidden nodes among them; give force/);

      const r = await migrateV2Store({ source: s, target: client, prefix: P2, hidden, force: true });
      assert.deepEqual(
        { written: r.written, deleted: r.deleted, extra: r.extra },
        { written: 3, deleted: 3, extra: 3 },
        'the file /k/x, the dir /k/f and /k/f/inside written; the dir /k/x, /k/x/y under it and the file /k/f deleted; /k/gone, /k/_h, /k/_h/z kept',
      );
      let kvs = await dump(client, P2);
      assert.equal(kvs.get(l2.fileKey('/k/x').toString())?.value.toString(), 'now a file');
      assert.equal(kvs.has(l2.dirKey('/k/x').toString()), false);
      assert.equal(kvs.has(l2.fileKey('/k/x/y').toString()), false);
      assert.equal(kvs.has(l2.fileKey('/k/gone').toString()), true);
      assert.equal(kvs.has(l2.fileKey('/k/f').toString()), false);
      assert.equal(kvs.get(l2.dirKey('/k/f').toString())?.value.toString(), '');
      assert.equal(kvs.get(l2.fileKey('/k/f/inside').toString())?.value.toString(), 'in the dir');

      // Without `hidden`, the source was not asked about /k/_h: prune leaves it.
      const pruned = await migrateV2Store({ source: s, target: client, prefix: P2, force: true, prune: true });
      assert.deepEqual({ deleted: pruned.deleted, extra: pruned.extra, written: pruned.written }, { deleted: 1, extra: 2, written: 0 });
      kvs = await dump(client, P2);
      assert.equal(kvs.has(l2.fileKey('/k/gone').toString()), false);
      assert.equal(kvs.has(l2.fileKey('/k/_h/z').toString()), true);
      const prunedHidden = await migrateV2Store({ source: s, target: client, prefix: P2, hidden, force: true, prune: true });
      assert.deepEqual({ deleted: prunedHidden.deleted, extra: prunedHidden.extra }, { deleted: 2, extra: 0 });
      assert.equal((await dump(client, P2)).has(l2.fileKey('/k/_h/z').toString()), false);
    } finally {
      await v2(s, 'DELETE', '/k', { recursive: true });
    }
  });

  test('a re-run: a node added to a TTL directory since goes on the directory\'s lease (its TTL is the directory\'s, not its own)', async () => {
    // It got a fresh lease of the same expiry, which the v3 backend took for the node's own TTL:
    // kept when the directory's TTL was later removed, so the node vanished at the old expiry.
    const P3 = '/rerun';
    const l3 = new KeyLayout(P3);
    const s = source.clientUrl;
    await v2(s, 'PUT', '/rr', { dir: true, ttl: 600 });
    await v2(s, 'PUT', '/rr/first', { value: '1' });
    await migrateV2Store({ source: s, target: client, prefix: P3 });
    await v2(s, 'PUT', '/rr/later', { value: '2' });
    await migrateV2Store({ source: s, target: client, prefix: P3, force: true });
    const kvs = await dump(client, P3);
    const dirLease = kvs.get(l3.dirKey('/rr').toString())!.lease;
    assert.notEqual(dirLease, 0);
    assert.equal(kvs.get(l3.fileKey('/rr/first').toString())!.lease, dirLease);
    assert.equal(kvs.get(l3.fileKey('/rr/later').toString())!.lease, dirLease, 'the node added since, on the directory\'s lease');
    const store = new V3Store({ client, prefix: P3 });
    onCleanup(() => store.close());
    assert.equal((await store.get('/rr/later')).node.ttl, undefined, 'no TTL of its own, as in v2');
    // The directory's TTL removed: the node stays, as in v2.
    await store.put('/rr', { dir: true, prevExist: true });
    assert.equal((await store.get('/rr/later')).node.ttl, undefined);
    // The source as the other tests know it.
    await v2(s, 'DELETE', '/rr', { recursive: true });
  });

  test('values of ordinary size in numbers: batches stay under the cluster\'s request limit', async () => {
    // 100 operations of 20 KB are 2 MB, past etcd's 1.5 MiB: the copy failed with "request is too large".
    const s = source.clientUrl;
    const value = 'v'.repeat(20 * 1024);
    for (let i = 0; i < 120; i++) await v2(s, 'PUT', `/bulk/k${i}`, { value });
    const report = await migrateV2Store({ source: s, target: client, prefix: '/bulkcopy' });
    assert.equal(report.written, report.files + report.dirs - report.skippedExpired);
    const kvs = await dump(client, '/bulkcopy');
    assert.equal(kvs.get(new KeyLayout('/bulkcopy').fileKey('/bulk/k119').toString())?.value.length, value.length);
    await v2(s, 'DELETE', '/bulk', { recursive: true });
  });

  test('a prefix holding other data is refused without force, naming the prefix and its key count', async () => {
    await client.put({ key: Buffer.from('/busy/something-else'), value: Buffer.from('x') });
    await client.put({ key: new KeyLayout('/busy').fileKey('/a'), value: Buffer.from('not the source') });
    const rev0 = (await client.range({ key: Buffer.from('/busy/') })).header.revision;
    await assert.rejects(migrateV2Store({ source: source.clientUrl, target: client, prefix: '/busy' }), (err: MigrationError) => {
      assert.equal(err.reason, 'target-not-empty');
      assert.match(err.message, /^target prefix \/busy is not empty: it holds 2 key\(s\), 2 of them not equal to the source/);
      return true;
    });
    await assert.rejects(migrateV2Store({ source: source.clientUrl, target: client, prefix: '/busy', dryRun: true }), /target prefix \/busy is not empty/);
    assert.equal((await client.range({ key: Buffer.from('/busy/') })).header.revision, rev0, 'nothing written');
  });

  test('an unreachable source, a source without v2, an unreachable target: one clear error each', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    await assert.rejects(migrateV2Store({ source: dead, target: client, prefix: '/x' }), (err: MigrationError) => {
      assert.equal(err.reason, 'source-unreachable');
      assert.match(err.message, new RegExp(`^source ${dead} unreachable: .*ECONNREFUSED`));
      return true;
    });
    // A second URL is tried when the first is down.
    const viaSecond = await migrateV2Store({ source: [dead, source.clientUrl], target: client, prefix: '/x', dryRun: true });
    assert.ok(viaSecond.files > 0);
    await assert.rejects(migrateV2Store({ source: target.clientUrl, target: client, prefix: '/x' }), (err: MigrationError) => {
      assert.equal(err.reason, 'source-not-v2');
      assert.match(err.message, new RegExp(`^source ${target.clientUrl} does not serve the v2 API \\(/v2/keys answered 404`));
      return true;
    });
    const deadTarget = v3Client([dead], { dialTimeout: 300, callTimeout: 1000 });
    await assert.rejects(migrateV2Store({ source: source.clientUrl, target: deadTarget }), (err: MigrationError) => {
      assert.equal(err.reason, 'target-unreachable');
      assert.match(err.message, /^target unreachable: /);
      return true;
    });
    assert.throws(() => migrateV2Store({ source: 'localhost', target: client } as MigrateV2StoreOptions), /invalid option source: "localhost"/);
    assert.throws(() => migrateV2Store({ source: source.clientUrl, target: client, hidden: ['rel/path'] }), /invalid option hidden: expected absolute v2 paths/);
    assert.throws(() => migrateV2Store({ source: source.clientUrl, target: client, batchOps: 1 }), /invalid option batchOps: expected at least 2/);
  });

  test('an aborted run stops between batches; a re-run without force finishes it', async () => {
    const ac = new AbortController();
    let batches = 0;
    await assert.rejects(
      migrateV2Store({
        source: source.clientUrl, target: client, prefix: '/aborted', batchOps: 2, signal: ac.signal,
        onProgress: (p) => {
          if (p.copied > 0 && ++batches === 3) ac.abort();
        },
      }),
      (err: MigrationError) => err instanceof MigrationError && err.reason === 'aborted',
    );
    const partial = [...(await dump(client, '/aborted')).keys()].filter((k) => k !== '/aborted/act');
    assert.equal(partial.length, 3, 'three one-node batches went in');
    const rest = await migrateV2Store({ source: source.clientUrl, target: client, prefix: '/aborted' });
    assert.equal(rest.unchanged, 3);
    assert.equal(rest.written, rest.files + rest.dirs - 3);
  });

  test('a source with v2 auth on: refused without a user, copied as root', async () => {
    const guarded = await member();
    await v2(guarded.clientUrl, 'PUT', '/secret', { value: 's' });
    for (const args of [['user', 'add', 'root:rootpw'], ['auth', 'enable'], ['--username', 'root:rootpw', 'role', 'revoke', 'guest', '--path', '/*', '--readwrite']]) {
      const r = await etcdctl(guarded.clientUrl, args);
      assert.equal(r.code, 0, `etcdctl ${args.join(' ')}: ${r.stderr}`);
    }
    await assert.rejects(migrateV2Store({ source: guarded.clientUrl, target: client, prefix: '/guarded' }), (err: MigrationError) => {
      assert.equal(err.reason, 'source-refused');
      assert.match(err.message, /^source http:\/\/127\.0\.0\.1:\d+ refused to list \/v2\/keys \(401: v2 auth is on\)/);
      return true;
    });
    const r = await migrateV2Store({ source: guarded.clientUrl, sourceUsername: 'root', sourcePassword: 'rootpw', target: client, prefix: '/guarded' });
    assert.equal(r.written, 1);
    assert.equal((await client.range({ key: new KeyLayout('/guarded').fileKey('/secret') })).kvs[0]?.value.toString(), 's');
  });

  test('the command: examples/cli.ts migrate copies and prints the report; bad input exits 1 or 2 with one line', async () => {
    // The copy and the failures at once (each a fresh tsx process: ~2 s to start).
    const [ok, noV2, badFlag, noTo, badPrefix] = await Promise.all([
      runMigrate(['--from', source.clientUrl, '--to', target.clientUrl, '--v3-prefix', '/cli', '--hidden', '/_hidden']),
      runMigrate(['--from', target.clientUrl, '--to', target.clientUrl]),
      runMigrate(['--from', source.clientUrl, '--to', target.clientUrl, '--dryrun']),
      runMigrate(['--from', source.clientUrl]),
      runMigrate(['--from', source.clientUrl, '--to', target.clientUrl, '--v3-prefix', 'cli/']),
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^v2 store http:\/\/127\.0\.0\.1:\d+ \(index \d+\) -> v3 http:\/\/127\.0\.0\.1:\d+ under \/cli$/m);
    assert.match(ok.stdout, /^ {2}written +16$/m);
    assert.match(ok.stdout, /^migrated 16 node\(s\) under \/cli: 16 written, 0 unchanged, 0 expired, 0 deleted in \d+ ms$/m);
    assert.match(ok.stderr, /^etcd-v2-proxy migrate: 16\/16 node\(s\): 16 written, 0 skipped$/m);

    assert.equal(noV2.code, 1);
    assert.equal(noV2.stderr.trim().split('\n').length, 1, noV2.stderr);
    assert.match(noV2.stderr, /^etcd-v2-proxy migrate: source http:\/\/127\.0\.0\.1:\d+ does not serve the v2 API/);

    assert.equal(badFlag.code, 2);
    assert.equal(badFlag.stderr, 'etcd-v2-proxy migrate: unknown flag --dryrun (see --help)\n');
    assert.equal(noTo.code, 2);
    assert.match(noTo.stderr, /^etcd-v2-proxy migrate: --to is required/);
    assert.equal(badPrefix.code, 2);
    assert.match(badPrefix.stderr, /^etcd-v2-proxy migrate: --v3-prefix: expected a key prefix that starts with "\/" and does not end with "\/", e\.g\. "?\/v2"?, got "cli\/"\n$/);

    const dry = await runMigrate(['--from', source.clientUrl, '--to', target.clientUrl, '--v3-prefix=/cli', '--hidden', '/_hidden', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^dry run: would write 0 of 16 node\(s\) under \/cli \(16 unchanged, 0 expired, 0 to delete\); nothing written$/m);
  });
});
