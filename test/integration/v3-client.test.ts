/**
 * V3Client (src/v3-backend/v3-client.ts) against real v3-only etcd members:
 * round trips of every call, one connection per member, failover of reads,
 * writes never sent twice, the watch stream, v3 auth, and a close() that
 * leaves nothing behind.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EndpointBalancer } from '../../src/balancer/endpoint-balancer.js';
import type { BalancerStrategy } from '../../src/balancer/balancer-strategy.js';
import { V3Client, V3RpcError } from '../../src/v3-backend/v3-client.js';
import type { WatchResponse } from '../../src/v3-backend/rpc-types.js';
import { cleanup, cluster, etcdctlV3, eventually, freePort, freeze, http, member, onCleanup, skipWithoutEtcd, tempDir } from './harness.js';
import { makeTlsFixture } from './tls-certs.js';
import type { TlsFixture } from './tls-certs.js';
import type { LocalEtcd } from './harness.js';

const b = (s: string): Buffer => Buffer.from(s);

/** A balancer over `urls` closed by `cleanup()`; `first` (a client URL) is every request's first choice when given. */
function balancerOf(urls: readonly string[], first?: () => string | undefined): EndpointBalancer {
  const strategy: BalancerStrategy | undefined =
    first === undefined ? undefined : { name: 'fixed', pick: (candidates) => candidates.find((e) => e.url === first()) ?? candidates[0]! };
  // leaderWrites off: v3-only members have no /v2/members/leader; the client finds the leader itself.
  const balancer = new EndpointBalancer({ endpoints: urls, leaderWrites: false, ...(strategy === undefined ? {} : { strategy }) });
  onCleanup(() => balancer.close());
  return balancer;
}

function client(balancer: EndpointBalancer, options: Partial<ConstructorParameters<typeof V3Client>[0]> = {}): V3Client {
  const c = new V3Client({ balancer, ...options });
  onCleanup(() => c.close());
  return c;
}

/** etcd's count of gRPC calls of `method` a member started serving (`grpc_server_started_total`). */
async function grpcStarted(m: LocalEtcd, method: string): Promise<number> {
  const text = (await http(`${m.clientUrl}/metrics`)).body;
  const match = new RegExp(`^grpc_server_started_total\\{grpc_method="${method}",[^}]*\\} (\\d+)$`, 'm').exec(text);
  return match === null ? 0 : Number(match[1]);
}

/**
 * JS source of `connectionsTo(port)`: ESTABLISHED TCP connections of the
 * calling process to `port` (its socket inodes matched in /proc/net/tcp*).
 * Run in a child process that does nothing else, so that no other socket of
 * the test runner (fetch's keep-alive pool...) is counted.
 */
const CONNECTIONS_TO = `
  import { readFile as readFile_, readdir as readdir_, readlink as readlink_ } from 'node:fs/promises';
  async function connectionsTo(port) {
    const inodes = new Set();
    for (const fd of await readdir_('/proc/self/fd')) {
      const link = await readlink_('/proc/self/fd/' + fd).catch(() => '');
      const m = /^socket:\\[(\\d+)\\]$/.exec(link);
      if (m !== null) inodes.add(m[1]);
    }
    let n = 0;
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      const text = await readFile_(table, 'utf8').catch(() => '');
      for (const line of text.split('\\n').slice(1)) {
        const f = line.trim().split(/\\s+/);
        if (f.length < 10) continue;
        if (f[3] === '01' && parseInt(f[2].split(':')[1], 16) === port && inodes.has(f[9])) n++;
      }
    }
    return n;
  }
`;

/**
 * Runs `code` (an ES module; it may import src files by absolute path) in a
 * child `node --import tsx`. Resolves with its exit code (null: killed after
 * `timeoutMs`), its output, and the ms between its "closed" line and its exit.
 */
async function runChild(code: string, timeoutMs = 15000): Promise<{ exitCode: number | null; out: string; exitAfterClosedMs: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let closedAt = 0;
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (closedAt === 0 && /^closed$/m.test(out)) closedAt = Date.now();
  });
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exitCode = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve(null);
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
  return { exitCode, out, exitAfterClosedMs: closedAt === 0 ? Infinity : Date.now() - closedAt };
}

