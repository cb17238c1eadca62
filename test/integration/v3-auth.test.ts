/**
 * V2Auth (src/v3-backend/v2-auth.ts) against real etcd: v2's auth API and
 * its checks kept in a v3-only member's key space, compared step by step
 * with a native v2 member (etcd 3.4 --enable-v2): status codes, bodies and
 * headers of /v2/auth/*, the 401s of /v2/keys and /v2/members. Two V2Auth
 * instances (two clients, as two proxies) take turns and must agree; the
 * etcdctl v2 flow (user add, auth enable, role revoke guest, --username)
 * runs against both.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createTlsServer, request as httpsRequest } from 'node:https';
import type { ServerOptions as TlsServerOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { compare } from 'bcryptjs';
import { EndpointBalancer } from '../../src/balancer/endpoint-balancer.js';
import { V2Auth } from '../../src/v3-backend/v2-auth.js';
import { writeV2Error } from '../../src/v3-backend/v2-error.js';
import { V3Client } from '../../src/v3-backend/v3-client.js';
import { cleanup, cluster, etcdctl, eventually, freePort, http, member, onCleanup, skipWithoutEtcd, tempDir } from './harness.js';
import { makeTlsFixture } from './tls-certs.js';
import type { LocalEtcd, RawResponse } from './harness.js';

const PREFIX = '/v2';
const CLUSTER_ID = 'cdf818194e3a8c32';

/** A V3Client on `url` (its own balancer: one per simulated proxy), closed by `cleanup()`. */
function clientOn(...urls: string[]): V3Client {
  const balancer = new EndpointBalancer({ endpoints: urls, leaderWrites: false });
  const client = new V3Client({ balancer, dialTimeout: 500, callTimeout: 3000 });
  onCleanup(() => {
    client.close();
    balancer.close();
  });
  return client;
}

/**
 * A server standing for the proxy's HTTP layer: /v2/auth/* through
 * `auth.serve`; /v2/keys through `auth.checkKeys` (key = the URL path after
 * /v2/keys, as native v2 checks it), then 200 `keysAnswer`; /v2/members
 * writes through `auth.checkRoot`, then 200 {}.
 */
