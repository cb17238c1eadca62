/**
 * V3Store against real etcd: the same v2 requests sent to a native v2 member
 * (etcd 3.4 --enable-v2, over HTTP) and to V3Store on a v3-only member; the
 * answers (status, JSON body, X-Etcd-Index / error index) compared with
 * indexes taken relative to each side's index when the scenario started,
 * expirations checked and masked, ttl allowed to differ by one second, and
 * listings sorted by key (v2's unsorted order is unspecified). The known
 * differences are asserted where they show, each once, then masked:
 *
 * 1. a set (or a set with refresh) over an existing file keeps its createdIndex (v2: the set's index);
 * 2. an update of a directory (its TTL) shows in later reads as the directory's modifiedIndex
 *    (v2 leaves the stored directory's modifiedIndex as it was);
 * 3. a TTL change on a directory re-attaches the nodes below it to the new lease: their modifiedIndex
 *    becomes the update's index;
 * 4. a node given a TTL that ends after its directory's shows no ttl/expiration (it is on the
 *    directory's lease and goes with it, as in v2);
 * 5. TTLs shorter than etcd's minimum lease TTL (2 s by default) end after that minimum.
 *
 * Plus: call counts (a recursive listing of TTL keys is one call), concurrent
 * compare-and-swap and POST from two stores, lease clean-up, deep paths, and
 * interop with etcd's own v2v3 emulation in both directions.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EndpointBalancer } from '../../src/balancer/endpoint-balancer.js';
import { KeyLayout } from '../../src/v3-backend/key-layout.js';
import { expiryOfLease } from '../../src/v3-backend/lease-expiry.js';
import { V2Error } from '../../src/v3-backend/v2-error.js';
import { V3Client } from '../../src/v3-backend/v3-client.js';
import { V3Store } from '../../src/v3-backend/v3-store.js';
import type { KeyValue } from '../../src/v3-backend/rpc-types.js';
import type { V2Event, V2Node } from '../../src/v3-backend/v3-store.js';
import { cleanup, eventually, http, member, onCleanup, skipWithoutEtcd } from './harness.js';
import type { LocalEtcd } from './harness.js';

interface Params {
  value?: string;
  dir?: boolean;
  ttl?: number;
  refresh?: boolean;
  prevExist?: boolean;
  prevValue?: string;
  prevIndex?: number;
  recursive?: boolean;
  sorted?: boolean;
  quorum?: boolean;
}

/** One answer, either side. */
interface Result {
  status: number;
  index: number;
  body: any;
}

type Method = 'GET' | 'PUT' | 'POST' | 'DELETE';

interface Step {
  method: Method;
  /** Relative to the scenario's directory (joined with '/'); '/' alone is the root. */
  path: string;
  params?: Params | ((prev: Result[]) => Params);
  /** A known difference: asserts it on the normalised answers, then patches `ours` to match. */
  diff?: (native: Result, ours: Result) => void;
}

/** A store (with its client and balancer) on `m`, closed by `cleanup()`. */
function storeOn(m: LocalEtcd, prefix = '/v2'): { store: V3Store; client: V3Client } {
  const balancer = new EndpointBalancer({ endpoints: [m.clientUrl], leaderWrites: false });
  const client = new V3Client({ balancer, dialTimeout: 1000, callTimeout: 5000 });
  const store = new V3Store({ client, prefix });
  onCleanup(() => {
    store.close();
    client.close();
    balancer.close();
  });
  return { store, client };
}

function encodePath(p: string): string {
  return p.split('/').map(encodeURIComponent).join('/');
}

/** The request to a native v2 member's /v2/keys. */
async function nativeCall(m: LocalEtcd, method: Method, path: string, params: Params): Promise<Result> {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const qs = q.toString();
  const res = await http(`${m.clientUrl}/v2/keys${encodePath(path)}${qs === '' ? '' : `?${qs}`}`, { method });
  return { status: res.status, index: Number(res.headers['x-etcd-index']), body: res.json() };
}

/** The same request to the store, answered as the v3 backend writes it. */
async function storeCall(store: V3Store, method: Method, path: string, p: Params): Promise<Result> {
  try {
    let ev: V2Event;
    switch (method) {
      case 'GET':
        ev = await store.get(path, { recursive: p.recursive, sorted: p.sorted, quorum: p.quorum });
        break;
      case 'POST':
        ev = await store.post(path, { value: p.value, dir: p.dir, ttl: p.ttl });
        break;
      case 'DELETE':
        ev = await store.delete(path, { dir: p.dir, recursive: p.recursive, prevValue: p.prevValue, prevIndex: p.prevIndex });
        break;
      default:
        ev = await store.put(path, {
          value: p.value,
          dir: p.dir,
          ttl: p.ttl,
          refresh: p.refresh,
          prevExist: p.prevExist,
          prevValue: p.prevValue,
          prevIndex: p.prevIndex,
        });
    }
    const created = ev.action === 'create' || (ev.action === 'set' && ev.prevNode === undefined);
    const body = ev.prevNode === undefined ? { action: ev.action, node: ev.node } : { action: ev.action, node: ev.node, prevNode: ev.prevNode };
    return { status: created ? 201 : 200, index: ev.etcdIndex, body: JSON.parse(JSON.stringify(body)) };
  } catch (err) {
    if (!(err instanceof V2Error)) throw err;
    return { status: err.status, index: err.index, body: JSON.parse(JSON.stringify(err)) };
  }
}

/**
 * Indexes relative to `base`, 20-digit in-order names too; expirations
 * checked (RFC 3339, in the future or just past) and masked; listings sorted.
 */
