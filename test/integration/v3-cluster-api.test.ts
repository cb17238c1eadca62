/**
 * V3ClusterApi against real etcd: /v2/members, /v2/machines and /v2/stats/*
 * answered from a v3-only cluster's Cluster and Maintenance APIs, compared
 * with a native v2 member's answers (etcd 3.4 --enable-v2).
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { EndpointBalancer } from '../../src/balancer/endpoint-balancer.js';
import { V3ClusterApi } from '../../src/v3-backend/cluster-api.js';
import { goDuration, goTime, hexId } from '../../src/v3-backend/v2-stats.js';
import { V3Client } from '../../src/v3-backend/v3-client.js';
import { cleanup, cluster, eventually, freePort, http, member, onCleanup, skipWithoutEtcd } from './harness.js';
import type { LocalEtcd, RawResponse } from './harness.js';

/** Serves `api` on a plain node:http server at 127.0.0.1:0 (closed by `cleanup()`); other paths get 404. */
async function serveApi(api: V3ClusterApi): Promise<string> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (api.handles(path)) void api.serve(req, res, path);
    else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  onCleanup(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A V3ClusterApi (with its client and balancer) on `members`, served; all closed by `cleanup()`. */
async function apiOn(urls: readonly string[]): Promise<{ api: V3ClusterApi; client: V3Client; url: string }> {
  const balancer = new EndpointBalancer({ endpoints: urls, leaderWrites: false });
  const client = new V3Client({ balancer, dialTimeout: 500, callTimeout: 3000 });
  const api = new V3ClusterApi({ client, balancer });
  onCleanup(() => {
    api.close();
    client.close();
    balancer.close();
  });
  return { api, client, url: await serveApi(api) };
}

/** The JSON value with every leaf replaced by its type: two answers of one shape give equal results. */
function shape(v: unknown): unknown {
  if (Array.isArray(v)) return v.length === 0 ? [] : [shape(v[0])];
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, shape(x)]));
  return typeof v;
}

const JSON_HEADERS = { 'Content-Type': 'application/json' };

/** What a test compares of an answer: status, the headers native sets, body. */
function essentials(r: RawResponse): { status: number; type: unknown; allow: unknown; nosniff: unknown; clusterId: boolean; body: string } {
  return {
    status: r.status,
    type: r.headers['content-type'],
    allow: r.headers.allow,
    nosniff: r.headers['x-content-type-options'],
    clusterId: typeof r.headers['x-etcd-cluster-id'] === 'string' && /^[0-9a-f]+$/.test(r.headers['x-etcd-cluster-id']),
    body: r.body,
  };
}

describe('Go formats', () => {
  test('goDuration writes time.Duration.String()', () => {
    assert.equal(goDuration(0n), '0s');
    assert.equal(goDuration(999n), '999ns');
    assert.equal(goDuration(1_500n), '1.5µs');
    assert.equal(goDuration(1_500_000n), '1.5ms');
    assert.equal(goDuration(2_784_423_874n), '2.784423874s');
    assert.equal(goDuration(120_000_000_000n), '2m0s');
    assert.equal(goDuration(3_600_000_000_001n), '1h0m0.000000001s');
    assert.equal(goDuration(62_500_000_000n), '1m2.5s');
  });
  test('goTime writes RFC 3339 without trailing zeros; hexId writes v2 IDs', () => {
    assert.equal(goTime(new Date('2026-12-06T16:12:37.610Z')), '2026-12-06T16:12:37.61Z');
    assert.equal(goTime(new Date('2026-12-06T16:12:37.000Z')), '2026-12-06T16:12:37Z');
    assert.equal(hexId('13803658152347727308'), 'bf9071f4639c75cc');
  });
});