/** Absolute path of a file under src/, for a child's imports. */
const srcFile = (p: string): string => JSON.stringify(fileURLToPath(new URL(`../../src/${p}`, import.meta.url)));

function nextResponse(stream: { once(event: 'response', fn: (r: WatchResponse) => void): unknown }, timeoutMs = 5000): Promise<WatchResponse> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no watch response within ${timeoutMs} ms`)), timeoutMs);
    stream.once('response', (r) => {
      clearTimeout(timer);
      resolve(r);
    });
  });
}

describe('V3Client against a v3-only member', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  let c: V3Client;
  before(async () => {
    m = await member({ enableV2: false });
    c = client(balancerOf([m.clientUrl]));
  });
  after(cleanup);

  test('the v2 API is really off on this member', async () => {
    assert.equal((await http(`${m.clientUrl}/v2/keys/`)).status, 404);
  });

  test('put / range / deleteRange round trip, with prevKv and ranges', async () => {
    const put = await c.put({ key: b('rt/a'), value: b('1') });
    assert.ok(put.header.revision > 1);
    assert.equal(put.prevKv, null);
    const again = await c.put({ key: b('rt/a'), value: b('2'), prevKv: true });
    assert.equal(again.prevKv?.value.toString(), '1');
    assert.equal(again.prevKv?.modRevision, put.header.revision);
    await c.put({ key: b('rt/b'), value: b('3') });
    const one = await c.range({ key: b('rt/a') });
    assert.equal(one.count, 1);
    assert.ok(Buffer.isBuffer(one.kvs[0]!.key));
    assert.deepEqual(
      { key: one.kvs[0]!.key.toString(), value: one.kvs[0]!.value.toString(), version: one.kvs[0]!.version, create: one.kvs[0]!.createRevision, mod: one.kvs[0]!.modRevision },
      { key: 'rt/a', value: '2', version: 2, create: put.header.revision, mod: again.header.revision },
    );
    const all = await c.range({ key: b('rt/'), rangeEnd: b('rt0'), sortOrder: 'DESCEND', sortTarget: 'KEY' }, { serializable: true });
    assert.deepEqual(all.kvs.map((kv) => kv.key.toString()), ['rt/b', 'rt/a']);
    assert.equal((await c.range({ key: b('rt/'), rangeEnd: b('rt0'), countOnly: true })).count, 2);
    const del = await c.deleteRange({ key: b('rt/'), rangeEnd: b('rt0'), prevKv: true });
    assert.equal(del.deleted, 2);
    assert.deepEqual(del.prevKvs.map((kv) => kv.value.toString()).sort(), ['2', '3']);
    assert.equal((await c.range({ key: b('rt/a') })).kvs.length, 0);
  });

  test('txn: compare and swap, both branches, nested responses', async () => {
    await c.put({ key: b('tx/k'), value: b('old') });
    const ok = await c.txn({
      compare: [{ result: 'EQUAL', target: 'VALUE', key: b('tx/k'), value: b('old') }],
      success: [{ requestPut: { key: b('tx/k'), value: b('new'), prevKv: true } }, { requestRange: { key: b('tx/k') } }],
      failure: [{ requestRange: { key: b('tx/k') } }],
    });
    assert.equal(ok.succeeded, true);
    assert.equal(ok.responses[0]!.response, 'responsePut');
    assert.equal(ok.responses[0]!.responsePut?.prevKv?.value.toString(), 'old');
    assert.equal(ok.responses[1]!.responseRange?.kvs[0]!.value.toString(), 'new');
    const no = await c.txn({
      compare: [{ result: 'EQUAL', target: 'VERSION', key: b('tx/k'), version: 0 }],
      success: [{ requestPut: { key: b('tx/k'), value: b('never') } }],
      failure: [{ requestRange: { key: b('tx/k') } }],
    });
    assert.equal(no.succeeded, false);
    assert.equal(no.responses[0]!.response, 'responseRange');
    // version 0 written explicitly: "the key does not exist" compares true for a missing key.
    const created = await c.txn({ compare: [{ result: 'EQUAL', target: 'VERSION', key: b('tx/none'), version: 0 }], success: [], failure: [] });
    assert.equal(created.succeeded, true);
  });

  test('leases: grant with our ID, time to live with keys, revoke deletes the keys', async () => {
    const id = Date.now() * 2048 + 7;
    const grant = await c.leaseGrant(30, id);
    assert.equal(grant.ID, id);
    assert.equal(grant.TTL, 30);
    await c.put({ key: b('ls/k'), value: b('v'), lease: id });
    assert.equal((await c.range({ key: b('ls/k') })).kvs[0]!.lease, id);
    const ttl = await c.leaseTimeToLive(id, { keys: true });
    assert.equal(ttl.ID, id);
    assert.equal(ttl.grantedTTL, 30);
    assert.ok(ttl.TTL > 0 && ttl.TTL <= 30, String(ttl.TTL));
    assert.deepEqual(ttl.keys.map(String), ['ls/k']);
    await assert.rejects(c.leaseGrant(30, id), (err: unknown) => err instanceof V3RpcError && /lease already exists/.test(err.details));
    await c.leaseRevoke(id);
    assert.equal((await c.leaseTimeToLive(id)).TTL, -1);
    assert.equal((await c.range({ key: b('ls/k') })).kvs.length, 0);
    await assert.rejects(c.leaseRevoke(id), (err: unknown) => {
      assert.ok(err instanceof V3RpcError);
      assert.equal(err.code, 'ERR_ETCD_PROXY_V3_RPC');
      assert.equal(err.grpcCode, 5); // NOT_FOUND
      assert.equal(err.endpoint, m.clientUrl);
      assert.equal(err.method, 'LeaseRevoke');
      assert.match(err.message, /etcd LeaseRevoke on http:\/\/127\.0\.0\.1:\d+: etcdserver: requested lease not found \(gRPC NOT_FOUND\)/);
      return true;
    });
  });

  test('memberList and status: 64-bit IDs as exact decimal strings', async () => {
    const list = await c.memberList();
    assert.equal(list.members.length, 1);
    const me = list.members[0]!;
    assert.match(me.ID, /^\d+$/);
    assert.deepEqual(me.clientURLs, [m.clientUrl]);
    assert.deepEqual(me.peerURLs, [m.peerUrl]);
    assert.equal(me.name, m.name);
    const status = await c.status(m.clientUrl);
    assert.equal(status.header.memberId, me.ID);
    assert.equal(status.leader, me.ID);
    assert.match(status.version, /^3\.\d+\.\d+/);
    assert.match(status.raftIndex, /^\d+$/);
    assert.equal(typeof status.dbSize, 'string');
  });

  test('compact: reads before the compacted revision fail with a V3RpcError', async () => {
    const first = await c.put({ key: b('cp/k'), value: b('1') });
    const second = await c.put({ key: b('cp/k'), value: b('2') });
    await c.compact(second.header.revision);
    await assert.rejects(c.range({ key: b('cp/k'), revision: first.header.revision }), (err: unknown) => err instanceof V3RpcError && /compacted/.test(err.details));
  });

  test('a call aborted by its signal rejects with CANCELLED; no endpoint at all is UNAVAILABLE, not sent', async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(c.range({ key: b('x') }, { signal: ac.signal }), (err: unknown) => err instanceof V3RpcError && err.grpcCode === 1);
    const ac2 = new AbortController();
    const pending = c.range({ key: b('x') }, { signal: ac2.signal });
    ac2.abort();
    await assert.rejects(pending, (err: unknown) => err instanceof V3RpcError && err.grpcCode === 1);
    const empty = client(balancerOf([]));
    await assert.rejects(empty.put({ key: b('x'), value: b('y') }), (err: unknown) => err instanceof V3RpcError && err.grpcCode === 14 && !err.sent && err.endpoint === undefined);
  });

  test('watch stream: created, events with prevKv, cancel', async () => {
    const stream = c.openWatchStream();
    assert.equal(stream.endpoint, m.clientUrl);
    const errors: Error[] = [];
    const got: WatchResponse[] = [];
    stream.on('error', (e) => errors.push(e));
    stream.on('response', (r) => got.push(r));
    stream.create({ key: b('wt/'), rangeEnd: b('wt0'), prevKv: true, watchId: 7 });
    await eventually(() => got.length === 1, 5000, 'the created response');
    assert.equal(got[0]!.created, true);
    assert.equal(got[0]!.watchId, 7);
    const first = await c.put({ key: b('wt/a'), value: b('1') });
    const second = await c.put({ key: b('wt/a'), value: b('2') });
    await c.deleteRange({ key: b('wt/a') });
    const events = (): string[][] => got.flatMap((r) => r.events.map((e) => [e.type, e.kv.key.toString(), e.kv.value.toString(), e.prevKv?.value.toString() ?? '-', String(r.watchId)]));
    await eventually(() => events().length === 3, 5000, 'three events');
    assert.deepEqual(events(), [
      ['PUT', 'wt/a', '1', '-', '7'],
      ['PUT', 'wt/a', '2', '1', '7'],
      ['DELETE', 'wt/a', '', '2', '7'],
    ]);
    assert.deepEqual(got.filter((r) => r.events.length > 0).map((r) => r.events[0]!.kv.modRevision).slice(0, 2), [first.header.revision, second.header.revision]);
    stream.cancel(7);
    await eventually(() => got.some((r) => r.canceled && r.watchId === 7), 5000, 'the canceled response');
    stream.close();
    assert.deepEqual(errors, []);
    assert.throws(() => stream.create({ key: b('x'), watchId: 0 }), /watchId/);
  });

  test('one TCP connection to the member, shared by concurrent calls of every service and the watch streams; close() leaves nothing', async () => {
    const url = JSON.stringify(m.clientUrl);
    const { exitCode, out, exitAfterClosedMs } = await runChild(`
      import { EndpointBalancer } from ${srcFile('balancer/endpoint-balancer.ts')};
      import { V3Client } from ${srcFile('v3-backend/v3-client.ts')};
      ${CONNECTIONS_TO}
      const b = (s) => Buffer.from(s);
      const balancer = new EndpointBalancer({ endpoints: [${url}], leaderWrites: false });
      const c = new V3Client({ balancer });
      const streams = [c.openWatchStream(), c.openWatchStream()];
      await Promise.all(streams.map((s, i) => new Promise((resolve) => { s.once('response', resolve); s.create({ key: b('conn/' + i), watchId: 1 }); })));
      await Promise.all([
        ...Array.from({ length: 50 }, (_, i) => c.range({ key: b('conn/' + i) }, { serializable: i % 2 === 0 })),
        ...Array.from({ length: 20 }, (_, i) => c.put({ key: b('conn/' + i), value: b('v') })),
        c.leaseTimeToLive(1),
        c.memberList(),
        c.status(${url}),
        c.txn({ compare: [], success: [{ requestRange: { key: b('conn/1') } }], failure: [] }),
      ]);
      console.log('open ' + await connectionsTo(${m.clientPort}));
      c.close();
      balancer.close();
      console.log('closed');
      for (let i = 0; i < 40 && (await connectionsTo(${m.clientPort})) > 0; i++) await new Promise((r) => setTimeout(r, 25));
      console.log('after ' + await connectionsTo(${m.clientPort}));
    `);
    assert.equal(exitCode, 0, `the child did not exit by itself: ${out}`);
    assert.match(out, /^open 1$/m, out);
    assert.match(out, /^after 0$/m, out);
    assert.ok(exitAfterClosedMs < 2000, `exited ${exitAfterClosedMs} ms after close(): ${out}`);
  });

  test('close() leaves nothing: a process that used every kind of call exits by itself at once', async () => {
    const { exitCode, out, exitAfterClosedMs } = await runChild(`
      import { EndpointBalancer } from ${srcFile('balancer/endpoint-balancer.ts')};
      import { V3Client } from ${srcFile('v3-backend/v3-client.ts')};
      const balancer = new EndpointBalancer({ endpoints: [${JSON.stringify(m.clientUrl)}], leaderWrites: false });
      const c = new V3Client({ balancer });
      await c.put({ key: Buffer.from('child'), value: Buffer.from('1') });
      await c.range({ key: Buffer.from('child') });
      await c.leaseGrant(5, 0);
      const s = c.openWatchStream();
      s.create({ key: Buffer.from('child'), watchId: 1 });
      await new Promise((resolve) => s.once('response', resolve));
      // a call still in flight when the client closes
      const pending = c.range({ key: Buffer.from('child') }).catch((e) => console.log('pending: ' + e.grpcCode));
      c.close();
      balancer.close();
      console.log('closed');
      await pending;
    `);
    assert.equal(exitCode, 0, `the child did not exit by itself: ${out}`);
    assert.match(out, /^closed$/m, out);
    assert.ok(exitAfterClosedMs < 1000, `exited ${exitAfterClosedMs} ms after close(): ${out}`);
  });
});

describe('V3Client on a 3-member v3-only cluster: leader writes, failover, watch errors', { skip: skipWithoutEtcd }, () => {
  let members: LocalEtcd[];
  before(async () => {
    members = await cluster(3, { enableV2: false });
  });
  after(cleanup);

  async function leaderOf(c: V3Client, among: readonly LocalEtcd[]): Promise<LocalEtcd> {
    const s = await c.status(among[0]!.clientUrl);
    for (const m of among) if ((await c.status(m.clientUrl)).header.memberId === s.leader) return m;
    throw new Error('no leader found');
  }

  test('a txn write goes to the leader (found by Maintenance.Status), reads spread', async () => {
    const c = client(balancerOf(members.map((m) => m.clientUrl)));
    const leader = await leaderOf(c, members);
    const before = await Promise.all(members.map((m) => grpcStarted(m, 'Txn')));
    for (let i = 0; i < 5; i++) {
      const res = await c.txn({ compare: [], success: [{ requestPut: { key: b(`lw/${i}`), value: b('v') } }], failure: [] });
      assert.equal(res.succeeded, true);
      assert.equal(c.lastEndpoint, leader.clientUrl);
    }
    const afterCounts = await Promise.all(members.map((m) => grpcStarted(m, 'Txn')));
    assert.deepEqual(
      afterCounts.map((n, i) => n - before[i]!),
      members.map((m) => (m === leader ? 5 : 0)),
    );
    // A read-only txn is a read: it may go anywhere.
    const used = new Set<string>();
    for (let i = 0; i < 30; i++) {
      await c.txn({ compare: [], success: [{ requestRange: { key: b('lw/0'), serializable: true } }], failure: [] });
      used.add(c.lastEndpoint!);
    }
    assert.ok(used.size > 1, `read-only txns all went to ${[...used].join(', ')}`);
  });

  test('a read moves on when its first member is frozen (SIGSTOP); the member is reported down', async () => {
    const probe = client(balancerOf(members.map((m) => m.clientUrl)));
    const leader = await leaderOf(probe, members);
    const victim = members.find((m) => m !== leader)!;
    const balancer = balancerOf(members.map((m) => m.clientUrl), () => victim.clientUrl);
    const c = client(balancer, { callTimeout: 1000, dialTimeout: 500 });
    await c.put({ key: b('fr/k'), value: b('v') });
    await eventually(async () => (await probe.range({ key: b('fr/k') }, { serializable: true })).kvs.length === 1 && (await Promise.all(members.map((m) => probe.status(m.clientUrl)))).every((s, _, all) => s.raftAppliedIndex === all[0]!.raftAppliedIndex), 3000, 'every member to apply the write');
    assert.equal((await c.range({ key: b('fr/k') }, { serializable: true })).kvs.length, 1);
    assert.equal(c.lastEndpoint, victim.clientUrl);
    const downs: string[] = [];
    balancer.on('endpointDown', (e) => downs.push(e.url));
    onCleanup(() => victim.signal('SIGCONT'));
    try {
      await freeze(victim);
      const started = Date.now();
      const res = await c.range({ key: b('fr/k') });
      assert.equal(res.kvs[0]!.value.toString(), 'v');
      assert.notEqual(c.lastEndpoint, victim.clientUrl);
      assert.ok(Date.now() - started < 2500, `took ${Date.now() - started} ms`);
      assert.deepEqual(downs, [victim.clientUrl]);
    } finally {
      victim.signal('SIGCONT');
    }
  });

  test('a watch stream on a frozen member (SIGSTOP) fails once the keepalive ping goes unanswered', async () => {
    const probe = client(balancerOf(members.map((m) => m.clientUrl)));
    const leader = await leaderOf(probe, members);
    const victim = members.find((m) => m !== leader)!;
    const balancer = balancerOf(members.map((m) => m.clientUrl), () => victim.clientUrl);
    const c = client(balancer, { keepaliveTime: 5000, keepaliveTimeout: 1000 });
    const stream = c.openWatchStream();
    assert.equal(stream.endpoint, victim.clientUrl);
    const errors: V3RpcError[] = [];
    stream.on('error', (e) => errors.push(e as V3RpcError));
    stream.create({ key: b('fz/k'), watchId: 1 });
    assert.equal((await nextResponse(stream)).created, true);
    onCleanup(() => victim.signal('SIGCONT'));
    try {
      await freeze(victim);
      const started = Date.now();
      await eventually(() => errors.length > 0, 10000, 'the watch stream on the frozen member to fail');
      assert.ok(Date.now() - started < 8000, `took ${Date.now() - started} ms`);
      assert.equal(errors[0]!.grpcCode, 14);
      assert.equal(balancer.endpoints.find((e) => e.url === victim.clientUrl)!.state, 'down');
    } finally {
      victim.signal('SIGCONT');
    }
    assert.equal(errors.length, 1);
  });

  test('a write that left is never re-sent: a frozen leader gives DEADLINE_EXCEEDED and no other member sees it', async () => {
    const probe = client(balancerOf(members.map((m) => m.clientUrl)));
    const leader = await leaderOf(probe, members);
    const c = client(balancerOf(members.map((m) => m.clientUrl)), { callTimeout: 1000 });
    await c.put({ key: b('nr/warm'), value: b('v') });
    assert.equal(c.lastEndpoint, leader.clientUrl);
    const others = members.filter((m) => m !== leader);
    const putsBefore = await Promise.all(others.map((m) => grpcStarted(m, 'Put')));
    onCleanup(() => leader.signal('SIGCONT'));
    try {
      await freeze(leader);
      await assert.rejects(c.put({ key: b('nr/once'), value: b('1') }), (err: unknown) => {
        assert.ok(err instanceof V3RpcError, String(err));
        assert.equal(err.grpcCode, 4); // DEADLINE_EXCEEDED
        assert.equal(err.endpoint, leader.clientUrl);
        assert.equal(err.sent, true);
        return true;
      });
      assert.deepEqual(await Promise.all(others.map((m) => grpcStarted(m, 'Put'))), putsBefore);
    } finally {
      leader.signal('SIGCONT');
    }
    // The cluster settles (maybe with another leader) before the next test.
    await eventually(async () => {
      try {
        await probe.put({ key: b('nr/after'), value: b('x') });
        return true;
      } catch {
        return false;
      }
    }, 15000, 'the cluster to take writes again');
  });

  test('a killed member: its watch stream emits one error, a write that could not connect goes to another member', async () => {
    const probe = client(balancerOf(members.map((m) => m.clientUrl)));
    const leader = await leaderOf(probe, members);
    const balancer = balancerOf(members.map((m) => m.clientUrl), () => leader.clientUrl);
    const c = client(balancer, { callTimeout: 5000 });
    await c.put({ key: b('kl/k'), value: b('v') });
    assert.equal(c.lastEndpoint, leader.clientUrl);
    // Another client that knows the leader and is connected to it; nothing will tell its balancer of the kill.
    const writerBalancer = balancerOf(members.map((m) => m.clientUrl));
    const writer = client(writerBalancer, { callTimeout: 5000 });
    await writer.put({ key: b('kl/w'), value: b('v') });
    assert.equal(writer.lastEndpoint, leader.clientUrl);
    const writerDowns: string[] = [];
    writerBalancer.on('endpointDown', (e) => writerDowns.push(e.url));
    const stream = c.openWatchStream();
    assert.equal(stream.endpoint, leader.clientUrl);
    const errors: V3RpcError[] = [];
    let ended = 0;
    stream.on('error', (e) => errors.push(e as V3RpcError));
    stream.on('end', () => ended++);
    stream.create({ key: b('kl/k'), watchId: 1 });
    assert.equal((await nextResponse(stream)).created, true);
    const downs: string[] = [];
    balancer.on('endpointDown', (e) => downs.push(e.url));

    const oldLeaderId = (await probe.status(leader.clientUrl)).header.memberId;
    leader.signal('SIGKILL');
    await leader.exited;
    await eventually(() => errors.length > 0, 5000, 'the watch stream to fail');
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof V3RpcError);
    assert.equal(errors[0].grpcCode, 14); // UNAVAILABLE
    assert.equal(errors[0].endpoint, leader.clientUrl);
    assert.equal(ended, 0);
    assert.deepEqual(downs, [leader.clientUrl]);

    // The survivors elect a leader; the client's write plan still lists the dead leader first
    // (the fixed strategy), where the write cannot connect, so it goes on.
    const survivors = members.filter((m) => m !== leader);
    await eventually(async () => {
      const s = await Promise.all(survivors.map((m) => probe.status(m.clientUrl).catch(() => undefined)));
      return s.every((x) => x !== undefined && x.leader !== '0' && x.leader !== oldLeaderId && x.leader === s[0]!.leader);
    }, 15000, 'a new leader');
    // `writer` still sends writes to the dead leader first: it cannot connect there, so the write goes on, once.
    const putsBefore = await Promise.all(survivors.map((m) => grpcStarted(m, 'Put')));
    const res = await writer.put({ key: b('kl/after'), value: b('w') });
    assert.ok(res.header.revision > 0);
    assert.notEqual(writer.lastEndpoint, leader.clientUrl);
    assert.deepEqual(writerDowns, [leader.clientUrl]);
    const putsAfter = await Promise.all(survivors.map((m) => grpcStarted(m, 'Put')));
    assert.equal(putsAfter.reduce((a, n) => a + n, 0) - putsBefore.reduce((a, n) => a + n, 0), 1, 'the write was sent once');
    // A read whose first choice is the dead member moves on too.
    const readerBalancer = balancerOf(members.map((m) => m.clientUrl), () => leader.clientUrl);
    const reader = client(readerBalancer);
    assert.equal((await reader.range({ key: b('kl/after') })).kvs[0]!.value.toString(), 'w');
    assert.notEqual(reader.lastEndpoint, leader.clientUrl);
    assert.equal(readerBalancer.endpoints.find((e) => e.url === leader.clientUrl)!.state, 'down');
    // A new watch stream opens elsewhere (the dead member is down in the balancer).
    const again = c.openWatchStream();
    assert.notEqual(again.endpoint, leader.clientUrl);
    again.create({ key: b('kl/k'), watchId: 1 });
    assert.equal((await nextResponse(again)).created, true);
    again.close();
  });

  test('a read with no reachable member at all fails with the last error; channels of dropped endpoints close', async () => {
    const port = await freePort();
    const dead = `http://127.0.0.1:${port}`;
    const balancer = balancerOf([dead]);
    const c = client(balancer, { dialTimeout: 300 });
    await assert.rejects(c.range({ key: b('x') }), (err: unknown) => err instanceof V3RpcError && err.grpcCode === 14 && err.endpoint === dead && !err.sent);
    await assert.rejects(c.put({ key: b('x'), value: b('y') }), (err: unknown) => err instanceof V3RpcError && err.grpcCode === 14 && !err.sent);
    const live = members.find((m) => m.child.exitCode === null && m.child.signalCode === null)!;
    balancer.setEndpoints([live.clientUrl]);
    await c.range({ key: b('x') }, { serializable: true });
    assert.equal(c.lastEndpoint, live.clientUrl);
    balancer.setEndpoints([members.find((m) => m !== live && m.child.exitCode === null && m.child.signalCode === null)!.clientUrl]);
    await c.range({ key: b('x') }, { serializable: true });
    // The channel to `live` was closed when the endpoint list changed.
    assert.equal((c as unknown as { members: Map<string, unknown> }).members.has(live.clientUrl), false);
  });
});