function normalize(r: Result, base: number): Result {
  const rel = (n: number): number => (n === 0 ? 0 : n - base); // 0: a request error (no index)
  const name = (key: string): string => key.replace(/\/(\d{20})(?=\/|$)/g, (_m, d: string) => `/#${rel(Number(d))}`);
  const node = (n: Record<string, unknown>): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(n)) {
      if (k === 'modifiedIndex' || k === 'createdIndex') out[k] = rel(v as number);
      else if (k === 'key') out[k] = name(v as string);
      else if (k === 'expiration') {
        const t = Date.parse(v as string);
        assert.ok(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(v as string) && t > Date.now() - 60_000, `expiration ${String(v)}`);
        out[k] = '<expiration>';
      } else if (k === 'nodes') out[k] = (v as Record<string, unknown>[]).map(node).sort((a, b) => ((a.key as string) < (b.key as string) ? -1 : 1));
      else out[k] = v;
    }
    return out;
  };
  const body = { ...r.body };
  if (body.node !== undefined) body.node = node(body.node);
  if (body.prevNode !== undefined) body.prevNode = node(body.prevNode);
  if (body.errorCode !== undefined) {
    body.index = rel(body.index);
    if (typeof body.cause === 'string') body.cause = name(body.cause).replace(/\b\d{2,}\b/g, (d: string) => (Number(d) >= base ? `#${rel(Number(d))}` : d));
  }
  return { status: r.status, index: rel(r.index), body };
}

/** Copies native's ttl into ours wherever both have one and they are within a second (timing). */
function alignTtl(n: unknown, o: unknown): void {
  if (n === null || o === null || typeof n !== 'object' || typeof o !== 'object') return;
  const a = n as Record<string, unknown>;
  const b = o as Record<string, unknown>;
  if (typeof a.ttl === 'number' && typeof b.ttl === 'number' && Math.abs(a.ttl - b.ttl) <= 1) b.ttl = a.ttl;
  for (const k of Object.keys(a)) if (k in b) alignTtl(a[k], b[k]);
}

/** A node of a normalised body by key (searching `nodes`). */
function find(body: { node?: V2Node }, key: string): Record<string, unknown> {
  const walk = (n: V2Node | undefined): V2Node | undefined => {
    if (n === undefined) return undefined;
    if (n.key === key) return n;
    for (const c of n.nodes ?? []) {
      const f = walk(c);
      if (f !== undefined) return f;
    }
    return undefined;
  };
  const found = walk(body.node);
  assert.ok(found !== undefined, `no node ${key} in ${JSON.stringify(body)}`);
  return found as unknown as Record<string, unknown>;
}