async function serveAuth(auth: V2Auth, keysAnswer = '{}', tls?: TlsServerOptions): Promise<string> {
  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = (req.url ?? '/').split('?')[0]!;
    const method = req.method ?? 'GET';
    if (auth.handles(path)) {
      await auth.serve(req, res, path);
      return;
    }
    req.resume();
    if (path === '/v2/keys' || path.startsWith('/v2/keys/')) {
      const key = decodeURIComponent(path.slice('/v2/keys'.length));
      const write = method === 'PUT' || method === 'POST' || method === 'DELETE';
      const recursive = url.searchParams.get('recursive') === 'true';
      const refused = await auth.checkKeys(req, key, write, recursive);
      if (refused !== undefined) {
        writeV2Error(res, refused, CLUSTER_ID);
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json', 'X-Etcd-Index': '1' });
      res.end(keysAnswer);
      return;
    }
    if (path.startsWith('/v2/members')) {
      if (method !== 'GET' && method !== 'HEAD' && !(await auth.checkRoot(req, res))) return;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{}');
      return;
    }
    res.writeHead(404);
    res.end();
  };
  const server = tls === undefined ? createServer((req, res) => void handler(req, res)) : createTlsServer(tls, (req, res) => void handler(req, res));
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
  return `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function newAuth(client: V3Client, prefix = PREFIX, clientCertAuth = false): V2Auth {
  const auth = new V2Auth({ client, prefix, clusterId: () => CLUSTER_ID, clientCertAuth });
  onCleanup(() => auth.close());
  return auth;
}

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

interface Step {
  method?: string;
  path: string;
  body?: unknown;
  /** "user:password", or a raw Authorization header when it does not contain ':'... see `header`. */
  as?: string;
  /** A raw Authorization header. */
  header?: string;
  /** Only whether it is refused matters (the test server does not serve keys or members). */
  checkOnly?: boolean;
}

async function send(base: string, s: Step): Promise<RawResponse> {
  const headers: Record<string, string> = {};
  if (s.as !== undefined) {
    const colon = s.as.indexOf(':');
    headers.Authorization = basic(s.as.slice(0, colon), s.as.slice(colon + 1));
  }
  if (s.header !== undefined) headers.Authorization = s.header;
  let body: string | undefined;
  if (s.body !== undefined) {
    body = typeof s.body === 'string' ? s.body : JSON.stringify(s.body);
    headers['Content-Type'] = s.path.startsWith('/v2/keys') ? 'application/x-www-form-urlencoded' : 'application/json';
  }
  return http(base + s.path, { method: s.method ?? 'GET', headers, ...(body === undefined ? {} : { body }) });
}

/** What is compared of an answer. */
function view(r: RawResponse, checkOnly: boolean): object {
  if (checkOnly && r.status !== 401) return { refused: false };
  return {
    status: r.status,
    body: r.body,
    contentType: r.headers['content-type'],
    allow: r.headers.allow,
    location: r.headers.location,
    wwwAuthenticate: r.headers['www-authenticate'],
    etcdIndex: r.headers['x-etcd-index'],
    clusterId: r.headers['x-etcd-cluster-id'] !== undefined,
  };
}

/** The differential sequence: /v2/auth answers, and which /v2/keys and /v2/members requests are refused. */
const steps: Step[] = [
  { path: '/v2/auth/enable' },
  { path: '/v2/auth/users' },
  { path: '/v2/auth/users/' },
  { path: '/v2/auth/roles' },
  { path: '/v2/auth/roles/guest' },
  { path: '/v2/auth/roles/root' },
  { method: 'PUT', path: '/v2/auth/enable' },
  { method: 'POST', path: '/v2/auth/enable' },
  { method: 'HEAD', path: '/v2/auth/users' },
  { method: 'DELETE', path: '/v2/auth/enable' },
  { method: 'PUT', path: '/v2/auth/users/root', body: { user: 'root', password: 'rootpw' } },
  { method: 'PUT', path: '/v2/auth/users/root', body: { user: 'root', password: 'rootpw' } },
  { method: 'PUT', path: '/v2/auth/users/bob', body: { user: 'bob' } },
  { method: 'PUT', path: '/v2/auth/users/bob', body: { user: 'bob', password: 'bobpw' } },
  { method: 'PUT', path: '/v2/auth/users/bob', body: { user: 'bob' } },
  { method: 'PUT', path: '/v2/auth/users/bob', body: { user: 'bob' } },
  { method: 'PUT', path: '/v2/auth/users/bob', body: { user: 'alice', password: 'x' } },
  { method: 'PUT', path: '/v2/auth/users/bob', body: 'not json' },
  { method: 'PUT', path: '/v2/auth/users/bob', body: '' },
  { method: 'PUT', path: '/v2/auth/users/bob', body: { user: 'bob', password: 5 } },
  { method: 'PUT', path: '/v2/auth/users/bob', body: '{"User":"bob","Password":"bobpw"} trailing' },
  { method: 'PUT', path: '/v2/auth/users/bob', body: { user: 'bob', roles: ['a'], grant: ['b'] } },
  { method: 'PUT', path: '/v2/auth/users/carol', body: { user: 'carol', password: 'carolpw', roles: ['reader'] } },
  { method: 'PUT', path: '/v2/auth/users/carol', body: { user: 'carol', password: 'carolpw', roles: ['reader'] } },
  { path: '/v2/auth/users/carol' },
  { path: '/v2/auth/users' },
  { method: 'PUT', path: '/v2/auth/roles/reader', body: { role: 'reader', permissions: { kv: { read: ['/pub/*', '/exact'], write: [] } } } },
  { method: 'PUT', path: '/v2/auth/roles/reader', body: { role: 'reader', permissions: { kv: { read: ['/pub/*'] } } } },
  { method: 'PUT', path: '/v2/auth/roles/root', body: { role: 'root' } },
  { method: 'PUT', path: '/v2/auth/roles/writer', body: { role: 'writer' } },
  { path: '/v2/auth/roles/writer' },
  { method: 'PUT', path: '/v2/auth/roles/writer', body: { role: 'writer', grant: { kv: { read: ['/w/*'], write: ['/w/*'] } } } },
  { method: 'PUT', path: '/v2/auth/roles/writer', body: { role: 'writer', grant: { kv: { read: ['/w/*'] } } } },
  { method: 'PUT', path: '/v2/auth/roles/writer', body: { role: 'writer', grant: { kv: { write: ['/w/*'] } } } },
  { method: 'PUT', path: '/v2/auth/roles/writer', body: { role: 'writer', revoke: { kv: { read: ['/nope'] } } } },
  { method: 'PUT', path: '/v2/auth/roles/writer', body: { role: 'writer', permissions: { kv: { read: ['/x'] } }, grant: { kv: { read: ['/y'] } } } },
  { method: 'PUT', path: '/v2/auth/roles/writer', body: { role: 'other', grant: { kv: { read: ['/y'] } } } },
  { method: 'PUT', path: '/v2/auth/roles/nobody', body: { role: 'nobody', grant: { kv: { read: ['/y'] } } } },
  { method: 'PUT', path: '/v2/auth/roles/empty', body: { role: 'empty', grant: { kv: { read: [] } } } },
  { path: '/v2/auth/roles/empty' },
  { method: 'PUT', path: '/v2/auth/roles/empty', body: { role: 'empty', revoke: { kv: { read: ['/a'] } } } },
  { method: 'PUT', path: '/v2/auth/roles/temp', body: { role: 'temp', permissions: { kv: { read: ['/b', '/a'], write: ['/<&>'] } } } },
  { path: '/v2/auth/roles/temp' },
  { method: 'DELETE', path: '/v2/auth/roles/temp' },
  { method: 'DELETE', path: '/v2/auth/roles/temp' },
  { method: 'PUT', path: '/v2/auth/users/bob', body: { user: 'bob', grant: ['writer', 'reader'] } },
  { method: 'PUT', path: '/v2/auth/users/bob', body: { user: 'bob', grant: ['writer'] } },
  { method: 'PUT', path: '/v2/auth/users/bob', body: { user: 'bob', revoke: ['ghost'] } },
  { method: 'PUT', path: '/v2/auth/users/ghost', body: { user: 'ghost', grant: ['writer'] } },
  { path: '/v2/auth/users/bob' },
  { path: '/v2/auth/users/carol' },
  // A user and a role whose names start with "_": native v2 keeps them as hidden nodes, readable but left out of the lists.
  { method: 'PUT', path: '/v2/auth/users/_hidden', body: { user: '_hidden', password: 'hpw' } },
  { method: 'PUT', path: '/v2/auth/roles/_hidden', body: { role: '_hidden', permissions: { kv: { read: ['/h/*'], write: [] } } } },
  { path: '/v2/auth/users/_hidden' },
  { path: '/v2/auth/roles/_hidden' },
  { path: '/v2/auth/users' },
  { path: '/v2/auth/roles' },
  { path: '/v2/auth/users/a/b' },
  { path: '/v2/auth/roles/a/b' },
  { path: '/v2/auth/foo' },
  { path: '/v2/auth' },
  { path: '/v2/auth/' },
  { path: '/v2/auth/users/a%2Fb' },
  { path: '/v2/auth/users/%zz' },
  { method: 'PUT', path: '/v2/auth/users/bob%20x', body: { user: 'bob x', password: 'p' } },
  { path: '/v2/auth/users/bob%20x' },
  { method: 'DELETE', path: '/v2/auth/users/bob x' },
  { path: '/v2/auth/users//bob' },
  { path: '/v2/auth/users//b%20%3Cb%3E?x=1' },
  { method: 'PUT', path: '/v2/auth//enable' },
  { path: '/v2/auth/users/bob/' },
  { path: '/v2/auth/enable/x' },
  { method: 'POST', path: '/v2/auth/users/bob' },
  { method: 'DELETE', path: '/v2/auth/users' },
  { method: 'DELETE', path: '/v2/auth/roles/root' },
  { method: 'DELETE', path: '/v2/auth/roles/ghost' },
  { method: 'DELETE', path: '/v2/auth/users/ghost' },
  { path: '/v2/auth/users/ghost' },
  { path: '/v2/auth/roles/ghost' },
  { path: '/v2/keys/foo', checkOnly: true },
  { method: 'PUT', path: '/v2/keys/foo', body: 'value=1', checkOnly: true },
  { method: 'POST', path: '/v2/members', body: '{}', checkOnly: true },
  // auth on
  { method: 'PUT', path: '/v2/auth/enable' },
  { path: '/v2/auth/enable' },
  { method: 'PUT', path: '/v2/auth/enable' },
  { method: 'PUT', path: '/v2/auth/enable', as: 'root:rootpw' },
  { path: '/v2/auth/roles/guest' },
  { path: '/v2/auth/roles/guest', as: 'root:rootpw' },
  { path: '/v2/auth/users' },
  { path: '/v2/auth/users', as: 'bob:bobpw' },
  { path: '/v2/auth/users', as: 'root:wrong' },
  { path: '/v2/auth/users', as: 'nobody:x' },
  { path: '/v2/auth/users', as: 'root:rootpw' },
  { path: '/v2/auth/users', header: 'Basic !!!' },
  { path: '/v2/auth/users', header: 'Bearer abc' },
  { path: '/v2/auth/users', header: `basic ${Buffer.from('root:rootpw').toString('base64')}` },
  { path: '/v2/auth/users', header: `Basic ${Buffer.from('rootpw').toString('base64')}` },
  { method: 'POST', path: '/v2/auth/users', as: 'bob:bobpw' },
  { method: 'DELETE', path: '/v2/auth/users/root', as: 'root:rootpw' },
  { path: '/v2/keys/foo', checkOnly: true },
  { method: 'PUT', path: '/v2/keys/foo', body: 'value=1', checkOnly: true },
  { path: '/v2/keys/foo?recursive=true', checkOnly: true },
  { method: 'POST', path: '/v2/members', body: '{}', checkOnly: true },
  { method: 'POST', path: '/v2/members', body: '{}', as: 'bob:bobpw', checkOnly: true },
  { method: 'POST', path: '/v2/members', body: '{}', as: 'root:rootpw', checkOnly: true },
  // role revoke guest: unauthenticated requests lose access
  { method: 'PUT', path: '/v2/auth/roles/guest', body: { role: 'guest', revoke: { kv: { read: ['/*'], write: ['/*'] } } }, as: 'root:rootpw' },
  { path: '/v2/keys/foo', checkOnly: true },
  { method: 'HEAD', path: '/v2/keys/foo', checkOnly: true },
  { method: 'PUT', path: '/v2/keys/foo', body: 'value=1', checkOnly: true },
  { path: '/v2/keys/foo', header: '', checkOnly: true },
  { path: '/v2/keys/foo', header: 'Basic !!!', checkOnly: true },
  { path: '/v2/keys/foo', as: 'root:rootpw', checkOnly: true },
  { path: '/v2/keys/?recursive=true', as: 'root:rootpw', checkOnly: true },
  { method: 'PUT', path: '/v2/keys/foo', body: 'value=2', as: 'root:rootpw', checkOnly: true },
  { path: '/v2/keys/foo', as: 'root:wrong', checkOnly: true },
  { path: '/v2/keys/pub/a', as: 'bob:bobpw', checkOnly: true },
  { path: '/v2/keys/pub/a', as: 'bob:wrong', checkOnly: true },
  { path: '/v2/keys/exact', as: 'bob:bobpw', checkOnly: true },
  { path: '/v2/keys/exact?recursive=true', as: 'bob:bobpw', checkOnly: true },
  { path: '/v2/keys/exact/sub', as: 'bob:bobpw', checkOnly: true },
  { path: '/v2/keys/pub?recursive=true', as: 'bob:bobpw', checkOnly: true },
  { path: '/v2/keys/pub/?recursive=true', as: 'bob:bobpw', checkOnly: true },
  { path: '/v2/keys/pub/x/y?recursive=true', as: 'bob:bobpw', checkOnly: true },
  { method: 'PUT', path: '/v2/keys/pub/a', body: 'value=1', as: 'bob:bobpw', checkOnly: true },
  { method: 'PUT', path: '/v2/keys/w/x', body: 'value=1', as: 'bob:bobpw', checkOnly: true },
  { method: 'POST', path: '/v2/keys/w/q', body: 'value=1', as: 'bob:bobpw', checkOnly: true },
  { method: 'DELETE', path: '/v2/keys/w?recursive=true', as: 'bob:bobpw', checkOnly: true },
  { method: 'DELETE', path: '/v2/keys/w/sub?recursive=true', as: 'bob:bobpw', checkOnly: true },
  { method: 'DELETE', path: '/v2/keys/w/x', as: 'bob:bobpw', checkOnly: true },
  { path: '/v2/keys/pub/x', as: 'carol:carolpw', checkOnly: true },
  { path: '/v2/keys/w/x', as: 'carol:carolpw', checkOnly: true },
  // guest gets read access back on one subtree; recursive is not looked at for the guest
  { method: 'PUT', path: '/v2/auth/roles/guest', body: { role: 'guest', grant: { kv: { read: ['/pub/*'] } } }, as: 'root:rootpw' },
  { path: '/v2/keys/pub/a', checkOnly: true },
  { path: '/v2/keys/pub/a?recursive=true', checkOnly: true },
  { path: '/v2/keys/foo', checkOnly: true },
  // a revoked role, a deleted role
  { method: 'PUT', path: '/v2/auth/users/bob', body: { user: 'bob', revoke: ['writer'] }, as: 'root:rootpw' },
  { method: 'PUT', path: '/v2/keys/w/x', body: 'value=1', as: 'bob:bobpw', checkOnly: true },
  { method: 'DELETE', path: '/v2/auth/roles/reader', as: 'root:rootpw' },
  { path: '/v2/keys/pub/a', as: 'bob:bobpw', checkOnly: true },
  { path: '/v2/auth/users/bob', as: 'root:rootpw' },
  { path: '/v2/auth/users', as: 'root:rootpw' },
  // a new password: the old one stops working at once
  { method: 'PUT', path: '/v2/auth/users/bob', body: { user: 'bob', grant: ['root'] }, as: 'root:rootpw' },
  { path: '/v2/auth/users', as: 'bob:bobpw' },
  { method: 'PUT', path: '/v2/auth/users/root', body: { user: 'root', password: 'newpw' }, as: 'root:rootpw' },
  { path: '/v2/auth/users', as: 'root:rootpw' },
  { path: '/v2/keys/foo', as: 'root:rootpw', checkOnly: true },
  { path: '/v2/auth/users', as: 'root:newpw' },
  { method: 'PUT', path: '/v2/auth/users/root', body: { user: 'root', revoke: ['root'] }, as: 'root:newpw' },
  { path: '/v2/auth/users/root', as: 'root:newpw' },
  { method: 'DELETE', path: '/v2/auth/users/bob', as: 'root:newpw' },
  { path: '/v2/auth/users', as: 'bob:bobpw' },
  // auth off
  { method: 'DELETE', path: '/v2/auth/enable', as: 'carol:carolpw' },
  { method: 'DELETE', path: '/v2/auth/enable' },
  { method: 'DELETE', path: '/v2/auth/enable', as: 'root:newpw' },
  { path: '/v2/auth/enable' },
  { method: 'DELETE', path: '/v2/auth/enable', as: 'root:newpw' },
  { path: '/v2/keys/foo', checkOnly: true },
  { method: 'PUT', path: '/v2/keys/foo', body: 'value=3', as: 'nobody:x', checkOnly: true },
  { method: 'DELETE', path: '/v2/auth/roles/guest' },
  { method: 'DELETE', path: '/v2/auth/users/root' },
  { method: 'DELETE', path: '/v2/auth/users/carol' },
  { path: '/v2/auth/users' },
  { path: '/v2/auth/roles' },
  // enabling again recreates the guest role with full access
  { method: 'PUT', path: '/v2/auth/users/root', body: { user: 'root', password: 'r', roles: ['x'] } },
  { path: '/v2/auth/users/root' },
  { method: 'PUT', path: '/v2/auth/enable' },
  { path: '/v2/auth/roles/guest', as: 'root:r' },
  { method: 'PUT', path: '/v2/keys/anything', body: 'value=1', checkOnly: true },
  { method: 'DELETE', path: '/v2/auth/enable', as: 'root:r' },
];

function isWrite(s: Step): boolean {
  return s.path.startsWith('/v2/auth/') && s.method !== undefined && s.method !== 'GET' && s.method !== 'HEAD';
}

describe('V2Auth: v2 auth over v3 data, compared with native v2', { skip: skipWithoutEtcd }, () => {
  let native: LocalEtcd;
  let v3member: LocalEtcd;
  let clientA: V3Client;
  let authA: V2Auth;
  let authB: V2Auth;
  let urlA: string;
  let urlB: string;

  before(async () => {
    [native, v3member] = await Promise.all([member(), member({ enableV2: false })]);
    clientA = clientOn(v3member.clientUrl);
    authA = newAuth(clientA);
    authB = newAuth(clientOn(v3member.clientUrl));
    [urlA, urlB] = await Promise.all([serveAuth(authA), serveAuth(authB)]);
  });
  after(cleanup);

  test('the same sequence gives the same answers; two instances take turns and agree', async () => {
    const urls = { A: urlA, B: urlB };
    let turn: 'A' | 'B' = 'A';
    let lastWriter: 'A' | 'B' = 'A';
    for (const [i, s] of steps.entries()) {
      const label = `step ${i}: ${s.method ?? 'GET'} ${s.path}${s.as === undefined ? '' : ` as ${s.as.split(':')[0]}`}${s.header === undefined ? '' : ` (Authorization: ${JSON.stringify(s.header)})`}`;
      const want = view(await send(native.clientUrl, s), s.checkOnly === true);
      if (process.env.SHOW_NATIVE === '1') console.log(label, JSON.stringify(want));
      if (s.path.startsWith('/v2/auth/') || s.path === '/v2/auth') {
        // The auth API reads the cluster: either instance answers at once, whoever made the last change.
        const got = view(await send(urls[turn], s), s.checkOnly === true);
        assert.deepEqual(got, want, `${label} through ${turn}`);
        if (isWrite(s)) lastWriter = turn;
        turn = turn === 'A' ? 'B' : 'A';
      } else {
        // Checks use the watched copy: the instance that made the last change sees it at once, the other as soon as its watch delivers it.
        assert.deepEqual(view(await send(urls[lastWriter], s), s.checkOnly === true), want, `${label} through ${lastWriter} (the last writer)`);
        const other = lastWriter === 'A' ? 'B' : 'A';
        let got: object = {};
        await eventually(
          async () => {
            got = view(await send(urls[other], s), s.checkOnly === true);
            return JSON.stringify(got) === JSON.stringify(want);
          },
          3000,
          `${label} through ${other} to answer as native: ${JSON.stringify(want)}, last ${JSON.stringify(got)}`,
        );
      }
    }
  });

  test('every write carries the action key "auth" in its own revision', async () => {
    const res = await send(urlA, { method: 'PUT', path: '/v2/auth/roles/acttest', body: { role: 'acttest' } });
    assert.equal(res.status, 201, res.body);
    const range = async (key: string): Promise<{ value: string; mod: number } | undefined> => {
      const r = await clientA.range({ key: Buffer.from(key) });
      const kv = r.kvs[0];
      return kv === undefined ? undefined : { value: kv.value.toString(), mod: kv.modRevision };
    };
    const role = await range(`${PREFIX}/auth/roles/acttest`);
    const act = await range(`${PREFIX}/act`);
    assert.ok(role !== undefined);
    assert.deepEqual(JSON.parse(role.value), { role: 'acttest', permissions: { kv: { read: null, write: null } } });
    assert.deepEqual(act, { value: 'auth', mod: role.mod });
    assert.equal((await send(urlB, { method: 'DELETE', path: '/v2/auth/roles/acttest' })).status, 200);
    assert.equal((await range(`${PREFIX}/act`))?.mod, (await clientA.range({ key: Buffer.from('x') })).header.revision);
  });

  test('users are kept with bcrypt hashes of cost 10, as v2 kept them', async () => {
    assert.equal((await send(urlA, { method: 'PUT', path: '/v2/auth/users/hashed', body: { user: 'hashed', password: 'secret' } })).status, 201);
    const kv = (await clientA.range({ key: Buffer.from(`${PREFIX}/auth/users/hashed`) })).kvs[0];
    assert.ok(kv !== undefined);
    const stored = JSON.parse(kv.value.toString()) as { user: string; password: string; roles: null };
    assert.equal(stored.user, 'hashed');
    assert.equal(stored.roles, null);
    assert.match(stored.password, /^\$2a\$10\$[./A-Za-z0-9]{53}$/);
    assert.ok(await compare('secret', stored.password));
    assert.equal((await send(urlA, { method: 'DELETE', path: '/v2/auth/users/hashed' })).status, 200);
  });

  test("a hash written by Go's bcrypt (v2's own store) verifies", async () => {
    // Go's x/crypto/bcrypt test vector: "allmine" with cost 10.
    const goHash = '$2a$10$XajjQvNhvvRt5GSeFk1xFeyqRrsxkhBkUiQeg0dt.wU1qD4aFDcga';
    await clientA.put({
      key: Buffer.from(`${PREFIX}/auth/users/gouser`),
      value: Buffer.from(JSON.stringify({ user: 'gouser', password: goHash, roles: ['root'] })),
    });
    await clientA.put({ key: Buffer.from(`${PREFIX}/auth/users/root`), value: Buffer.from(JSON.stringify({ user: 'root', password: goHash, roles: ['root'] })) });
    await clientA.put({ key: Buffer.from(`${PREFIX}/auth/enabled`), value: Buffer.from('true') });
    try {
      assert.equal((await send(urlA, { path: '/v2/auth/users', as: 'gouser:allmine' })).status, 200);
      assert.equal((await send(urlA, { path: '/v2/auth/users', as: 'gouser:allmin' })).status, 401);
    } finally {
      await clientA.put({ key: Buffer.from(`${PREFIX}/auth/enabled`), value: Buffer.from('false') });
      await clientA.deleteRange({ key: Buffer.from(`${PREFIX}/auth/users/gouser`) });
      await clientA.deleteRange({ key: Buffer.from(`${PREFIX}/auth/users/root`) });
    }
  });

  test('key checks cost no call to the cluster, auth on or off; a password is bcrypt-checked once', async () => {
    const ranges = async (): Promise<number> => {
      const text = (await http(`${v3member.clientUrl}/metrics`)).body;
      const m = /^grpc_server_handled_total\{grpc_code="OK",grpc_method="Range",[^}]*\} (\d+)$/m.exec(text);
      return m === null ? 0 : Number(m[1]);
    };
    const txns = async (): Promise<number> => {
      const text = (await http(`${v3member.clientUrl}/metrics`)).body;
      const m = /^grpc_server_handled_total\{grpc_code="OK",grpc_method="Txn",[^}]*\} (\d+)$/m.exec(text);
      return m === null ? 0 : Number(m[1]);
    };
    const auth = newAuth(clientOn(v3member.clientUrl));
    const url = await serveAuth(auth);
    assert.equal((await send(url, { path: '/v2/keys/warm', checkOnly: true })).status, 200);
    let before = (await ranges()) + (await txns());
    for (let i = 0; i < 20; i++) assert.equal((await send(url, { method: 'PUT', path: `/v2/keys/k${i}`, body: 'value=1' })).status, 200);
    assert.equal((await ranges()) + (await txns()), before, 'auth disabled: no call per request');

    assert.equal((await send(url, { method: 'PUT', path: '/v2/auth/users/root', body: { user: 'root', password: 'pw' } })).status, 201);
    assert.equal((await send(url, { method: 'PUT', path: '/v2/auth/enable' })).status, 200);
    const t0 = performance.now();
    assert.ok(await compare('pw', '$2a$10$XajjQvNhvvRt5GSeFk1xFeyqRrsxkhBkUiQeg0dt.wU1qD4aFDcga').then(() => true));
    const oneBcrypt = performance.now() - t0;
    assert.equal((await send(url, { path: '/v2/keys/a', as: 'root:pw' })).status, 200);
    before = (await ranges()) + (await txns());
    const t1 = performance.now();
    // One after the other: concurrent requests would share one bcrypt run even without the cache.
    const answers: RawResponse[] = [];
    for (let i = 0; i < 40; i++) answers.push(await send(url, { path: `/v2/keys/a${i}`, as: 'root:pw' }));
    const elapsed = performance.now() - t1;
    assert.deepEqual(new Set(answers.map((r) => r.status)), new Set([200]));
    assert.equal((await ranges()) + (await txns()), before, 'auth enabled: no call per request');
    assert.ok(elapsed < oneBcrypt * 10, `40 requests took ${elapsed.toFixed(0)} ms, one bcrypt ${oneBcrypt.toFixed(0)} ms: the result was not reused`);
    // concurrent wrong passwords share one bcrypt run too, and are refused
    const wrong = await Promise.all(Array.from({ length: 10 }, () => send(url, { path: '/v2/keys/a', as: 'root:bad' })));
    assert.deepEqual(new Set(wrong.map((r) => r.status)), new Set([401]));

    assert.equal((await send(url, { method: 'DELETE', path: '/v2/auth/enable', as: 'root:pw' })).status, 200);
    assert.equal((await send(url, { method: 'DELETE', path: '/v2/auth/users/root' })).status, 200);
  });

  test('a change through one instance reaches the checks of another', async () => {
    const authC = newAuth(clientOn(v3member.clientUrl));
    const urlC = await serveAuth(authC);
    assert.equal((await send(urlC, { path: '/v2/keys/x', checkOnly: true })).status, 200);
    assert.equal((await send(urlA, { method: 'PUT', path: '/v2/auth/users/root', body: { user: 'root', password: 'pw' } })).status, 201);
    assert.equal((await send(urlA, { method: 'PUT', path: '/v2/auth/enable' })).status, 200);
    assert.equal((await send(urlA, { method: 'PUT', path: '/v2/auth/roles/guest', as: 'root:pw', body: { role: 'guest', revoke: { kv: { read: ['/*'], write: ['/*'] } } } })).status, 200);
    await eventually(async () => (await send(urlC, { path: '/v2/keys/x' })).status === 401, 3000, 'instance C to refuse the guest');
    assert.equal((await send(urlC, { path: '/v2/keys/x', as: 'root:pw' })).status, 200);
    assert.equal((await send(urlC, { method: 'DELETE', path: '/v2/auth/enable', as: 'root:pw' })).status, 200);
    assert.equal((await send(urlC, { path: '/v2/keys/x' })).status, 200, 'C changed it: C sees it at once');
    await eventually(async () => (await send(urlA, { path: '/v2/keys/x' })).status === 200, 3000, 'instance A to see auth disabled');
    for (const path of ['/v2/auth/users/root', '/v2/auth/roles/guest']) assert.equal((await send(urlA, { method: 'DELETE', path })).status, 200);
  });

  test('etcdctl v2 (user add, auth enable, role revoke guest, --username) answers as on native v2', async () => {
    const nodeAnswer = JSON.stringify({ action: 'get', node: { key: '/x', value: 'hello', modifiedIndex: 4, createdIndex: 4 } });
    // A prefix of its own: a cluster with no auth data yet, as the new native member.
    const auth = newAuth(clientOn(v3member.clientUrl), '/etcdctl');
    const ours = await serveAuth(auth, nodeAnswer);
    const theirs = (await member()).clientUrl;
    assert.equal((await http(`${theirs}/v2/keys/x`, { method: 'PUT', body: 'value=hello' })).status, 201);
    const flow: string[][] = [
      ['user', 'add', 'root:rootpw'],
      ['user', 'add', 'root:rootpw'],
      ['user', 'add', 'app:apppw'],
      ['role', 'add', 'app-rw'],
      ['role', 'grant', 'app-rw', '--path', '/app/*', '--readwrite'],
      ['user', 'grant', 'app', '--roles', 'app-rw'],
      ['user', 'list'],
      ['role', 'list'],
      ['user', 'get', 'app'],
      ['role', 'get', 'app-rw'],
      ['auth', 'enable'],
      ['get', '/x'],
      ['--username', 'root:rootpw', 'role', 'revoke', 'guest', '--path', '/*', '--readwrite'],
      ['get', '/x'],
      ['--username', 'root:wrong', 'get', '/x'],
      ['--username', 'app:apppw', 'get', '/x'],
      ['--username', 'root:rootpw', 'get', '/x'],
      ['user', 'list'],
      ['--username', 'root:rootpw', 'user', 'list'],
      ['--username', 'root:rootpw', 'user', 'revoke', 'app', '--roles', 'app-rw'],
      ['--username', 'root:rootpw', 'user', 'get', 'app'],
      ['--username', 'root:rootpw', 'user', 'remove', 'root'],
      ['--username', 'root:rootpw', 'auth', 'disable'],
      ['auth', 'disable'],
      ['get', '/x'],
      ['user', 'remove', 'app'],
      ['role', 'remove', 'app-rw'],
      ['role', 'remove', 'root'],
    ];
    for (const args of flow) {
      const [want, got] = await Promise.all([etcdctl(theirs, ['--no-sync', ...args]), etcdctl(ours, ['--no-sync', ...args])]);
      if (process.env.SHOW_NATIVE === '1') console.log(args.join(' '), JSON.stringify(want));
      assert.deepEqual(
        { code: got.code, stdout: got.stdout, stderr: got.stderr.replaceAll(ours, 'URL') },
        { code: want.code, stdout: want.stdout, stderr: want.stderr.replaceAll(theirs, 'URL') },
        `etcdctl ${args.join(' ')}`,
      );
    }
  });

  test('racing writes through two instances lose no update', async () => {
    const roles = Array.from({ length: 12 }, (_, i) => `race${String(i).padStart(2, '0')}`);
    assert.equal((await send(urlA, { method: 'PUT', path: '/v2/auth/users/racer', body: { user: 'racer', password: 'pw' } })).status, 201);
    const answers = await Promise.all(
      roles.map((role, i) => send(i % 2 === 0 ? urlA : urlB, { method: 'PUT', path: '/v2/auth/users/racer', body: { user: 'racer', grant: [role] } })),
    );
    assert.deepEqual(answers.map((r) => r.status), roles.map(() => 200), answers.map((r) => r.body).join(' '));
    const kv = (await clientA.range({ key: Buffer.from(`${PREFIX}/auth/users/racer`) })).kvs[0];
    assert.deepEqual((JSON.parse(kv!.value.toString()) as { roles: string[] }).roles, roles);
    assert.equal((await send(urlB, { method: 'DELETE', path: '/v2/auth/users/racer' })).status, 200);
  });
});

describe('V2Auth when the member under its watch dies', { skip: skipWithoutEtcd }, () => {
  after(cleanup);

  test('the checks read the auth data again from another member and see later changes', async () => {
    const members = await cluster(3, { enableV2: false });
    const urls = members.map((m) => m.clientUrl);
    const streams = async (m: LocalEtcd): Promise<number> => {
      const text = (await http(`${m.clientUrl}/metrics`)).body;
      const match = /^etcd_debugging_mvcc_watch_stream_total (\d+)$/m.exec(text);
      return match === null ? 0 : Number(match[1]);
    };
    const before = await Promise.all(members.map(streams));
    const watched = newAuth(clientOn(...urls));
    const url = await serveAuth(watched);
    assert.equal((await send(url, { path: '/v2/keys/x' })).status, 200);
    let carrier: LocalEtcd | undefined;
    await eventually(
      async () => {
        const now = await Promise.all(members.map(streams));
        carrier = members.find((_, i) => now[i]! > before[i]!);
        return carrier !== undefined;
      },
      3000,
      "the auth watch's stream to show on a member",
    );
    carrier!.signal('SIGKILL');
    const others = urls.filter((u) => u !== carrier!.clientUrl);
    const adminUrl = await serveAuth(newAuth(clientOn(...others)));
    await eventually(
      async () => (await send(adminUrl, { method: 'PUT', path: '/v2/auth/users/root', body: { user: 'root', password: 'pw' } })).status === 201,
      15000,
      'the root user to be created on the surviving members',
    );
    assert.equal((await send(adminUrl, { method: 'PUT', path: '/v2/auth/enable' })).status, 200);
    const revoke = { role: 'guest', revoke: { kv: { read: ['/*'], write: ['/*'] } } };
    assert.equal((await send(adminUrl, { method: 'PUT', path: '/v2/auth/roles/guest', as: 'root:pw', body: revoke })).status, 200);
    await eventually(async () => (await send(url, { path: '/v2/keys/x' })).status === 401, 15000, 'the instance whose watch died to refuse the guest');
    assert.equal((await send(url, { path: '/v2/keys/x', as: 'root:pw' })).status, 200);
  });
});

describe('V2Auth with clientCertAuth', { skip: skipWithoutEtcd }, () => {
  after(cleanup);

  test('a request without Authorization is the user named by its verified client certificate', async () => {
    const certs = await makeTlsFixture(await tempDir('etcd-v2-proxy-auth-tls-'));
    const [ca, serverCert, serverKey] = await Promise.all([readFile(certs.ca), readFile(certs.server.cert), readFile(certs.server.key)]);
    const m = await member({ enableV2: false });
    const auth = newAuth(clientOn(m.clientUrl), '/certs', true);
    const url = await serveAuth(auth, '{}', { ca, cert: serverCert, key: serverKey, requestCert: true, rejectUnauthorized: false });
    const get = async (path: string, client?: { cert: string; key: string }, authorization?: string): Promise<number> => {
      const [cert, key] = client === undefined ? [undefined, undefined] : await Promise.all([readFile(client.cert), readFile(client.key)]);
      return new Promise((resolve, reject) => {
        const req = httpsRequest(
          `${url}${path}`,
          { ca, cert, key, agent: false, headers: authorization === undefined ? {} : { Authorization: authorization } },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode!));
          },
        );
        req.on('error', reject);
        req.end();
      });
    };
    const admin = await serveAuth(newAuth(clientOn(m.clientUrl), '/certs'));
    const put = async (path: string, body: unknown, as?: string): Promise<number> => (await send(admin, { method: 'PUT', path, body, ...(as === undefined ? {} : { as }) })).status;
    assert.equal(await put('/v2/auth/users/root', { user: 'root', password: 'pw' }), 201);
    assert.equal(await put('/v2/auth/roles/app', { role: 'app', permissions: { kv: { read: ['/app/*'], write: [] } } }), 201);
    assert.equal(await put('/v2/auth/users/etcd-test-client', { user: 'etcd-test-client', password: 'x', roles: ['app'] }), 200);
    assert.equal(await put('/v2/auth/enable', undefined), 200);
    assert.equal(await put('/v2/auth/roles/guest', { role: 'guest', revoke: { kv: { read: ['/*'], write: ['/*'] } } }, 'root:pw'), 200);
    await eventually(async () => (await get('/v2/keys/app/x')) === 401, 3000, 'the guest to be refused');
    assert.equal(await get('/v2/keys/app/x', certs.client), 200, 'CN=etcd-test-client reads /app/*');
    assert.equal(await get('/v2/keys/other', certs.client), 401, 'and nothing else');
    assert.equal(await get('/v2/keys/app/x', certs.otherClient), 401, 'a certificate from an untrusted CA is no one');
    assert.equal(await get('/v2/keys/app/x', certs.client, basic('root', 'wrong')), 401, 'an Authorization header is what counts when there is one');
    assert.equal(await get('/v2/keys/other', certs.client, basic('root', 'pw')), 200);
  });
});

describe('V2Auth without a cluster', () => {
  after(cleanup);

  test('options are checked when constructed', () => {
    const client = clientOn('http://127.0.0.1:1');
    assert.throws(() => new V2Auth(undefined as unknown as { client: V3Client }), /invalid option options: expected an object with a client, got undefined/);
    assert.throws(() => new V2Auth({ client: {} as V3Client }), /invalid option client: expected a V3Client, got object/);
    assert.throws(() => new V2Auth({ client, prefix: 'v2' }), /invalid option prefix: expected a key prefix that starts with "\/"/);
    assert.throws(() => new V2Auth({ client, prefix: '/v2/' }), /invalid option prefix/);
    assert.throws(() => new V2Auth({ client, clientCertAuth: 'yes' as unknown as boolean }), /invalid option clientCertAuth: expected a boolean, got "yes"/);
    new V2Auth({ client }).close();
  });

  test('an unreachable cluster: key checks answer v2\'s 500 errorCode 300, the auth API 500', async () => {
    const auth = newAuth(clientOn(`http://127.0.0.1:${await freePort()}`));
    const url = await serveAuth(auth);
    const keys = await http(`${url}/v2/keys/x`);
    assert.equal(keys.status, 500);
    assert.equal((keys.json() as { errorCode: number }).errorCode, 300);
    assert.equal(keys.headers['x-etcd-index'], '0');
    const api = await http(`${url}/v2/auth/users`);
    assert.deepEqual({ status: api.status, body: api.body }, { status: 500, body: '{"message":"Internal Server Error"}' });
    const members = await http(`${url}/v2/members`, { method: 'POST', body: '{}' });
    assert.deepEqual({ status: members.status, body: members.body }, { status: 500, body: '{"message":"Internal Server Error"}' });
    auth.close();
    const closed = await http(`${url}/v2/keys/x`);
    assert.match((closed.json() as { cause: string }).cause, /closed/);
  });
});