describe('V3Client with v3 auth enabled on the member', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  before(async () => {
    m = await member({ enableV2: false });
    for (const args of [['user', 'add', 'root:pw'], ['auth', 'enable']]) {
      const r = await etcdctlV3(m.clientUrl, args);
      assert.equal(r.code, 0, r.stderr);
    }
  });
  after(cleanup);

  test('with username/password: calls and watches work; without: a V3RpcError; wrong password: a V3RpcError', async () => {
    const c = client(balancerOf([m.clientUrl]), { username: 'root', password: 'pw' });
    await c.put({ key: b('au/k'), value: b('v') });
    assert.equal((await c.range({ key: b('au/k') })).kvs[0]!.value.toString(), 'v');
    const [x, y] = await Promise.all([c.range({ key: b('au/k') }), c.leaseGrant(10, 0)]);
    assert.equal(x.count, 1);
    assert.ok(y.ID > 0);
    assert.equal(c.authentications, 1);
    const stream = c.openWatchStream();
    stream.create({ key: b('au/k'), watchId: 1 });
    assert.equal((await nextResponse(stream)).created, true);
    const ev = nextResponse(stream);
    await c.put({ key: b('au/k'), value: b('w') });
    assert.equal((await ev).events[0]!.kv.value.toString(), 'w');
    stream.close();

    const anonymous = client(balancerOf([m.clientUrl]));
    await assert.rejects(anonymous.range({ key: b('au/k') }), (err: unknown) => err instanceof V3RpcError && /user name is empty/.test(err.details));
    const wrong = client(balancerOf([m.clientUrl]), { username: 'root', password: 'nope' });
    await assert.rejects(wrong.range({ key: b('au/k') }), (err: unknown) => err instanceof V3RpcError && err.method === 'Authenticate' && /authentication failed/.test(err.details));
  });

  test('a token etcd no longer knows (auth disabled and enabled again) is replaced once, transparently', async () => {
    const c = client(balancerOf([m.clientUrl]), { username: 'root', password: 'pw' });
    await c.put({ key: b('au/re'), value: b('1') });
    assert.equal(c.authentications, 1);
    for (const args of [['--user', 'root:pw', 'auth', 'disable'], ['auth', 'enable']]) {
      const r = await etcdctlV3(m.clientUrl, args);
      assert.equal(r.code, 0, r.stderr);
    }
    await c.put({ key: b('au/re'), value: b('2') });
    assert.equal((await c.range({ key: b('au/re') })).kvs[0]!.value.toString(), '2');
    assert.equal(c.authentications, 2);
  });

  test('options are checked eagerly', () => {
    const balancer = balancerOf([m.clientUrl]);
    assert.throws(() => new V3Client({ balancer, username: 'root' }), /invalid option password: username is given without password/);
    assert.throws(() => new V3Client({ balancer, dialTimeout: 0 }), /invalid option dialTimeout/);
    assert.throws(() => new V3Client({ balancer: {} as EndpointBalancer }), /invalid option balancer/);
  });
});

