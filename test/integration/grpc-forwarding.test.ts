/**
 * etcd v3 clients through the proxy's own port (issue 17), against a real
 * etcd member: etcdctl v3, the etcd3 package and a plain @grpc/grpc-js
 * client. The gRPC calls are forwarded as HTTP/2 streams; HTTP/1.1 (v2) is
 * served on the same port at the same time.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { createProxy, InvalidOptionError } from '../../src/index.js';
import type { GrpcFinishedEvent, GrpcForwardedEvent } from '../../src/index.js';
import { cleanup, eventually, form, http, member, onCleanup, proxy, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';
import { ctl3, etcdGrpc, grpc, memberMetric, unary } from './grpc-client.js';

describe('etcd v3 clients on the proxy port (gRPC forwarded to the member)', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  let p: Awaited<ReturnType<typeof proxy>>;
  let hostPort: string;
  const forwarded: GrpcForwardedEvent[] = [];
  const finished: GrpcFinishedEvent[] = [];

  before(async () => {
    m = await member();
    p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() });
    hostPort = new URL(p.url).host;
    p.grpc!.on('forwarded', (e) => forwarded.push(e));
    p.grpc!.on('finished', (e) => finished.push(e));
  });
  after(cleanup);

  it("the article's last command works: ETCDCTL_API=3 etcdctl --endpoints=<proxy> get key2 returns the value", async () => {
    assert.equal((await ctl3(m.clientUrl, ['put', 'key2', 'sssssssssss'])).code, 0);
    const res = await ctl3(p.url, ['get', 'key2']);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, 'key2\nsssssssssss\n');
  });

  it('etcdctl v3 put, get --prefix, del and txn go through the proxy to the cluster', async () => {
    assert.equal((await ctl3(p.url, ['put', 'fruit/apple', 'red'])).stdout, 'OK\n');
    assert.equal((await ctl3(p.url, ['put', 'fruit/banana', 'yellow'])).stdout, 'OK\n');
    // Written in the cluster: the member itself has them.
    assert.equal((await ctl3(m.clientUrl, ['get', 'fruit/apple', '--print-value-only'])).stdout, 'red\n');
    assert.equal((await ctl3(p.url, ['get', 'fruit/', '--prefix'])).stdout, 'fruit/apple\nred\nfruit/banana\nyellow\n');
    const txn = await ctl3(p.url, ['txn'], { input: 'value("fruit/apple") = "red"\n\nput fruit/apple green\n\nput fruit/apple blue\n\n' });
    assert.equal(txn.code, 0, txn.stderr);
    assert.equal(txn.stdout, 'SUCCESS\n\nOK\n');
    assert.equal((await ctl3(m.clientUrl, ['get', 'fruit/apple', '--print-value-only'])).stdout, 'green\n');
    assert.equal((await ctl3(p.url, ['del', 'fruit/', '--prefix'])).stdout, '2\n');
    assert.equal((await ctl3(m.clientUrl, ['get', 'fruit/', '--prefix'])).stdout, '');
  });

  it('etcdctl v3 watch gets the events written through the proxy', async () => {
    const put = await ctl3(p.url, ['put', 'watched', 'one', '-w', 'json']);
    const revision = (JSON.parse(put.stdout) as { header: { revision: number } }).header.revision;
    await ctl3(p.url, ['put', 'watched', 'two']);
    const child = spawn('etcdctl', [`--endpoints=${p.url}`, 'watch', 'watched', `--rev=${revision}`], { env: { ...process.env, ETCDCTL_API: '3' } });
    onCleanup(() => child.kill('SIGKILL'));
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    await eventually(() => out.includes('PUT\nwatched\ntwo\n'), 5000, 'the watch to print both events');
    assert.equal(out, 'PUT\nwatched\none\nPUT\nwatched\ntwo\n');
    await ctl3(p.url, ['put', 'watched', 'three']);
    await eventually(() => out.endsWith('PUT\nwatched\nthree\n'), 5000, 'the watch to print a later event');
    child.kill('SIGTERM');
  });

  it('etcdctl v3 lease grant, keep-alive --once, timetolive and revoke; member list and endpoint status', async () => {
    const grant = await ctl3(p.url, ['lease', 'grant', '30']);
    const id = /lease ([0-9a-f]+) granted with TTL\(30s\)/.exec(grant.stdout)?.[1];
    assert.ok(id !== undefined, grant.stdout + grant.stderr);
    assert.equal((await ctl3(p.url, ['put', 'leased', 'x', `--lease=${id}`])).code, 0);
    assert.match((await ctl3(p.url, ['lease', 'keep-alive', '--once', id])).stdout, new RegExp(`lease ${id} keepalived with TTL\\(30\\)`));
    assert.match((await ctl3(m.clientUrl, ['lease', 'timetolive', id])).stdout, new RegExp(`lease ${id} granted with TTL\\(30s\\)`));
    assert.match((await ctl3(p.url, ['lease', 'revoke', id])).stdout, new RegExp(`lease ${id} revoked`));
    assert.equal((await ctl3(m.clientUrl, ['get', 'leased'])).stdout, '', 'the revoked lease took its key');

    const list = await ctl3(p.url, ['member', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`, started, ${m.name}, ${m.peerUrl}, ${m.clientUrl}, false`));
    // etcdctl 3.4 sends a URL endpoint's whole URL as the HTTP/2 :authority of its per-endpoint
    // calls (endpoint status, hashkv, defrag), which node:http2 refuses; host:port is what works.
    const status = await ctl3(hostPort, ['endpoint', 'status']);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`^${hostPort}, [0-9a-f]+, 3\\.\\d+\\.\\d+, `));
  });

  it('the etcd3 client: CRUD through the proxy', async () => {
    const client = new Etcd3({ hosts: p.url });
    onCleanup(() => client.close());
    await client.put('crud/a').value('1');
    await client.put('crud/b').value('2');
    assert.equal(await client.get('crud/a').string(), '1');
    assert.deepEqual(await client.getAll().prefix('crud/').strings(), { 'crud/a': '1', 'crud/b': '2' });
    await client.put('crud/a').value('3');
    assert.equal(await client.get('crud/a').string(), '3');
    await client.delete().key('crud/a');
    assert.equal(await client.get('crud/a').string(), null);
    assert.equal(await client.getAll().prefix('crud/').count(), 1);
    const events = forwarded.filter((e) => e.method === '/etcdserverpb.KV/Put');
    assert.ok(events.length >= 3 && events.every((e) => e.endpoint === m.clientUrl && e.attempts === 1 && !e.stream));
    assert.ok(finished.some((e) => e.method === '/etcdserverpb.KV/DeleteRange' && e.grpcStatus === 0 && e.endpoint === m.clientUrl));
  });

  it('the etcd3 client: a watch through the proxy receives 1,000 events in order', async () => {
    const client = new Etcd3({ hosts: p.url });
    onCleanup(() => client.close());
    const watcher = await client.watch().prefix('ev/').create();
    const seen: string[] = [];
    watcher.on('put', (kv) => seen.push(kv.value.toString()));
    for (let i = 0; i < 1000; i++) await client.put(`ev/${i % 7}`).value(String(i));
    await eventually(() => seen.length >= 1000, 15000, '1,000 events');
    assert.deepEqual(seen, Array.from({ length: 1000 }, (_, i) => String(i)));
    await watcher.cancel();
    assert.ok(forwarded.some((e) => e.method === '/etcdserverpb.Watch/Watch' && e.stream));
  });

  it('the etcd3 client: a lease with a 2 s TTL kept alive through the proxy for 10 s keeps its key', async () => {
    const client = new Etcd3({ hosts: p.url });
    onCleanup(() => client.close());
    const lease = client.lease(2);
    let kept = 0;
    lease.on('keepaliveSucceeded', () => kept++);
    await lease.put('kept').value('alive');
    const started = Date.now();
    // The key must be there the whole time: looked at through the member itself, every 500 ms.
    while (Date.now() - started < 10000) {
      assert.equal(await client.get('kept').string(), 'alive', `lost after ${Date.now() - started} ms`);
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal((await ctl3(m.clientUrl, ['get', 'kept', '--print-value-only'])).stdout, 'alive\n');
    assert.ok(kept >= 5, `${kept} keep-alives in 10 s`);
    await lease.revoke();
    assert.equal((await ctl3(m.clientUrl, ['get', 'kept'])).stdout, '');
  });

  it('a v2 client and a v3 client on the same port at the same time', async () => {
    const client = new Etcd3({ hosts: p.url });
    onCleanup(() => client.close());
    const v2 = async (key: string): Promise<void> => {
      for (let i = 0; i < 40; i++) {
        const put = await http(`${p.url}/v2/keys/both/${key}`, { method: 'PUT', body: form({ value: String(i) }) });
        assert.ok(put.status === 200 || put.status === 201, put.body);
        const get = await http(`${p.url}/v2/keys/both/${key}`);
        assert.equal((get.json() as { node: { value: string } }).node.value, String(i));
      }
    };
    const v3 = async (key: string): Promise<void> => {
      for (let i = 0; i < 40; i++) {
        await client.put(`both/${key}`).value(String(i));
        assert.equal(await client.get(`both/${key}`).string(), String(i));
      }
    };
    await Promise.all([v2('a'), v3('a'), v2('b'), v3('b')]);
    // Each API wrote its own store on the member.
    assert.equal(((await http(`${m.clientUrl}/v2/keys/both/a`)).json() as { node: { value: string } }).node.value, '39');
    assert.equal((await ctl3(m.clientUrl, ['get', 'both/b', '--print-value-only'])).stdout, '39\n');
  });

  it("a member's error status and message come back untouched (trailers-only and after a response)", async () => {
    const g = etcdGrpc(p.url);
    onCleanup(() => g.close());
    const empty = await unary(g.kv, 'Range', { key: Buffer.alloc(0) });
    assert.equal(empty.ok, false);
    if (!empty.ok) {
      assert.equal(empty.error.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(empty.error.details, 'etcdserver: key is not provided');
    }
    const future = await unary(g.kv, 'Range', { key: Buffer.from('k'), revision: 1e9 });
    assert.equal(future.ok, false);
    if (!future.ok) {
      assert.equal(future.error.code, grpc.status.OUT_OF_RANGE);
      assert.equal(future.error.details, 'etcdserver: mvcc: required revision is a future revision');
    }
    const ok = await unary<{ header: { member_id: string } }>(g.kv, 'Range', { key: Buffer.from('k') });
    assert.ok(ok.ok);
  });

  it("a client's cancellation reaches the member: its watch stream ends there", async () => {
    const g = etcdGrpc(p.url);
    onCleanup(() => g.close());
    const before = await memberMetric(m.clientUrl, 'etcd_debugging_mvcc_watch_stream_total');
    const call = (g.watch.Watch as () => grpc.ClientDuplexStream<object, { created: boolean }>)();
    call.on('error', () => undefined);
    const created = new Promise<void>((resolve) => call.on('data', (res) => res.created && resolve()));
    call.write({ create_request: { key: Buffer.from('cancel-me') } });
    await created;
    await eventually(async () => (await memberMetric(m.clientUrl, 'etcd_debugging_mvcc_watch_stream_total')) === before + 1, 5000, 'the watch stream on the member');
    call.cancel();
    await eventually(async () => (await memberMetric(m.clientUrl, 'etcd_debugging_mvcc_watch_stream_total')) === before, 5000, "the member's watch stream to end");
  });

  it('a slow watcher does not make the proxy buffer without bound: flow control holds the member back, and nothing is lost', async () => {
    const g = etcdGrpc(p.url);
    onCleanup(() => g.close());
    const direct = etcdGrpc(m.clientUrl);
    onCleanup(() => direct.close());
    type WatchResponse = { created: boolean; events: Array<{ kv: { value: Buffer } }> };
    const call = (g.watch.Watch as () => grpc.ClientDuplexStream<object, WatchResponse>)();
    call.on('error', () => undefined);
    const got: number[] = [];
    let created = false;
    call.on('data', (res) => {
      if (res.created) created = true;
      for (const e of res.events) got.push(e.kv.value.readUInt32BE(0));
    });
    call.write({ create_request: { key: Buffer.from('bp/'), range_end: Buffer.from('bp0') } });
    await eventually(() => created, 5000, 'the watch to be created');
    // The client stops reading: only HTTP/2 flow control stands between the member and the proxy's memory.
    call.pause();
    const value = Buffer.alloc(64 * 1024);
    let slowSeen = false;
    for (let i = 0; i < 400; i++) {
      value.writeUInt32BE(i, 0);
      assert.ok((await unary(direct.kv, 'Put', { key: Buffer.from(`bp/${i % 10}`), value })).ok);
      if (i % 50 === 49 && (await memberMetric(m.clientUrl, 'etcd_debugging_mvcc_slow_watcher_total')) > 0) slowSeen = true;
    }
    // 25 MiB of events: far more than the windows (1 MiB a stream each way) and etcd's own buffer
    // hold, so the member must find its watcher slow, which it does only if the proxy stopped reading.
    if (!slowSeen) {
      await eventually(async () => (await memberMetric(m.clientUrl, 'etcd_debugging_mvcc_slow_watcher_total')) > 0, 5000, 'the member to find its watcher slow');
    }
    assert.ok(got.length < 200, `${got.length} events reached a client that was not reading`);
    call.resume();
    await eventually(() => got.length >= 400, 20000, `all 400 events once the client reads (got ${got.length})`);
    assert.deepEqual(got, Array.from({ length: 400 }, (_, i) => i));
    call.cancel();
  });

  it('the metrics count v3 calls under grpc-proxy\'s names', async () => {
    const text = await p.metrics.metrics();
    const line = (labels: string): number => Number(new RegExp(`^grpc_server_handled_total\\{${labels}\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    assert.ok(line('grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_code="OK"') >= 1000);
    assert.ok(line('grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Range",grpc_code="InvalidArgument"') >= 1);
    assert.ok(line('grpc_type="bidi_stream",grpc_service="etcdserverpb.Watch",grpc_method="Watch",grpc_code="Canceled"') >= 1);
    assert.match(text, /^grpc_server_started_total\{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put"\} \d+$/m);
    assert.match(text, /^grpc_server_handling_seconds_bucket\{le="0.005",grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put"\} \d+$/m);
    // v2 is still counted under etcd's proxy names.
    assert.match(text, /^etcd_proxy_requests_total\{method="PUT"\} \d+$/m);
  });

  it('close() ends an open v3 watch at once with UNAVAILABLE and the proxy stops', async () => {
    const q = await createProxy({ listenClientUrls: ['http://127.0.0.1:0'], initialCluster: `${m.name}=${m.peerUrl}`, shutdownTimeout: 5000 });
    const g = etcdGrpc(q.addresses[0]!.url);
    onCleanup(() => g.close());
    const call = (g.watch.Watch as () => grpc.ClientDuplexStream<object, { created: boolean }>)();
    const ended = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
    const created = new Promise<void>((resolve) => call.on('data', (res) => res.created && resolve()));
    call.write({ create_request: { key: Buffer.from('closing') } });
    await created;
    const started = Date.now();
    await q.close();
    assert.ok(Date.now() - started < 2000, `close() took ${Date.now() - started} ms with a v3 watch open`);
    const err = await ended;
    assert.equal(err.code, grpc.status.UNAVAILABLE);
  });
});

describe('v3 clients of a cluster with v3 auth on', { skip: skipWithoutEtcd }, () => {
  after(cleanup);

  it('the auth token (request metadata) passes through: etcdctl --user works, without it the member says no', async () => {
    const m = await member();
    for (const args of [['user', 'add', 'root', '--new-user-password=rootpw'], ['user', 'grant-role', 'root', 'root'], ['auth', 'enable']]) {
      const res = await ctl3(m.clientUrl, args);
      assert.equal(res.code, 0, `${args.join(' ')}: ${res.stderr}`);
    }
    const p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}` });
    assert.equal((await ctl3(p.url, ['--user=root:rootpw', 'put', 'authed', 'yes'])).stdout, 'OK\n');
    assert.equal((await ctl3(p.url, ['--user=root:rootpw', 'get', 'authed', '--print-value-only'])).stdout, 'yes\n');
    const anonymous = await ctl3(p.url, ['get', 'authed']);
    assert.notEqual(anonymous.code, 0);
    assert.match(anonymous.stderr, /user name is empty|permission denied/);
    const wrong = await ctl3(p.url, ['--user=root:nope', 'get', 'authed']);
    assert.match(wrong.stderr, /authentication failed, invalid user ID or password/);
  });
});

describe("v3 clients with backend 'v3' (v2 served from the v3 API)", { skip: skipWithoutEtcd }, () => {
  after(cleanup);

  it('v3 clients are forwarded too, and see the v2 tree the backend keeps under its prefix', async () => {
    const m = await member({ enableV2: false });
    const p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, backend: 'v3' });
    const put = await http(`${p.url}/v2/keys/from-v2`, { method: 'PUT', body: form({ value: 'hello' }) });
    assert.equal(put.status, 201, put.body);
    assert.equal((await ctl3(p.url, ['put', 'from-v3', 'world'])).stdout, 'OK\n');
    assert.equal((await ctl3(m.clientUrl, ['get', 'from-v3', '--print-value-only'])).stdout, 'world\n');
    const tree = await ctl3(p.url, ['get', '/v2/', '--prefix', '--keys-only']);
    assert.equal(tree.code, 0, tree.stderr);
    assert.match(tree.stdout, /from-v2/);
  });
});

describe('v3 clients through a readonly proxy', { skip: skipWithoutEtcd }, () => {
  after(cleanup);

  it('reads are forwarded, calls that change the cluster get UNIMPLEMENTED and nothing is written', async () => {
    const m = await member();
    await ctl3(m.clientUrl, ['put', 'ro', 'before']);
    const p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, mode: 'readonly' });
    assert.equal((await ctl3(p.url, ['get', 'ro', '--print-value-only'])).stdout, 'before\n');
    const put = await ctl3(p.url, ['put', 'ro', 'after']);
    assert.notEqual(put.code, 0);
    assert.match(put.stderr, /code = Unimplemented desc = etcd-v2-proxy is readonly: \/etcdserverpb.KV\/Put is not forwarded/);
    assert.equal((await ctl3(m.clientUrl, ['get', 'ro', '--print-value-only'])).stdout, 'before\n');
    // Counted as the proxy's own drop, by reason, and as handled with the proxy's status.
    const text = await p.metrics.metrics();
    assert.match(text, /^etcd_v2_proxy_grpc_dropped_total\{grpc_service="etcdserverpb.KV",grpc_method="Put",reason="readonly"\} [1-9]\d*$/m);
    assert.match(text, /^grpc_server_handled_total\{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_code="Unimplemented"\} [1-9]\d*$/m);
  });

  it('v3Clients is validated eagerly with an exact message', async () => {
    await assert.rejects(
      createProxy({ initialCluster: 'a=http://127.0.0.1:1', v3Clients: 'maybe' as 'forward' }),
      (err: unknown) => err instanceof InvalidOptionError && err.message === 'invalid option v3Clients: expected "forward" or "refuse", got "maybe"',
    );
  });
});

describe('nothing of the gRPC forwarding outlives close()', { skip: skipWithoutEtcd }, () => {
  after(cleanup);

  it('a process with a proxy, v3 calls and an open v3 watch exits by itself once the proxy and its client are closed', async () => {
    const m = await member();
    const script = fileURLToPath(new URL('./grpc-lifecycle-child.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify({ initialCluster: `${m.name}=${m.peerUrl}` })], { stdio: ['pipe', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    onCleanup(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const line = (event: string): Record<string, unknown> | undefined =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.event === event);
    await eventually(() => line('watching') !== undefined, 20000, `the child's watch (output: ${out})`);
    assert.deepEqual(line('watching'), { event: 'watching', put: true, get: true });
    child.stdin.end();
    await eventually(() => line('closed') !== undefined, 5000, 'the child to close the proxy');
    const closed = line('closed')!;
    assert.ok((closed.closeMs as number) < 1500, `close() took ${String(closed.closeMs)} ms with a v3 watch open`);
    assert.equal(closed.watchCode, grpc.status.UNAVAILABLE);
    const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running'), 5000))]);
    assert.equal(code, 0, `the child did not exit by itself within 5 s: ${out}`);
  });
});