describe('V3Store: v2 semantics over v3, compared with native v2', { skip: skipWithoutEtcd }, () => {
  let native: LocalEtcd;
  let v3member: LocalEtcd;
  let store: V3Store;
  let client: V3Client;
  let scenarioCount = 0;

  before(async () => {
    [native, v3member] = await Promise.all([member(), member({ enableV2: false })]);
    ({ store, client } = storeOn(v3member));
  });
  after(cleanup);

  /** Runs `steps` under a fresh directory on both sides and compares every answer. */
  async function scenario(steps: Step[], options: { root?: boolean } = {}): Promise<{ native: Result[]; ours: Result[] }> {
    const dir = options.root === true ? '' : `/s${++scenarioCount}`;
    const nBase = (await nativeCall(native, 'GET', '/', {})).index;
    const oBase = (await store.currentIndex({ quorum: true })).index;
    const nAll: Result[] = [];
    const oAll: Result[] = [];
    for (const [i, step] of steps.entries()) {
      const path = step.path === '/' ? dir || '/' : `${dir}/${step.path}`;
      const nParams = typeof step.params === 'function' ? step.params(nAll) : (step.params ?? {});
      const oParams = typeof step.params === 'function' ? step.params(oAll) : (step.params ?? {});
      const n = await nativeCall(native, step.method, path, nParams);
      const o = await storeCall(store, step.method, path, oParams);
      nAll.push(n);
      oAll.push(o);
      const nn = normalize(n, nBase);
      const on = normalize(o, oBase);
      alignTtl(nn, on);
      const what = `step ${i} ${step.method} ${path} ${JSON.stringify(nParams)}`;
      if (step.diff !== undefined) step.diff(nn, on);
      assert.deepStrictEqual(on, nn, `${what}\nnative: ${JSON.stringify(nn)}\nours:   ${JSON.stringify(on)}`);
    }
    return { native: nAll, ours: oAll };
  }

  /** Difference 1: a set over an existing file keeps the file's createdIndex. */
  const keepsCreatedIndex = (n: Result, o: Result): void => {
    assert.equal(n.body.node.createdIndex, n.body.node.modifiedIndex);
    assert.equal(o.body.node.createdIndex, o.body.prevNode.createdIndex);
    o.body.node.createdIndex = n.body.node.createdIndex;
  };

  /** Difference 1 seen later: the prevNode of a file that was set over keeps its first createdIndex. */
  const prevCreatedKept = (n: Result, o: Result): void => {
    assert.equal(n.body.prevNode.createdIndex, n.body.prevNode.modifiedIndex);
    assert.ok(o.body.prevNode.createdIndex < o.body.prevNode.modifiedIndex);
    o.body.prevNode.createdIndex = n.body.prevNode.createdIndex;
  };

  test('the root: GET, and every write refused as v2 refuses it', async () => {
    await scenario(
      [
        { method: 'GET', path: '/' },
        { method: 'GET', path: '/', params: { recursive: true, sorted: true } },
        { method: 'PUT', path: '/', params: { value: 'x' } },
        { method: 'PUT', path: '/', params: { dir: true } },
        { method: 'PUT', path: '/', params: { value: 'x', prevExist: true } },
        { method: 'PUT', path: '/', params: { value: 'x', prevExist: false } },
        { method: 'PUT', path: '/', params: { value: 'x', prevValue: 'y' } },
        { method: 'PUT', path: '/', params: { ttl: 5, refresh: true } },
        { method: 'DELETE', path: '/' },
        { method: 'DELETE', path: '/', params: { recursive: true } },
        { method: 'DELETE', path: '/', params: { dir: true } },
        { method: 'DELETE', path: '/', params: { prevValue: 'x' } },
        { method: 'POST', path: '/', params: { value: 'queued at the root' } },
        { method: 'GET', path: '/', params: { recursive: true } },
        { method: 'DELETE', path: '/', params: { prevIndex: 3 } },
      ],
      { root: true },
    );
  });

  test('GET: file, directory, recursive, sorted, hidden names, quorum, errors', async () => {
    await scenario([
      { method: 'PUT', path: 'f', params: { value: 'hello' } },
      { method: 'PUT', path: 'd/x', params: { value: '1' } },
      { method: 'PUT', path: 'd/_h', params: { value: 'hidden' } },
      { method: 'PUT', path: 'd/sub/y', params: { value: '2' } },
      { method: 'PUT', path: 'd/sub/_z', params: { value: '3' } },
      { method: 'PUT', path: 'd/sub/deeper/w', params: { value: '4' } },
      { method: 'PUT', path: '_hd/q', params: { value: '5' } },
      { method: 'PUT', path: 'd/empty', params: { dir: true } },
      { method: 'GET', path: 'f' },
      { method: 'GET', path: 'd' },
      { method: 'GET', path: 'd', params: { recursive: true } },
      { method: 'GET', path: 'd', params: { recursive: true, sorted: true } },
      { method: 'GET', path: '/', params: { recursive: true, sorted: true } },
      { method: 'GET', path: '/', params: { sorted: true } },
      { method: 'GET', path: 'd/_h' },
      { method: 'GET', path: '_hd', params: { recursive: true } },
      { method: 'GET', path: 'd/empty' },
      { method: 'GET', path: 'missing' },
      { method: 'GET', path: 'nope/deeper/still' },
      { method: 'GET', path: 'f/under' },
      { method: 'GET', path: 'f/under/more' },
      { method: 'GET', path: 'd', params: { quorum: true } },
      { method: 'GET', path: 'f', params: { recursive: true } },
    ]);
  });

  test('sorted listings are in key order', async () => {
    const names = ['b', 'a-1', 'a/z', 'A', 'é', 'a0', '~', 'a b', '日本'];
    for (const n of names) await store.put(`/sorting/${n}`, { value: n });
    const ev = await store.get('/sorting', { sorted: true });
    const keys = ev.node.nodes!.map((n) => n.key);
    const expected = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    assert.deepEqual(keys, expected);
    assert.equal(keys.length, names.length);
  });

  test('set: new, existing (createdIndex kept: difference 1), directories, replacing a file by a directory, odd names', async () => {
    await scenario([
      { method: 'PUT', path: 'a', params: { value: 'one' } },
      { method: 'PUT', path: 'a', params: { value: 'two' }, diff: keepsCreatedIndex },
      { method: 'PUT', path: 'b', params: { dir: true } },
      { method: 'PUT', path: 'b', params: { value: 'x' } },
      { method: 'PUT', path: 'b', params: { dir: true } },
      { method: 'PUT', path: 'a', params: { dir: true }, diff: prevCreatedKept },
      { method: 'GET', path: 'a' },
      { method: 'PUT', path: 'c/d/e', params: { value: 'deep' } },
      { method: 'PUT', path: 'c/d/e/f', params: { value: 'under a file' } },
      { method: 'PUT', path: 'empty', params: { value: '' } },
      { method: 'PUT', path: 'dirval', params: { dir: true, value: 'ignored' } },
      { method: 'PUT', path: 'héllo wörld 100%/k+ey', params: { value: 'ünï ☃' } },
      { method: 'PUT', path: 'héllo wörld 100%/k ey', params: { value: 'space' } },
      { method: 'GET', path: 'héllo wörld 100%', params: { recursive: true } },
      { method: 'GET', path: 'héllo wörld 100%/k+ey' },
      { method: 'GET', path: '/', params: { recursive: true } },
    ]);
  });

  test('create (prevExist=false): new, existing file or directory (105), under a file (104), with parents', async () => {
    await scenario([
      { method: 'PUT', path: 'n', params: { value: 'one', prevExist: false } },
      { method: 'PUT', path: 'n', params: { value: 'two', prevExist: false } },
      { method: 'PUT', path: 'dd', params: { dir: true, prevExist: false } },
      { method: 'PUT', path: 'dd', params: { prevExist: false } },
      { method: 'PUT', path: 'dd', params: { dir: true, prevExist: false } },
      { method: 'PUT', path: 'n/x', params: { value: 'v', prevExist: false } },
      { method: 'PUT', path: 'p/q/r', params: { value: 'v', prevExist: false } },
      { method: 'PUT', path: 'p', params: { dir: true, prevExist: false } },
      { method: 'PUT', path: 'p/q', params: { value: 'v', prevExist: false } },
      { method: 'GET', path: '/', params: { recursive: true } },
    ]);
  });

  test('update (prevExist=true): file, missing (100), directory with a value (102), directory (difference 2)', async () => {
    await scenario([
      { method: 'PUT', path: 'u', params: { value: 'one' } },
      { method: 'PUT', path: 'u', params: { value: 'two', prevExist: true } },
      { method: 'PUT', path: 'missing', params: { value: 'x', prevExist: true } },
      { method: 'PUT', path: 'm1/m2', params: { value: 'x', prevExist: true } },
      { method: 'PUT', path: 'u/below', params: { value: 'x', prevExist: true } },
      { method: 'PUT', path: 'dir', params: { dir: true } },
      { method: 'PUT', path: 'dir', params: { value: 'x', prevExist: true } },
      { method: 'PUT', path: 'dir', params: { prevExist: true } },
      {
        method: 'GET',
        path: 'dir',
        diff: (n, o) => {
          // v2 does not store a directory's modifiedIndex on update; v3 puts its key.
          assert.equal(n.body.node.modifiedIndex, n.body.node.createdIndex);
          assert.equal(o.body.node.modifiedIndex, o.index);
          o.body.node.modifiedIndex = n.body.node.modifiedIndex;
        },
      },
      { method: 'PUT', path: 'u', params: { dir: true, prevExist: true } },
      { method: 'GET', path: 'u' },
    ]);
  });

  test('compareAndSwap: prevValue, prevIndex, both, with prevExist, on a directory, missing', async () => {
    const mod = (prev: Result[], i: number): number => prev[i]!.body.node.modifiedIndex as number;
    await scenario([
      { method: 'PUT', path: 'k', params: { value: 'one' } },
      { method: 'PUT', path: 'k', params: { value: 'two', prevValue: 'one' } },
      { method: 'PUT', path: 'k', params: { value: 'three', prevValue: 'one' } },
      { method: 'PUT', path: 'k', params: (prev) => ({ value: 'three', prevIndex: mod(prev, 1) }) },
      { method: 'PUT', path: 'k', params: (prev) => ({ value: 'four', prevIndex: mod(prev, 1) }) },
      { method: 'PUT', path: 'k', params: (prev) => ({ value: 'four', prevIndex: mod(prev, 1), prevValue: 'bad' }) },
      { method: 'PUT', path: 'k', params: (prev) => ({ value: 'four', prevIndex: mod(prev, 3), prevValue: 'bad' }) },
      { method: 'PUT', path: 'k', params: (prev) => ({ value: 'four', prevIndex: mod(prev, 3), prevValue: 'three' }) },
      { method: 'PUT', path: 'k', params: { value: 'five', prevExist: true, prevValue: 'four' } },
      { method: 'PUT', path: 'k', params: { value: 'six', prevExist: true, prevValue: 'nope' } },
      { method: 'PUT', path: 'k', params: { value: 'six', prevExist: false, prevValue: 'five' } },
      { method: 'PUT', path: 'dd', params: { dir: true } },
      { method: 'PUT', path: 'dd', params: { value: 'x', prevValue: 'y' } },
      { method: 'PUT', path: 'none', params: { value: 'x', prevValue: 'y' } },
      { method: 'PUT', path: 'k/sub', params: { value: 'x', prevValue: 'y' } },
      { method: 'PUT', path: 'gone/sub', params: { value: 'x', prevIndex: 1 } },
      { method: 'GET', path: 'k' },
    ]);
  });

  test('POST: in-order keys (20-digit index names, listing order = creation order), directories, errors', async () => {
    await scenario([
      { method: 'POST', path: 'q', params: { value: 'a' } },
      { method: 'POST', path: 'q', params: { value: 'b' } },
      { method: 'POST', path: 'q', params: { value: 'c' } },
      { method: 'POST', path: 'q', params: { dir: true } },
      { method: 'GET', path: 'q', params: { recursive: true, sorted: true } },
      { method: 'PUT', path: 'f', params: { value: 'file' } },
      { method: 'POST', path: 'f', params: { value: 'x' } },
      { method: 'POST', path: 'f/under', params: { value: 'x' } },
      { method: 'POST', path: 'new/deep', params: { value: 'x' } },
      { method: 'GET', path: 'new', params: { recursive: true } },
    ]);
  });

  test('DELETE: file, missing (no index used), directory flags (102, 108), recursive, file with dir/recursive', async () => {
    await scenario([
      { method: 'PUT', path: 'f', params: { value: '1' } },
      { method: 'DELETE', path: 'f' },
      { method: 'DELETE', path: 'f' },
      { method: 'DELETE', path: 'f', params: { dir: true } },
      { method: 'DELETE', path: 'f', params: { recursive: true } },
      { method: 'PUT', path: 'd/x', params: { value: '1' } },
      { method: 'DELETE', path: 'd' },
      { method: 'DELETE', path: 'd', params: { dir: true } },
      { method: 'DELETE', path: 'd/x', params: { dir: true } },
      { method: 'DELETE', path: 'd', params: { dir: true } },
      { method: 'GET', path: 'd' },
      { method: 'PUT', path: 'r/a/b/c', params: { value: '1' } },
      { method: 'PUT', path: 'r/z', params: { value: '2' } },
      { method: 'PUT', path: 'r/_hidden/h', params: { value: '3' } },
      { method: 'PUT', path: 'r/a/b/c2/d/e/f/g/h/i/j/k/l', params: { value: 'deeper than the first attempt covers' } },
      { method: 'DELETE', path: 'r', params: { recursive: true } },
      { method: 'GET', path: 'r' },
      { method: 'GET', path: 'r/a/b/c' },
      { method: 'PUT', path: 'r2/a', params: { value: '1' } },
      { method: 'DELETE', path: 'r2', params: { recursive: true, dir: true } },
      { method: 'PUT', path: 'g', params: { value: '1' } },
      { method: 'DELETE', path: 'g', params: { recursive: true } },
      { method: 'DELETE', path: 'g/x' },
      { method: 'DELETE', path: 'missing', params: { dir: true } },
      { method: 'DELETE', path: 'missing', params: { recursive: true } },
      { method: 'PUT', path: 'ff', params: { value: '1' } },
      { method: 'DELETE', path: 'ff/x' },
      { method: 'PUT', path: 'keep', params: { value: 'v' } },
      { method: 'DELETE', path: 'keepx' },
      { method: 'GET', path: '/', params: { recursive: true } },
    ]);
  });

  test('compareAndDelete: prevValue, prevIndex, failures (101), directory (102), missing (100)', async () => {
    await scenario([
      { method: 'PUT', path: 'c', params: { value: 'one' } },
      { method: 'DELETE', path: 'c', params: { prevValue: 'two' } },
      { method: 'DELETE', path: 'c', params: (prev) => ({ prevIndex: (prev[0]!.body.node.modifiedIndex as number) + 100 }) },
      { method: 'DELETE', path: 'c', params: (prev) => ({ prevIndex: (prev[0]!.body.node.modifiedIndex as number) + 100, prevValue: 'two' }) },
      { method: 'DELETE', path: 'c', params: { prevValue: 'one' } },
      { method: 'DELETE', path: 'c', params: { prevValue: 'one' } },
      { method: 'PUT', path: 'dd', params: { dir: true } },
      { method: 'DELETE', path: 'dd', params: { prevValue: 'x' } },
      { method: 'DELETE', path: 'dd', params: { prevIndex: 1, recursive: true } },
      { method: 'PUT', path: 'e', params: { value: 'v' } },
      { method: 'DELETE', path: 'e', params: (prev) => ({ prevIndex: prev[9]!.body.node.modifiedIndex as number }) },
      { method: 'DELETE', path: 'nope/x', params: { prevValue: 'x' } },
    ]);
  });

  test('TTL: set, read, removed by a write without ttl, refresh (set/update/CAS), refresh errors (100, 102, 211, 212)', async () => {
    await scenario([
      { method: 'PUT', path: 't1', params: { value: 'v', ttl: 1000 } },
      { method: 'GET', path: 't1' },
      { method: 'PUT', path: 't1', params: { value: 'y', prevExist: true } },
      { method: 'GET', path: 't1' },
      { method: 'PUT', path: 't1', params: { value: 'z', prevExist: true, ttl: 1000 } },
      { method: 'PUT', path: 't1', params: { refresh: true, ttl: 600, prevExist: true } },
      { method: 'PUT', path: 't1', params: { refresh: true, ttl: 700, prevValue: 'z' } },
      { method: 'PUT', path: 't1', params: { refresh: true, ttl: 700, prevValue: 'nope' } },
      { method: 'GET', path: 't1' },
      { method: 'PUT', path: 'nope', params: { refresh: true, ttl: 10 } },
      { method: 'PUT', path: 'nope', params: { refresh: true, ttl: 10, prevExist: true } },
      { method: 'PUT', path: 'nope', params: { refresh: true, ttl: 10, prevValue: 'x' } },
      { method: 'PUT', path: 't1', params: { refresh: true, ttl: 10, value: 'x' } },
      { method: 'PUT', path: 't1', params: { refresh: true } },
      { method: 'PUT', path: 'c', params: { value: 'v', ttl: 1000, prevExist: false } },
      { method: 'PUT', path: 'c', params: { value: 'w', ttl: 1000, prevValue: 'v' } },
      { method: 'PUT', path: 'c', params: { value: 'w2', prevValue: 'w' } },
      { method: 'POST', path: 'q', params: { value: 'queued', ttl: 1000 } },
      { method: 'PUT', path: 'dir/k', params: { value: 'under a permanent dir', ttl: 1000 } },
      { method: 'GET', path: '/', params: { recursive: true } },
      { method: 'DELETE', path: 'c' },
      { method: 'DELETE', path: 't1', params: { prevValue: 'z' } },
      { method: 'PUT', path: 't2', params: { value: 'v', ttl: 1000 } },
      { method: 'PUT', path: 't2', params: { value: 'w' }, diff: keepsCreatedIndex },
      { method: 'PUT', path: 't3', params: { value: 'v', ttl: 1000 } },
      { method: 'PUT', path: 't3', params: { refresh: true, ttl: 500 }, diff: keepsCreatedIndex },
      { method: 'PUT', path: 'z', params: { value: 'zero', ttl: 0 } },
    ]);
    // let the zero-TTL key go on both sides before the next scenario counts indexes
    const s = `/s${scenarioCount}/z`;
    await eventually(async () => (await nativeCall(native, 'GET', s, {})).status === 404 && (await storeCall(store, 'GET', s, {})).status === 404, 15000, `${s} to expire`);
  });

  test('TTL on directories: children without TTL go with it, refresh via update, differences 2, 3 and 4', async () => {
    const r = await scenario([
      { method: 'PUT', path: 'dt', params: { dir: true, ttl: 1000 } },
      { method: 'PUT', path: 'dt/c', params: { value: 'no ttl of its own' } },
      { method: 'PUT', path: 'dt/sub/c2', params: { value: 'deeper' } },
      { method: 'PUT', path: 'dt/e', params: { value: 'earlier', ttl: 300 } },
      {
        method: 'PUT',
        path: 'dt/l',
        params: { value: 'later', ttl: 3000 },
        diff: (n, o) => {
          // difference 4: on the directory's lease, so no ttl of its own shown
          assert.equal(n.body.node.ttl, 3000);
          assert.equal(o.body.node.ttl, undefined);
          assert.equal(o.body.node.expiration, undefined);
          o.body.node.ttl = n.body.node.ttl;
          o.body.node.expiration = n.body.node.expiration;
        },
      },
      {
        method: 'GET',
        path: 'dt',
        params: { recursive: true },
        diff: (n, o) => {
          const ol = find(o.body, `/s${scenarioCount}/dt/l`);
          assert.equal(ol.ttl, undefined);
          Object.assign(ol, { expiration: '<expiration>', ttl: find(n.body, `/s${scenarioCount}/dt/l`).ttl });
        },
      },
      { method: 'PUT', path: 'dt', params: { refresh: true, ttl: 1000 } },
      { method: 'PUT', path: 'dt', params: { dir: true, prevExist: true, ttl: 2000 } },
      {
        method: 'GET',
        path: 'dt',
        params: { recursive: true },
        diff: (n, o) => {
          const s = `/s${scenarioCount}`;
          // difference 2: the directory's modifiedIndex is the update's
          assert.equal(o.body.node.modifiedIndex, o.index);
          o.body.node.modifiedIndex = n.body.node.modifiedIndex;
          // difference 3: nodes re-attached to the new lease show the update's index
          for (const k of [`${s}/dt/c`, `${s}/dt/sub`, `${s}/dt/sub/c2`, `${s}/dt/l`]) {
            const on = find(o.body, k);
            assert.equal(on.modifiedIndex, o.index, k);
            on.modifiedIndex = find(n.body, k).modifiedIndex;
          }
          // the earlier-expiring child kept its own lease
          assert.equal(find(o.body, `${s}/dt/e`).modifiedIndex, find(n.body, `${s}/dt/e`).modifiedIndex);
          // difference 4 again for /dt/l (300 s > the directory's 200 s)
          const ol = find(o.body, `${s}/dt/l`);
          assert.equal(ol.ttl, undefined);
          Object.assign(ol, { expiration: '<expiration>', ttl: find(n.body, `${s}/dt/l`).ttl });
        },
      },
      {
        method: 'GET',
        path: 'dt/c',
        diff: (n, o) => {
          assert.ok(o.body.node.modifiedIndex > n.body.node.modifiedIndex); // difference 3
          o.body.node.modifiedIndex = n.body.node.modifiedIndex;
        },
      },
      { method: 'GET', path: 'dt/e' },
    ]);
    // The children with no TTL of their own are on the directory's lease: they go with it.
    const tree = await store.get(`/s${scenarioCount}/dt`, { recursive: true });
    assert.equal(tree.node.ttl !== undefined && tree.node.ttl > 1500, true);
    assert.ok(r.ours.length > 0);
  });

  test('expiry: a key and a directory (with its subtree) expire in the cluster, as on native v2', async () => {
    const s = `/s${scenarioCount + 1}`;
    await scenario([
      { method: 'PUT', path: 'k', params: { value: 'v', ttl: 1 } },
      { method: 'PUT', path: 'dir', params: { dir: true, ttl: 1 } },
      { method: 'PUT', path: 'dir/child', params: { value: 'c' } },
      { method: 'PUT', path: 'dir/sub/deep', params: { value: 'd' } },
      { method: 'PUT', path: 'stay', params: { value: 's' } },
    ]);
    // difference 5: etcd's minimum lease TTL (2 s by default) holds them a little longer than native's 1 s
    const gone = async (get: (p: string) => Promise<number>): Promise<void> =>
      eventually(async () => (await get(`${s}/k`)) === 404 && (await get(`${s}/dir`)) === 404, 15000, `${s}/k and ${s}/dir to expire`);
    await Promise.all([
      gone(async (p) => (await nativeCall(native, 'GET', p, {})).status),
      gone(async (p) => (await storeCall(store, 'GET', p, {})).status),
    ]);
    scenarioCount--; // compare the state after expiry under the same directory
    await scenario([
      { method: 'GET', path: 'k' },
      { method: 'GET', path: 'dir/child' },
      { method: 'GET', path: 'dir/sub/deep' },
      { method: 'GET', path: '/', params: { recursive: true } },
    ]);
    // each expiry used one index on both sides: 5 writes + 2 expiries
    const n = await nativeCall(native, 'GET', s, { recursive: true });
    const o = await storeCall(store, 'GET', s, { recursive: true });
    assert.equal(n.body.node.nodes.length, 1);
    assert.equal(o.body.node.nodes.length, 1);
    assert.equal(n.index - n.body.node.createdIndex, o.index - o.body.node.createdIndex);
  });

  test('errors carry v2 status, message, cause and the current index; a failed write writes nothing', async () => {
    const before = (await store.currentIndex({ quorum: true })).index;
    const cases: Array<[() => Promise<V2Event>, number, number, string]> = [
      [() => store.get('/e-none/x'), 100, 404, '/e-none'],
      [() => store.delete('/e-none'), 100, 404, '/e-none'],
      [() => store.delete('/e-none', { dir: true }), 100, 404, '/e-none'],
      [() => store.delete('/e-none/a/b', { recursive: true }), 100, 404, '/e-none'],
      [() => store.delete('/e-none', { prevValue: 'x' }), 100, 404, '/e-none'],
      [() => store.put('/e-none', { prevExist: true, value: 'x' }), 100, 404, '/e-none'],
      [() => store.put('/e-none', { prevValue: 'x', value: 'x' }), 100, 404, '/e-none'],
      [() => store.put('/e-none', { refresh: true, ttl: 5 }), 100, 404, '/e-none'],
      [() => store.put('/', { value: 'x' }), 107, 400, '/'],
      [() => store.delete('/'), 107, 400, '/'],
      [() => store.put('/x', { refresh: true, ttl: 5, value: 'v' }), 211, 400, 'A value was provided on a refresh'],
      [() => store.put('/x', { refresh: true }), 212, 400, 'No TTL value set'],
    ];
    for (const [call, code, status, cause] of cases) {
      await assert.rejects(call(), (err: unknown) => {
        assert.ok(err instanceof V2Error);
        assert.equal(err.errorCode, code);
        assert.equal(err.status, status);
        assert.equal(err.cause, cause);
        if (code < 200) assert.equal(err.index, before);
        return true;
      });
    }
    assert.equal((await store.currentIndex({ quorum: true })).index, before, 'no revision was written');
    const e = new V2Error(101, '[a != b]', 7);
    assert.deepEqual(JSON.parse(JSON.stringify(e)), { errorCode: 101, message: 'Compare failed', cause: '[a != b]', index: 7 });
    assert.deepEqual(JSON.parse(JSON.stringify(new V2Error(102, '', 3))), { errorCode: 102, message: 'Not a file', index: 3 });
    assert.equal(e.code, 'ERR_ETCD_PROXY_V2');
    assert.equal(e.message, 'Compare failed');
  });

  test('calls: a write is one transaction, a recursive listing of many TTL keys is one call', async () => {
    const counts = { txn: 0, range: 0, leaseGrant: 0, leaseTimeToLive: 0 };
    const c = client as unknown as Record<keyof typeof counts, (...args: unknown[]) => unknown>;
    const originals = { ...counts } as unknown as Record<keyof typeof counts, (...args: unknown[]) => unknown>;
    for (const k of Object.keys(counts) as (keyof typeof counts)[]) {
      originals[k] = c[k]!.bind(client);
      c[k] = (...args: unknown[]) => {
        counts[k]++;
        return originals[k](...args);
      };
    }
    try {
      await store.put('/calls/seed', { value: 'x' });
      const reset = (): void => {
        for (const k of Object.keys(counts) as (keyof typeof counts)[]) counts[k] = 0;
      };
      reset();
      await store.put('/calls/seed', { value: 'y' });
      await store.put('/calls/seed', { value: 'z', prevValue: 'y' });
      await store.put('/calls/seed', { value: 'w', prevExist: true });
      await store.put('/calls/other', { value: 'w', prevExist: false });
      await store.delete('/calls/other');
      assert.deepEqual(counts, { txn: 5, range: 0, leaseGrant: 0, leaseTimeToLive: 0 });
      reset();
      await store.put('/calls/ttl', { value: 'v', ttl: 100 });
      assert.deepEqual(counts, { txn: 1, range: 0, leaseGrant: 1, leaseTimeToLive: 0 });
      await Promise.all(
        Array.from({ length: 150 }, (_, i) => store.put(`/calls/tree/d${i % 5}/s${i % 3}/k${i}`, { value: String(i), ttl: 100 + i })),
      );
      reset();
      const ev = await store.get('/calls/tree', { recursive: true });
      assert.deepEqual(counts, { txn: 1, range: 0, leaseGrant: 0, leaseTimeToLive: 0 });
      let leaves = 0;
      const walk = (n: V2Node): void => {
        if (n.dir === true) (n.nodes ?? []).forEach(walk);
        else {
          leaves++;
          assert.ok(n.ttl !== undefined && n.ttl > 90 && n.expiration !== undefined, JSON.stringify(n));
        }
      };
      walk(ev.node);
      assert.equal(leaves, 150);
      reset();
      await store.get('/calls/tree/d1/s1/k1');
      assert.deepEqual(counts, { txn: 1, range: 0, leaseGrant: 0, leaseTimeToLive: 0 });
      // GETs arriving together share one Txn (read-batcher.ts), each answered as if alone.
      const paths = [...Array.from({ length: 30 }, (_, i) => `/calls/tree/d${i % 5}/s${i % 3}/k${i}`), '/calls/tree/d2', '/calls/tree/d3/s1', '/calls/missing'];
      const alone: unknown[] = [];
      for (const p of paths) alone.push(await store.get(p).catch((e: unknown) => e));
      reset();
      const together = await Promise.all(paths.map((p) => store.get(p).catch((e: unknown) => e)));
      // 33 GETs of up to 4 range ops: 2 Txns under etcd's 128-op limit, and 1 more for the missing key's second look.
      assert.ok(counts.txn <= 3, `${paths.length} GETs at once took ${counts.txn} Txns`);
      assert.deepEqual(together, alone);
      assert.ok(together.at(-1) instanceof V2Error && (together.at(-1) as V2Error).errorCode === 100);
    } finally {
      for (const k of Object.keys(counts) as (keyof typeof counts)[]) c[k] = originals[k];
    }
  });

  test('two stores: concurrent compare-and-swap increments apply exactly once each; concurrent POSTs stay unique and ordered', async () => {
    const other = storeOn(v3member).store;
    await store.put('/race/n', { value: '0' });
    let successes = 0;
    const worker = async (s: V3Store, times: number): Promise<void> => {
      for (let done = 0; done < times; ) {
        const cur = (await s.get('/race/n', { quorum: true })).node.value!;
        try {
          await s.put('/race/n', { value: String(Number(cur) + 1), prevValue: cur });
          successes++;
          done++;
        } catch (err) {
          if (!(err instanceof V2Error) || err.errorCode !== 101) throw err;
        }
      }
    };
    await Promise.all([worker(store, 20), worker(other, 20), worker(store, 20), worker(other, 20)]);
    assert.equal(successes, 80);
    assert.equal((await store.get('/race/n')).node.value, '80');

    const posted = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? store : other).post('/race/queue', { value: String(i) })));
    const keys = posted.map((e) => e.node.key);
    assert.equal(new Set(keys).size, 40);
    const listed = (await store.get('/race/queue', { sorted: true, quorum: true })).node.nodes!;
    assert.equal(listed.length, 40);
    for (let i = 1; i < listed.length; i++) assert.ok(listed[i - 1]!.createdIndex < listed[i]!.createdIndex, 'listing order = creation order');
    // names are 20-digit v2 indexes: increasing with creation, never past the write's own index
    // (equal to it unless another write landed between the name's read and the write)
    for (let i = 0; i < listed.length; i++) {
      const name = KeyLayout.basename(listed[i]!.key);
      assert.match(name, /^\d{20}$/);
      assert.ok(Number(name) <= listed[i]!.createdIndex);
      if (i > 0) assert.ok(KeyLayout.basename(listed[i - 1]!.key) < name);
    }
    // alone, a POST's name is exactly its index
    const alone = await store.post('/race/queue', { value: 'alone' });
    assert.equal(KeyLayout.basename(alone.node.key), String(alone.node.createdIndex).padStart(20, '0'));
  });

  test('leases: a refreshed key leaves no old lease behind; an unused grant is revoked', async () => {
    const first = await store.put('/leases/k', { value: 'v', ttl: 100 });
    const key = store.layout.fileKey('/leases/k');
    const leaseOf = async (): Promise<number> => (await client.range({ key })).kvs[0]!.lease;
    const old = await leaseOf();
    assert.ok(expiryOfLease(old) !== undefined);
    assert.equal(first.node.ttl, 100);
    await store.put('/leases/k', { refresh: true, ttl: 200 });
    const now = await leaseOf();
    assert.notEqual(now, old);
    await eventually(async () => (await client.leaseTimeToLive(old)).TTL === -1, 5000, 'the replaced lease to be revoked');
    assert.ok((await client.leaseTimeToLive(now)).TTL > 150);
    // a TTL write that fails revokes the lease it was granted
    await store.put('/leases/f', { value: 'x' });
    const seen: number[] = [];
    const grant = client.leaseGrant.bind(client);
    client.leaseGrant = async (ttl, id, opts) => {
      seen.push(id);
      return grant(ttl, id, opts);
    };
    try {
      await assert.rejects(store.put('/leases/f', { value: 'y', ttl: 100, prevExist: false }), (e: unknown) => e instanceof V2Error && e.errorCode === 105);
    } finally {
      client.leaseGrant = grant;
    }
    assert.equal(seen.length, 1);
    await eventually(async () => (await client.leaseTimeToLive(seen[0]!)).TTL === -1, 5000, 'the unused lease to be revoked');
  });

  test('a TTL given to a directory of 150 nodes puts them all on its lease (in steps over the ops limit), and taken away again', async () => {
    await Promise.all(Array.from({ length: 150 }, (_, i) => store.put(`/big/n${i % 10}/k${i}`, { value: String(i) })));
    const before = (await store.currentIndex({ quorum: true })).index;
    const ev = await store.put('/big', { dir: true, prevExist: true, ttl: 1000 });
    assert.equal(ev.action, 'update');
    assert.equal(ev.node.ttl, 1000);
    const dirLease = (await client.range({ key: store.layout.dirKey('/big') })).kvs[0]!.lease;
    assert.ok(expiryOfLease(dirLease) !== undefined);
    const subtree = async (): Promise<KeyValue[]> => {
      const out: KeyValue[] = [];
      for (const lvl of [2, 3]) {
        const level = store.layout.levelPrefix('/big', lvl);
        out.push(...(await client.range({ key: level, rangeEnd: KeyLayout.prefixEnd(level) })).kvs);
      }
      return out;
    };
    const kvs = await subtree();
    assert.equal(kvs.length, 160);
    assert.ok(kvs.every((kv) => kv.lease === dirLease));
    assert.ok(ev.etcdIndex - before >= 2, 'more than one transaction (steps)');
    // none shows a TTL of its own
    const listing = await store.get('/big', { recursive: true });
    assert.equal(listing.node.ttl, 1000);
    assert.ok(listing.node.nodes!.every((d) => d.ttl === undefined && d.nodes!.every((k) => k.ttl === undefined)));
    // the TTL taken away: all back to no lease
    await store.put('/big', { dir: true, prevExist: true });
    const after = await subtree();
    assert.equal(after.length, 160);
    assert.ok(after.every((kv) => kv.lease === 0));
    assert.equal((await client.range({ key: store.layout.dirKey('/big') })).kvs[0]!.lease, 0);
    await eventually(async () => (await client.leaseTimeToLive(dirLease)).TTL === -1, 5000, "the directory's old lease to be revoked");
  });

  test('deep paths (70 levels): set, get, listing, recursive delete', async () => {
    const parts = Array.from({ length: 70 }, (_, i) => `l${i}`);
    const deep = `/deep/${parts.join('/')}`;
    const ev = await store.put(deep, { value: 'bottom' });
    assert.equal(ev.action, 'set');
    assert.equal((await store.get(deep)).node.value, 'bottom');
    await assert.rejects(store.get(`${deep}/x/y`), (e: unknown) => e instanceof V2Error && e.errorCode === 104 && e.cause === deep);
    await assert.rejects(store.get(`/deep/${parts.slice(0, 65).join('/')}/nope/x`), (e: unknown) => e instanceof V2Error && e.errorCode === 100);
    const listing = await store.get('/deep', { recursive: true });
    let depth = 0;
    for (let n: V2Node | undefined = listing.node; n !== undefined; n = n.nodes?.[0]) depth++;
    assert.equal(depth, 71);
    await store.put(`/deep/${parts.slice(0, 40).join('/')}`, { dir: true, prevExist: true, ttl: 100 });
    const del = await store.delete('/deep', { recursive: true });
    assert.equal(del.node.dir, true);
    await assert.rejects(store.get(deep), (e: unknown) => e instanceof V2Error && e.errorCode === 100 && e.cause === '/deep');
  });
});