describe('V3Client to an https:// member that requires client certificates', { skip: skipWithoutEtcd }, () => {
  let certs: TlsFixture;
  let m: LocalEtcd;
  before(async () => {
    certs = await makeTlsFixture(await tempDir());
    const s = certs.server;
    m = await member({
      enableV2: false,
      scheme: 'https',
      waitHealthy: false,
      extraArgs: ['--cert-file', s.cert, '--key-file', s.key, '--trusted-ca-file', certs.ca, '--client-cert-auth', '--peer-cert-file', s.cert, '--peer-key-file', s.key, '--peer-trusted-ca-file', certs.ca],
    });
  });
  after(cleanup);

  test('with the CA and a client certificate: calls and watches work over TLS; without a certificate or with another CA: a V3RpcError', async () => {
    const tls = { trustedCaFile: certs.ca, certFile: certs.client.cert, keyFile: certs.client.key };
    const c = client(balancerOf([m.clientUrl]), { tls, callTimeout: 2000 });
    await eventually(async () => (await c.status(m.clientUrl).catch(() => undefined)) !== undefined, 20000, 'the TLS member to answer');
    await c.put({ key: b('tls/k'), value: b('v') });
    assert.equal((await c.range({ key: b('tls/k') })).kvs[0]!.value.toString(), 'v');
    const stream = c.openWatchStream();
    stream.create({ key: b('tls/k'), watchId: 1 });
    assert.equal((await nextResponse(stream)).created, true);
    stream.close();

    const noCert = client(balancerOf([m.clientUrl]), { tls: { trustedCaFile: certs.ca }, dialTimeout: 2000 });
    await assert.rejects(noCert.range({ key: b('tls/k') }), (err: unknown) => err instanceof V3RpcError && err.grpcCode === 14);
    const otherCa = client(balancerOf([m.clientUrl]), { tls: { trustedCaFile: certs.otherCa, certFile: certs.client.cert, keyFile: certs.client.key }, dialTimeout: 2000 });
    await assert.rejects(otherCa.range({ key: b('tls/k') }), (err: unknown) => err instanceof V3RpcError && err.grpcCode === 14);
    const skip = client(balancerOf([m.clientUrl]), { tls: { insecureSkipVerify: true, certFile: certs.client.cert, keyFile: certs.client.key } });
    assert.equal((await skip.range({ key: b('tls/k') })).count, 1);
  });
});