describe('V3ClusterApi on a v3-only cluster, compared with native v2', { skip: skipWithoutEtcd }, () => {
  let native: LocalEtcd;
  let members: LocalEtcd[];
  let api: V3ClusterApi;
  let client: V3Client;
  let url: string;
  /** One API per member (a balancer of that member alone): what each member's own MemberList says. */
  let perMember: Array<{ url: string }>;

  before(async () => {
    [native, members] = await Promise.all([member(), cluster(3, { enableV2: false })]);
    ({ api, client, url } = await apiOn(members.map((m) => m.clientUrl)));
    perMember = await Promise.all(members.map((m) => apiOn([m.clientUrl])));
  });
  after(cleanup);

  test('the members really are v3-only: /v2/members is not theirs to answer', async () => {
    assert.equal((await http(`${members[0]!.clientUrl}/v2/members`)).status, 404);
  });

  test('handles() names the paths it answers', () => {
    for (const p of ['/v2/members', '/v2/members/', '/v2/members/leader', '/v2/members/abc', '/v2/machines', '/v2/stats/self', '/v2/stats/leader', '/v2/stats/store']) {
      assert.equal(api.handles(p), true, p);
    }
    for (const p of ['/v2/keys', '/v2/membersx', '/v2/machines/', '/v2/stats', '/v2/stats/self/', '/version', '/health', '/v2/auth/users']) {
      assert.equal(api.handles(p), false, p);
    }
  });

  test('GET /v2/members: native shape, headers, every member with v2 hex IDs', async () => {
    const [mine, theirs] = await Promise.all([http(`${url}/v2/members`), http(`${native.clientUrl}/v2/members`)]);
    assert.equal(mine.status, 200);
    assert.equal(mine.headers['content-type'], theirs.headers['content-type']);
    assert.ok(mine.body.endsWith('}\n') && theirs.body.endsWith('}\n'), 'a newline after the JSON, as Go encoder writes it');
    assert.deepEqual(shape(mine.json()), shape(theirs.json()));
    const list = await client.memberList();
    assert.equal(mine.headers['x-etcd-cluster-id'], BigInt(String(list.header.clusterId)).toString(16));
    const got = (mine.json() as { members: Array<{ id: string; name: string; peerURLs: string[]; clientURLs: string[] }> }).members;
    const expected = members
      .map((m) => {
        const v3 = list.members.find((x) => x.name === m.name)!;
        return { id: BigInt(v3.ID).toString(16), name: m.name, peerURLs: [m.peerUrl], clientURLs: [m.clientUrl] };
      })
      .sort((a, b) => (BigInt(`0x${a.id}`) < BigInt(`0x${b.id}`) ? -1 : 1));
    assert.deepEqual(got, expected);
    // "/v2/members/" is the list too, as native.
    assert.deepEqual((await http(`${url}/v2/members/`)).json(), mine.json());
  });

  test('GET /v2/members/leader is the member Maintenance.Status names; lookUpLeader gives its client URLs', async () => {
    let leaderId = '0';
    await eventually(
      async () => {
        const statuses = await Promise.all(members.map((m) => client.status(m.clientUrl)));
        leaderId = statuses[0]!.leader;
        return leaderId !== '0' && statuses.every((s) => s.leader === leaderId);
      },
      10000,
      'every member to name one leader',
    );
    const leader = (await client.memberList()).members.find((m) => m.ID === leaderId)!;
    const [mine, theirs] = await Promise.all([http(`${url}/v2/members/leader`), http(`${native.clientUrl}/v2/members/leader`)]);
    assert.equal(mine.status, 200);
    assert.deepEqual(shape(mine.json()), shape(theirs.json()));
    assert.ok(mine.body.endsWith('\n'));
    assert.deepEqual(mine.json(), { id: BigInt(leaderId).toString(16), name: leader.name, peerURLs: leader.peerURLs, clientURLs: leader.clientURLs });
    const urls = await api.lookUpLeader(AbortSignal.timeout(5000));
    assert.deepEqual(urls, leader.clientURLs);
    assert.deepEqual(urls, [members.find((m) => m.name === leader.name)!.clientUrl]);
  });

  test('/v2/machines lists the client URLs as native does (sorted, ", ", text); HEAD too', async () => {
    const [mine, theirs] = await Promise.all([http(`${url}/v2/machines`), http(`${native.clientUrl}/v2/machines`)]);
    assert.equal(mine.status, 200);
    assert.equal(theirs.body, native.clientUrl);
    assert.equal(mine.headers['content-type'], theirs.headers['content-type']);
    assert.equal(mine.body, members.map((m) => m.clientUrl).sort().join(', '));
    const head = await http(`${url}/v2/machines`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    assert.equal(head.headers['content-length'], String(mine.body.length));
  });

  test('/v2/stats/self: native shape; the member asked, its name and state from v3', async () => {
    const [mine, theirs] = await Promise.all([http(`${url}/v2/stats/self`), http(`${native.clientUrl}/v2/stats/self`)]);
    assert.equal(mine.status, 200);
    assert.equal(mine.headers['content-type'], 'application/json');
    assert.ok(!mine.body.endsWith('\n') && !theirs.body.endsWith('\n'));
    assert.deepEqual(shape(mine.json()), shape(theirs.json()));
    assert.deepEqual(Object.keys(mine.json() as object), Object.keys(theirs.json() as object));
    const self = mine.json() as { name: string; id: string; state: string; startTime: string; leaderInfo: { leader: string; uptime: string; startTime: string } };
    const list = await client.memberList();
    const m = list.members.find((x) => BigInt(x.ID).toString(16) === self.id);
    assert.ok(m !== undefined, `id ${self.id} is a member`);
    assert.equal(self.name, m.name);
    const status = await client.status(m.clientURLs[0]!);
    assert.equal(self.leaderInfo.leader, BigInt(status.leader).toString(16));
    assert.equal(self.state, status.leader === m.ID ? 'StateLeader' : 'StateFollower');
    assert.match(self.leaderInfo.uptime, /^(\d+h)?(\d+m)?[\d.]+(s|ms|µs|ns)$/);
    assert.ok(!Number.isNaN(Date.parse(self.startTime)) && !Number.isNaN(Date.parse(self.leaderInfo.startTime)));
  });

  test('/v2/stats/leader: the leader and one neutral entry per follower, in v2stats shape', async () => {
    const [mine, theirs] = await Promise.all([http(`${url}/v2/stats/leader`), http(`${native.clientUrl}/v2/stats/leader`)]);
    assert.equal(mine.status, 200);
    assert.deepEqual(Object.keys(mine.json() as object), Object.keys(theirs.json() as object));
    const body = mine.json() as { leader: string; followers: Record<string, unknown> };
    const status = await client.status(members[0]!.clientUrl);
    assert.equal(body.leader, BigInt(status.leader).toString(16));
    const ids = (await client.memberList()).members.map((m) => BigInt(m.ID).toString(16)).filter((id) => id !== body.leader);
    assert.deepEqual(Object.keys(body.followers), ids.sort());
    for (const f of Object.values(body.followers)) {
      // etcd's v2stats FollowerStats JSON, field for field.
      assert.deepEqual(f, { latency: { current: 0, average: 0, standardDeviation: 0, minimum: 0, maximum: 0 }, counts: { fail: 0, success: 0 } });
    }
  });

  test('/v2/stats/store: native keys in order, this proxy counts and watchers', async () => {
    const before0 = (await http(`${url}/v2/stats/store`)).json() as Record<string, number>;
    const theirs = (await http(`${native.clientUrl}/v2/stats/store`)).json() as Record<string, number>;
    assert.deepEqual(Object.keys(before0), Object.keys(theirs));
    api.count('get', true);
    api.count('get', false);
    api.count('compareAndSwap', false);
    api.count('refresh', true);
    api.count('expire', true);
    api.count('nonsense', true);
    const saved = api.watchers;
    api.watchers = () => 7;
    try {
      const after0 = (await http(`${url}/v2/stats/store`)).json() as Record<string, number>;
      assert.deepEqual(after0, {
        ...before0,
        getsSuccess: before0.getsSuccess! + 1,
        getsFail: before0.getsFail! + 1,
        compareAndSwapFail: before0.compareAndSwapFail! + 1,
        setsSuccess: before0.setsSuccess! + 1,
        expireCount: before0.expireCount! + 1,
        watchers: 7,
      });
    } finally {
      api.watchers = saved;
    }
  });

  test('wrong methods, bad IDs, bad bodies: the same status, headers and body as native', async () => {
    const cases: Array<{ method: string; path: string; body?: string; headers?: Record<string, string>; bodyDiffers?: true }> = [
      { method: 'PATCH', path: '/v2/members' },
      { method: 'HEAD', path: '/v2/members' },
      { method: 'DELETE', path: '/v2/members' },
      { method: 'PUT', path: '/v2/members', body: '{}', headers: JSON_HEADERS },
      { method: 'GET', path: '/v2/members/zz' },
      { method: 'GET', path: '/v2/members/leader/' },
      { method: 'DELETE', path: '/v2/members/xyz' },
      { method: 'DELETE', path: '/v2/members/0x12' },
      { method: 'DELETE', path: '/v2/members/00ABC' },
      { method: 'DELETE', path: '/v2/members/1ffffffffffffffff' },
      { method: 'PUT', path: '/v2/members/abc', body: '{"peerURLs":["http://127.0.0.1:9"]}', headers: JSON_HEADERS },
      { method: 'PUT', path: '/v2/members/xyz', body: '{"peerURLs":["http://127.0.0.1:9"]}', headers: JSON_HEADERS },
      { method: 'PUT', path: '/v2/members/abc', body: '{"peerURLs":[]}', headers: { 'Content-Type': 'text/plain; charset=x' } },
      { method: 'POST', path: '/v2/members', body: '{"peerURLs":["http://127.0.0.1:9"]}', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } },
      { method: 'POST', path: '/v2/members', body: '{}', headers: { 'Content-Type': 'Application/JSON' } },
      { method: 'POST', path: '/v2/members', body: '', headers: JSON_HEADERS },
      { method: 'POST', path: '/v2/members', body: '{bad', headers: JSON_HEADERS, bodyDiffers: true },
      { method: 'POST', path: '/v2/members', body: '[1]', headers: JSON_HEADERS },
      { method: 'POST', path: '/v2/members', body: 'null', headers: JSON_HEADERS },
      { method: 'POST', path: '/v2/members', body: '{}', headers: { 'Content-Type': 'application/json; charset=utf-8' } },
      { method: 'POST', path: '/v2/members', body: '{"peerURLs":"x"}', headers: JSON_HEADERS },
      { method: 'POST', path: '/v2/members', body: '{"peerURLs":[1]}', headers: JSON_HEADERS },
      { method: 'POST', path: '/v2/members', body: '{"peerURLs":["foo"]}', headers: JSON_HEADERS },
      { method: 'POST', path: '/v2/members', body: '{"peerURLs":["http://127.0.0.1"]}', headers: JSON_HEADERS },
      { method: 'POST', path: '/v2/members', body: '{"peerURLs":["http://127.0.0.1:3/x"]}', headers: JSON_HEADERS },
      { method: 'POST', path: '/v2/members', body: '{"peerURLs":["http://127.0.0.1:3","ftp://127.0.0.1:4"]}', headers: JSON_HEADERS },
      { method: 'POST', path: '/v2/stats/self' },
      { method: 'HEAD', path: '/v2/stats/store' },
      { method: 'PUT', path: '/v2/stats/leader' },
      { method: 'POST', path: '/v2/machines' },
      { method: 'DELETE', path: '/v2/machines' },
    ];
    for (const c of cases) {
      const opts = { method: c.method, body: c.body, headers: c.headers };
      const [mine, theirs] = await Promise.all([http(`${url}${c.path}`, opts), http(`${native.clientUrl}${c.path}`, opts)]);
      const what = `${c.method} ${c.path} ${c.body ?? ''}`;
      const a = essentials(mine);
      const b = essentials(theirs);
      if (c.bodyDiffers) {
        assert.equal(b.status, 400, what);
        assert.match(a.body, /^\{"message":".+"\}$/, what);
        a.body = b.body;
      }
      assert.deepEqual(a, b, what);
    }
  });

  test('POST with a peer URL a member has: 409 "membership: peerURL exists", as native', async () => {
    const theirs = await http(`${native.clientUrl}/v2/members`, { method: 'POST', body: JSON.stringify({ peerURLs: [native.peerUrl] }), headers: JSON_HEADERS });
    // etcd 3.4 checks the cluster's health before the URLs, and a cluster under 5 s old is "unhealthy": 500 then, natively too.
    let mine: RawResponse | undefined;
    await eventually(
      async () => {
        mine = await http(`${url}/v2/members`, { method: 'POST', body: JSON.stringify({ peerURLs: [members[1]!.peerUrl] }), headers: JSON_HEADERS });
        return mine.status !== 500;
      },
      15000,
      'the cluster to check member changes',
    );
    assert.deepEqual(essentials(mine!), essentials(theirs));
    assert.equal(mine!.status, 409);
    assert.equal(mine!.body, '{"message":"membership: peerURL exists"}');
  });

  test('add a member, update its peer URLs, remove it: through v3, seen by every member', async () => {
    const peer = `http://127.0.0.1:${await freePort()}`;
    // etcd refuses a member change while the cluster is young (under 5 s, "unhealthy cluster"): native gives 500 then, so do we.
    let added: RawResponse | undefined;
    await eventually(
      async () => {
        added = await http(`${url}/v2/members`, { method: 'POST', body: JSON.stringify({ peerURLs: [`  ${peer.toUpperCase()} `] }), headers: JSON_HEADERS });
        if (added.status === 500) {
          assert.equal(added.body, '{"message":"Internal Server Error"}');
          return false;
        }
        return true;
      },
      15000,
      'the cluster to take a new member',
    );
    assert.equal(added!.status, 201, added!.body);
    assert.equal(added!.headers['content-type'], 'application/json');
    assert.ok(added!.body.endsWith('\n'));
    const m = added!.json() as { id: string; name: string; peerURLs: string[]; clientURLs: string[] };
    assert.match(m.id, /^[0-9a-f]+$/);
    assert.deepEqual(m, { id: m.id, name: '', peerURLs: [peer], clientURLs: [] });

    /** The member `id` as each member's own MemberList has it (one API per member). */
    const listed = async (id: string): Promise<Array<{ id: string; peerURLs: string[] } | undefined>> => {
      const lists = await Promise.all(perMember.map((p) => http(`${p.url}/v2/members`)));
      return lists.map((r) => (r.json() as { members: Array<{ id: string; peerURLs: string[] }> }).members.find((x) => x.id === id));
    };
    await eventually(async () => (await listed(m.id)).every((x) => x !== undefined), 5000, 'every member to list the new member');

    const peer2 = `http://127.0.0.1:${await freePort()}`;
    const updated = await http(`${url}/v2/members/${m.id}`, { method: 'PUT', body: JSON.stringify({ peerURLs: [peer2] }), headers: JSON_HEADERS });
    assert.equal(updated.status, 204, updated.body);
    assert.equal(updated.body, '');
    assert.ok(typeof updated.headers['x-etcd-cluster-id'] === 'string');
    await eventually(
      async () => (await listed(m.id)).every((x) => x?.peerURLs[0] === peer2),
      5000,
      'every member to list the new peer URL',
    );
    // Another member's peer URL: 409, as native.
    const clash = await http(`${url}/v2/members/${m.id}`, { method: 'PUT', body: JSON.stringify({ peerURLs: [members[0]!.peerUrl] }), headers: JSON_HEADERS });
    assert.equal(clash.status, 409);
    assert.equal(clash.body, '{"message":"membership: peerURL exists"}');
    // Upper-case hex and leading zeros name the same member, as Go's ParseUint reads them.
    const removed = await http(`${url}/v2/members/00${m.id.toUpperCase()}`, { method: 'DELETE' });
    assert.equal(removed.status, 204, removed.body);
    await eventually(
      async () => (await listed(m.id)).every((x) => x === undefined),
      5000,
      'every member to have dropped the member',
    );
    const again = await http(`${url}/v2/members/${m.id}`, { method: 'DELETE' });
    assert.equal(again.status, 404);
    assert.equal(again.body, `{"message":"No such member: ${m.id}"}`);
    const update = await http(`${url}/v2/members/${m.id}`, { method: 'PUT', body: JSON.stringify({ peerURLs: [peer] }), headers: JSON_HEADERS });
    assert.equal(update.status, 404);
    assert.equal(update.body, `{"message":"No such member: ${m.id}"}`);
  });
});

describe('V3ClusterApi without a reachable cluster', { skip: skipWithoutEtcd }, () => {
  after(cleanup);

  test('answers 503 with the reason, never throws; lookUpLeader gives undefined', async () => {
    const { api, url } = await apiOn([`http://127.0.0.1:${await freePort()}`]);
    for (const path of ['/v2/members', '/v2/members/leader', '/v2/machines', '/v2/stats/self', '/v2/stats/leader']) {
      const r = await http(`${url}${path}`);
      assert.equal(r.status, 503, `${path}: ${r.body}`);
      assert.equal(r.headers['content-type'], 'application/json');
      assert.match((r.json() as { message: string }).message, /did not answer/);
    }
    // The store counters need no cluster.
    assert.equal((await http(`${url}/v2/stats/store`)).status, 200);
    assert.equal(await api.lookUpLeader(AbortSignal.timeout(5000)), undefined);
  });

  test('after close(), requests get 503', async () => {
    const m = await member({ enableV2: false });
    const { api, url } = await apiOn([m.clientUrl]);
    assert.equal((await http(`${url}/v2/members`)).status, 200);
    api.close();
    const r = await http(`${url}/v2/machines`);
    assert.equal(r.status, 503);
  });
});