describe("V3Store and etcd's v2v3 emulation read each other's data", { skip: skipWithoutEtcd }, () => {
  let emu: LocalEtcd;
  let store: V3Store;
  const emuKeys = (p: string, init: { method?: string; query?: string } = {}) =>
    http(`${emu.clientUrl}/v2/keys${encodePath(p)}${init.query === undefined ? '' : `?${init.query}`}`, { method: init.method ?? 'GET' });

  before(async () => {
    // The emulation's /health panics (one of its stubs): wait for its /v2/keys instead.
    emu = await member({ enableV2: true, extraArgs: ['--experimental-enable-v2v3', '/v2'], waitHealthy: false });
    await eventually(async () => (await http(`${emu.clientUrl}/v2/keys/`).catch(() => ({ status: 0 }))).status === 200, 20000, 'the emulation to serve /v2/keys');
    ({ store } = storeOn(emu, '/v2'));
  });
  after(cleanup);

  test('written by V3Store, read through the emulation', async () => {
    const a = await store.put('/i/a', { value: 'one' });
    await store.put('/i/d', { dir: true });
    const x = await store.put('/i/d/x', { value: 'two' });
    await store.put('/i/ünï code/k ey', { value: 'three ☃' });
    const ra = await emuKeys('/i/a');
    assert.equal(ra.status, 200);
    assert.deepEqual(ra.json(), { action: 'get', node: { key: '/i/a', value: 'one', modifiedIndex: a.node.modifiedIndex, createdIndex: a.node.createdIndex } });
    const rx = (await emuKeys('/i/d/x')).json() as { node: V2Node };
    assert.deepEqual(rx.node, x.node);
    const rd = (await emuKeys('/i/d')).json() as { node: V2Node };
    assert.equal(rd.node.dir, true);
    assert.deepEqual(rd.node.nodes?.map((n) => [n.key, n.value]), [['/i/d/x', 'two']]);
    const ru = (await emuKeys('/i/ünï code/k ey')).json() as { node: V2Node };
    assert.equal(ru.node.value, 'three ☃');
    const ours = await store.get('/i', { recursive: true, sorted: true });
    const theirs = (await emuKeys('/i', { query: 'recursive=true&sorted=true' })).json() as { node: V2Node };
    const shape = (n: V2Node): unknown => ({ key: n.key, value: n.value, dir: n.dir, m: n.modifiedIndex, c: n.createdIndex, nodes: n.nodes?.map(shape) });
    assert.deepEqual(shape(theirs.node), shape(ours.node));
  });

  test('written through the emulation, read (and changed) by V3Store', async () => {
    assert.equal((await emuKeys('/j/b', { method: 'PUT', query: 'value=three' })).status, 201);
    assert.equal((await emuKeys('/j/e', { method: 'PUT', query: 'dir=true' })).status, 201);
    const y = (await emuKeys('/j/e/y', { method: 'PUT', query: 'value=four' })).json() as { node: V2Node };
    const b = await store.get('/j/b');
    assert.equal(b.node.value, 'three');
    const ey = await store.get('/j/e/y');
    assert.deepEqual(ey.node, y.node);
    const tree = await store.get('/j', { recursive: true });
    assert.deepEqual(
      tree.node.nodes?.map((n) => [n.key, n.value ?? null, n.dir ?? false, n.nodes?.map((c) => c.key) ?? null]),
      [
        ['/j/b', 'three', false, null],
        ['/j/e', null, true, ['/j/e/y']],
      ],
    );
    await store.put('/j/b', { value: 'five', prevValue: 'three' });
    assert.equal(((await emuKeys('/j/b')).json() as { node: V2Node }).node.value, 'five');
    await store.delete('/j/e', { recursive: true });
    assert.equal((await emuKeys('/j/e/y')).status, 404);
    await store.delete('/j/b');
    assert.equal((await emuKeys('/j/b')).status, 404);
  });
});
