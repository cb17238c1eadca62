/**
 * The v2 key space over etcd v3: GET, PUT, POST and DELETE of `/v2/keys` with
 * the semantics of etcd 3.4's native v2 store (etcdserver/api/v2store), kept
 * in the v3 keys of etcd's `--experimental-enable-v2v3` layout
 * ({@link KeyLayout}), TTLs on leases ({@link leaseIdFor}).
 *
 * Reads are one transaction of ranges (plus one per 32 levels of a deep
 * recursive listing, and one more to name the missing component of a 404).
 *
 * Writes are one v3 transaction each (its revision is the write's v2 index
 * plus one). The transaction compares what the v2 decision rests on (the
 * parent directory, the node), its success branch holds the puts (missing
 * parent directories first, then the node's own operation, last the action
 * key `P/act` with the v2 action name) and its failure branch the ranges that
 * show the state the decision failed on. The first attempt is planned on the
 * common case without reading (the parent exists and has no TTL, the node is
 * a file); when its compares fail, the failure branch's ranges give a
 * consistent state: either v2 answers an error there (answered with that
 * state's index, nothing written) or a plan that pins exactly that state is
 * sent. A plan is sent again only when its compares failed, so nothing is
 * ever applied twice; attempts are bounded.
 *
 * Op order in a write's revision (for readers of the watch stream): created
 * parent directories, then (a TTL change on a directory) its subtree's keys
 * re-attached to their new lease, then the node's own put or delete (a
 * recursive delete: its levels deepest first, then the directory key), then
 * the action key. A revision without the action key is a lease expiry.
 */
import { setMaxListeners } from 'node:events';
import { status } from '@grpc/grpc-js';
import { InvalidOptionError } from '../errors.js';
import { describe, signalOption } from '../validate-options.js';
import { ReadBatcher } from './read-batcher.js';
import { KeyLayout } from './key-layout.js';
import { effectiveLease, expiryFields, expiryOfLease, grantSeconds, leaseIdFor } from './lease-expiry.js';
import { MAX_TXN_OPS } from './rpc-types.js';
import type {
  Compare,
  KeyValue,
  RangeRequest,
  RangeResponse,
  RequestOp,
  ResponseHeader,
  TxnRequest,
  TxnResponse,
} from './rpc-types.js';
import { V2Error } from './v2-error.js';
import { V3RpcError } from './v3-client.js';
import type { V3Client } from './v3-client.js';

/**
 * A node as v2 answers it (v2store's NodeExtern as JSON; fields in v2's
 * order, absent ones left out as Go's `omitempty` leaves them out). The
 * root's `key`, `modifiedIndex` and `createdIndex` ("/", 0, 0) are not
 * enumerable, so that its JSON has none of them, as v2's.
 * @public
 */
export interface V2Node {
  key: string;
  value?: string;
  dir?: true;
  /** RFC 3339 time of expiry, when the node has a TTL. */
  expiration?: string;
  /** Seconds left (rounded up), when the node has a TTL and it is not 0. */
  ttl?: number;
  nodes?: V2Node[];
  modifiedIndex: number;
  createdIndex: number;
}

/**
 * A v2 event: an answer of the keys API (or of a watch).
 * @public
 */
export interface V2Event {
  action: string;
  node: V2Node;
  prevNode?: V2Node;
  /** `X-Etcd-Index`: the v3 header revision - 1 (not in the JSON body). */
  etcdIndex: number;
  /** The raft term of the answer's header (`X-Raft-Term`). */
  raftTerm?: number;
}

/**
 * Options of {@link V3Store}.
 * @public
 */
export interface V3StoreOptions {
  /** The gRPC client of the cluster. */
  client: V3Client;
  /** The v3 key prefix of the v2 tree (etcd's `--experimental-enable-v2v3` value). Default: `/v2`. */
  prefix?: string;
  /** Aborting it closes the store, as {@link V3Store.close} does. */
  signal?: AbortSignal;
}

/**
 * Options of {@link V3Store.get} (v2's GET flags).
 * @public
 */
export interface V3GetOptions {
  recursive?: boolean;
  /** Listings are always sorted by key (v2's unsorted order is unspecified); accepted for symmetry. */
  sorted?: boolean;
  /** true: a linearizable read; default: serializable (a member's own state, as v2's default GET). */
  quorum?: boolean;
}

/**
 * Options of {@link V3Store.put} (v2's PUT form).
 * @public
 */
export interface V3PutOptions {
  value?: string;
  dir?: boolean;
  /** Seconds; `null` or undefined: no TTL (v2 makes the node permanent on any write without one). */
  ttl?: number | null;
  refresh?: boolean;
  prevExist?: boolean;
  prevValue?: string;
  prevIndex?: number;
}

/**
 * Options of {@link V3Store.post} (v2's POST form).
 * @public
 */
export interface V3PostOptions {
  value?: string;
  dir?: boolean;
  ttl?: number | null;
}

/**
 * Options of {@link V3Store.delete} (v2's DELETE flags).
 * @public
 */
export interface V3DeleteOptions {
  dir?: boolean;
  recursive?: boolean;
  prevValue?: string;
  prevIndex?: number;
}

/** Conflicting attempts before a write gives up with 300. */
const MAX_ATTEMPTS = 10;
/** Levels of a recursive listing read per transaction. */
const LEVEL_BATCH = 32;
/** Levels below a directory a recursive delete's first (unread) attempt covers. */
const BLIND_DELETE_LEVELS = 8;
/** Levels below a directory one recursive delete can remove (one delete op each). */
const MAX_DELETE_LEVELS = 120;
/** POST attempts that require no write at all since the read (the name is then exactly the write's index). */
const POST_INDEX_ATTEMPTS = 2;
/** Attempts of a POST (concurrent POSTs into one directory take turns). */
const POST_MAX_ATTEMPTS = 200;
/** Subtree keys re-attached per transaction when a directory's TTL changes. */
const REATTACH_CHUNK = 100;

/** One range of a read. */
interface Read {
  key: Buffer;
  rangeEnd?: Buffer;
  limit?: number;
  keysOnly?: boolean;
  countOnly?: boolean;
}

/** A node's file and directory keys as read. */
interface Slot {
  readonly path: string;
  readonly file: KeyValue | undefined;
  readonly dir: KeyValue | undefined;
}

/** A consistent read (one revision). */
interface Snapshot {
  readonly header: ResponseHeader;
  readonly results: readonly RangeResponse[];
  /** More ranges at the same revision. */
  readMore(reads: readonly Read[]): Promise<RangeResponse[]>;
}

/** One write transaction and what its success means. */
interface Attempt {
  readonly compares: Compare[];
  readonly success: RequestOp[];
  /** The answer of a successful transaction. */
  answer(resp: TxnResponse, nowMs: number): V2Event;
  /** false: an intermediate step (part of a big re-attachment); read and plan again after it. */
  readonly final?: boolean;
  /** The lease the node is put on (tells whether a granted lease was used). */
  readonly attached?: number;
  /** Leases the node left that may now have no key (revoked in the background when so); from the answer for a blind attempt. */
  readonly replaced?: readonly number[] | ((resp: TxnResponse) => readonly number[]);
}

/** The state read changed under a read that pinned its revision (compacted): read again from the start. */
class Restart extends Error {}

const v2Index = (revision: number): number => (revision > 0 ? revision - 1 : 0);

// ---- compares and ops ----

const absent = (key: Buffer): Compare => ({ result: 'EQUAL', target: 'VERSION', key, version: 0 });
const exists = (key: Buffer): Compare => ({ result: 'GREATER', target: 'VERSION', key, version: 0 });
const modIs = (key: Buffer, modRevision: number): Compare => ({ result: 'EQUAL', target: 'MOD', key, modRevision });
const leaseIs = (key: Buffer, lease: number): Compare => ({ result: 'EQUAL', target: 'LEASE', key, lease });
const valueIs = (key: Buffer, value: string): Compare => ({ result: 'EQUAL', target: 'VALUE', key, value: Buffer.from(value) });
const rangeEmpty = (key: Buffer): Compare => ({ result: 'EQUAL', target: 'VERSION', key, rangeEnd: KeyLayout.prefixEnd(key), version: 0 });
const rangeUnchangedSince = (key: Buffer, revision: number): Compare => ({
  result: 'LESS',
  target: 'MOD',
  key,
  rangeEnd: KeyLayout.prefixEnd(key),
  modRevision: revision + 1,
});
/** The pin of one key at its read state: absent, or unchanged since it was read. */
const pin = (key: Buffer, kv: KeyValue | undefined): Compare => (kv === undefined ? absent(key) : modIs(key, kv.modRevision));

const putOp = (key: Buffer, value: string | undefined, lease: number, prevKv = false): RequestOp => ({
  requestPut: value === undefined ? { key, lease, prevKv, ignoreValue: true } : { key, value: Buffer.from(value), lease, prevKv },
});
const deleteOp = (key: Buffer, prevKv = false): RequestOp => ({ requestDeleteRange: { key, prevKv } });
const deletePrefixOp = (prefix: Buffer): RequestOp => ({ requestDeleteRange: { key: prefix, rangeEnd: KeyLayout.prefixEnd(prefix) } });
const one = (key: Buffer): Read => ({ key });
const prefixRead = (prefix: Buffer, extra?: Omit<Read, 'key' | 'rangeEnd'>): Read => ({ key: prefix, rangeEnd: KeyLayout.prefixEnd(prefix), ...extra });

function rangeOp(r: Read, serializable: boolean, revision = 0): RequestOp {
  const req: RangeRequest = { key: r.key, serializable };
  if (r.rangeEnd !== undefined) req.rangeEnd = r.rangeEnd;
  if (r.limit !== undefined) req.limit = r.limit;
  if (r.keysOnly === true) req.keysOnly = true;
  if (r.countOnly === true) req.countOnly = true;
  if (revision > 0) req.revision = revision;
  return { requestRange: req };
}

function prevKvAt(resp: TxnResponse, i: number): KeyValue | undefined {
  const r = resp.responses[i];
  const kv = r?.responsePut?.prevKv ?? r?.responseDeleteRange?.prevKvs?.[0];
  return kv !== null && kv !== undefined && kv.createRevision > 0 ? kv : undefined;
}

/** The lease a blind attempt's node left (from the prevKv of op `i`), unless the parent's (`parentLease`) or the new one. */
function leftLease(resp: TxnResponse, i: number, parentLease: number, now: number): number[] {
  const lease = prevKvAt(resp, i)?.lease ?? 0;
  return lease !== 0 && lease !== parentLease && lease !== now ? [lease] : [];
}

function kvsAt(resp: TxnResponse, i: number): KeyValue[] {
  return resp.responses[i]?.responseRange?.kvs ?? [];
}

// ---- nodes ----

/** A v2 node in v2's field order; `ttl`/`expiration` when the node has its own lease (not its parent's). */
function makeNode(f: {
  key: string;
  value?: string | undefined;
  dir?: boolean;
  lease?: number;
  parentLease?: number;
  nodes?: V2Node[] | undefined;
  modifiedIndex: number;
  createdIndex: number;
  nowMs: number;
}): V2Node {
  const node = { key: f.key } as V2Node;
  if (f.dir === true) node.dir = true;
  else node.value = f.value ?? '';
  const lease = f.lease ?? 0;
  if (lease !== 0 && lease !== (f.parentLease ?? 0)) {
    const expiry = expiryOfLease(lease);
    if (expiry !== undefined) Object.assign(node, expiryFields(expiry, f.nowMs));
  }
  if (f.nodes !== undefined && f.nodes.length > 0) node.nodes = f.nodes;
  node.modifiedIndex = f.modifiedIndex;
  node.createdIndex = f.createdIndex;
  return node;
}

/** A node as stored (a prevNode, a listed node). */
function nodeOfKv(path: string, kv: KeyValue, dir: boolean, parentLease: number, nowMs: number, nodes?: V2Node[]): V2Node {
  return makeNode({
    key: path,
    value: dir ? undefined : kv.value.toString('utf8'),
    dir,
    lease: kv.lease,
    parentLease,
    nodes,
    modifiedIndex: v2Index(kv.modRevision),
    createdIndex: v2Index(kv.createRevision),
    nowMs,
  });
}

/** The root directory: no key, no indexes in its JSON (as v2). */
function rootNode(nodes: V2Node[]): V2Node {
  const node = { dir: true } as V2Node;
  if (nodes.length > 0) node.nodes = nodes;
  Object.defineProperties(node, {
    key: { value: '/', enumerable: false, writable: true, configurable: true },
    modifiedIndex: { value: 0, enumerable: false, writable: true, configurable: true },
    createdIndex: { value: 0, enumerable: false, writable: true, configurable: true },
  });
  return node;
}

/** Go's string order (UTF-8 bytes, the same as code points). */
function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

function sortNodes(nodes: V2Node[]): V2Node[] {
  return nodes.sort((a, b) => compareKeys(a.key, b.key));
}

/** v2's compare-failed cause (`[prevValue != value]`, `[prevIndex != modifiedIndex]`, or both). */
function compareFailure(kv: KeyValue, prevValue: string, prevIndex: number): string | undefined {
  const value = kv.value.toString('utf8');
  const modifiedIndex = v2Index(kv.modRevision);
  const indexMatch = prevIndex === 0 || modifiedIndex === prevIndex;
  const valueMatch = prevValue === '' || value === prevValue;
  if (indexMatch && valueMatch) return undefined;
  if (indexMatch) return `[${prevValue} != ${value}]`;
  if (valueMatch) return `[${prevIndex} != ${modifiedIndex}]`;
  return `[${prevValue} != ${value}] [${prevIndex} != ${modifiedIndex}]`;
}

/**
 * A path and its ancestors as read at one revision: `slots` holds the
 * ancestors (root excluded, shallowest first), then the node.
 */
class PathState {
  readonly path: string;
  readonly slots: readonly Slot[];
  readonly revision: number;
  private readonly layout: KeyLayout;

  constructor(layout: KeyLayout, path: string, slots: readonly Slot[], revision: number) {
    this.layout = layout;
    this.path = path;
    this.slots = slots;
    this.revision = revision;
  }

  /** The reads that make a PathState of `path` (two keys per ancestor and for the node). */
  static reads(layout: KeyLayout, path: string): Read[] {
    const out: Read[] = [];
    for (const p of [...KeyLayout.ancestors(path), path]) {
      if (p === '/') continue;
      out.push(one(layout.fileKey(p)), one(layout.dirKey(p)));
    }
    return out;
  }

  /** Reads the state of `path` from `results` (as laid out by `reads`), from `offset`. */
  static from(layout: KeyLayout, path: string, results: readonly RangeResponse[], revision: number, offset = 0): PathState {
    const slots: Slot[] = [];
    let i = offset;
    for (const p of [...KeyLayout.ancestors(path), path]) {
      if (p === '/') continue;
      slots.push({ path: p, file: results[i]?.kvs[0], dir: results[i + 1]?.kvs[0] });
      i += 2;
    }
    return new PathState(layout, path, slots, revision);
  }

  /** The state with one more (unread, absent) node below: a POST's new key. */
  withChild(path: string): PathState {
    return new PathState(this.layout, path, [...this.slots, { path, file: undefined, dir: undefined }], this.revision);
  }

  get node(): Slot {
    return this.slots[this.slots.length - 1]!;
  }

  get ancestors(): readonly Slot[] {
    return this.slots.slice(0, -1);
  }

  /** The parent directory's key-value (undefined for the root or a missing parent). */
  get parentDir(): KeyValue | undefined {
    return this.slots.length >= 2 ? this.slots[this.slots.length - 2]!.dir : undefined;
  }

  private get index(): number {
    return v2Index(this.revision);
  }

  error(code: number, cause: string): V2Error {
    return new V2Error(code, cause, this.index);
  }

  /** v2's lookup of an existing node (`internalGet`): 104 for a file on the way, 100 for the first missing component. */
  lookupError(): V2Error | undefined {
    for (const s of this.ancestors) {
      if (s.dir !== undefined) continue;
      return this.error(s.file !== undefined ? 104 : 100, s.path);
    }
    const n = this.node;
    return n.dir === undefined && n.file === undefined ? this.error(100, n.path) : undefined;
  }

  /**
   * v2's walk to create the node (`internalCreate`): 104 for a file on the
   * way; else the directories to create and the lease they inherit (the
   * deepest existing ancestor's).
   */
  createWalk(): V2Error | { missing: string[]; inherit: number } {
    const missing: string[] = [];
    let inherit = 0;
    for (const s of this.ancestors) {
      if (s.dir !== undefined) inherit = s.dir.lease;
      else if (s.file !== undefined) return this.error(104, s.path);
      else missing.push(s.path);
    }
    return { missing, inherit };
  }

  /**
   * The compares that hold while this state holds for a successful plan:
   * the deepest existing ancestor directory unchanged (its existence implies
   * its ancestors', its lease is what the node inherits), the first missing
   * ancestor still missing (nothing can appear below it without it), the
   * node's two keys as read.
   */
  pins(): Compare[] {
    const out: Compare[] = [];
    const anc = this.ancestors;
    let deepest = -1;
    for (let i = 0; i < anc.length; i++) if (anc[i]!.dir !== undefined) deepest = i;
    if (deepest >= 0) out.push(modIs(this.layout.dirKey(anc[deepest]!.path), anc[deepest]!.dir!.modRevision));
    const firstMissing = anc[deepest + 1];
    if (firstMissing !== undefined) out.push(absent(this.layout.fileKey(firstMissing.path)), absent(this.layout.dirKey(firstMissing.path)));
    const n = this.node;
    out.push(pin(this.layout.fileKey(n.path), n.file), pin(this.layout.dirKey(n.path), n.dir));
    return out;
  }
}

/**
 * v2's key space on a v3 cluster. See the module comment for how each
 * request maps to v3 calls.
 * @public
 */
export class V3Store {
  /** The v3 key prefix of the tree. */
  readonly prefix: string;
  /** The key layout under `prefix`. */
  readonly layout: KeyLayout;
  private readonly client: V3Client;
  private readonly closer = new AbortController();
  private closed = false;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.close();
  /** The header revision of this store's latest successful write (0: none yet). */
  private lastRevision = 0;
  /** The end of the queue of POSTs. */
  private postTail: Promise<unknown> = Promise.resolve();
  /** Reads (GETs) arriving together, sent as one Txn. */
  readonly reads = new ReadBatcher((txn, serializable) => this.client.txn(txn, { ...this.callOptions, serializable }));

  constructor(options: V3StoreOptions) {
    if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', `expected an object, got ${describe(options)}`);
    const client = options.client as unknown;
    if (client === null || typeof client !== 'object' || typeof (client as { txn?: unknown }).txn !== 'function') {
      throw new InvalidOptionError('client', `expected a V3Client, got ${describe(client)}`);
    }
    const prefix = options.prefix ?? '/v2';
    if (typeof prefix !== 'string' || prefix === '' || prefix.endsWith('/')) {
      throw new InvalidOptionError('prefix', `expected a non-empty string not ending with "/", got ${describe(prefix)}`);
    }
    this.client = options.client;
    this.prefix = prefix;
    this.layout = new KeyLayout(prefix);
    // Every call in flight listens to it (and lets go when done): no leak warning at high concurrency.
    setMaxListeners(0, this.closer.signal);
    this.signal = signalOption(options.signal);
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (this.signal?.aborted) this.close();
  }

  /** Stops the store: calls in flight are cancelled, later calls fail with 300. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    this.closer.abort();
  }

  private assertOpen(): void {
    if (this.closed) throw new V2Error(300, 'the v3 store is closed', 0);
  }

  private get callOptions(): { signal: AbortSignal } {
    return { signal: this.closer.signal };
  }

  /** The current v2 index (header revision - 1) and raft term; `quorum`: linearizable. */
  async currentIndex(o: { quorum?: boolean } = {}): Promise<{ index: number; raftTerm: number }> {
    this.assertOpen();
    const serializable = o.quorum !== true;
    const r = await this.client.range({ key: this.layout.actionKey, countOnly: true, serializable }, { ...this.callOptions, serializable });
    return { index: v2Index(r.header.revision), raftTerm: r.header.raftTerm };
  }

  // ---------------------------------------------------------------- reads

  /** A v2 GET (action "get"). */
  async get(path: string, o: V3GetOptions = {}): Promise<V2Event> {
    this.assertOpen();
    const p = KeyLayout.normalize(path);
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.getOnce(p, o.recursive === true, o.quorum !== true && attempt === 0);
      } catch (err) {
        if (err instanceof Restart && attempt < 3) continue;
        throw err;
      }
    }
  }

  private async getOnce(p: string, recursive: boolean, serializable: boolean): Promise<V2Event> {
    const L = this.layout;
    const d = KeyLayout.depth(p);
    const isRoot = p === '/';
    const parent = KeyLayout.parent(p);
    const reads: Read[] = [];
    if (!isRoot) {
      reads.push(one(L.fileKey(p)), one(L.dirKey(p)));
      if (parent !== '/') reads.push(one(L.dirKey(parent)));
    }
    const first = reads.length;
    const batch = recursive ? LEVEL_BATCH : 1;
    for (let i = 1; i <= batch; i++) reads.push(prefixRead(L.levelPrefix(p, d + i)));
    const { header, results } = await this.readTxn(reads, serializable);
    const revision = header.revision;
    const answer = (node: V2Node): V2Event => ({ action: 'get', node, etcdIndex: v2Index(revision), raftTerm: header.raftTerm });
    let topLease = 0;
    let parentLease = 0;
    let dirKv: KeyValue | undefined;
    if (!isRoot) {
      const fileKv = results[0]!.kvs[0];
      dirKv = results[1]!.kvs[0];
      parentLease = parent !== '/' ? (results[2]!.kvs[0]?.lease ?? 0) : 0;
      if (dirKv === undefined && fileKv === undefined) {
        const more = await this.readTxn(PathState.reads(L, p), serializable, revision);
        const state = PathState.from(L, p, more.results, revision);
        throw state.lookupError() ?? state.error(100, p);
      }
      if (dirKv === undefined) return answer(nodeOfKv(p, fileKv!, false, parentLease, Date.now()));
      topLease = dirKv.lease;
    }
    const levels: KeyValue[][] = results.slice(first).map((r) => r.kvs);
    while (recursive && levels[levels.length - 1]!.length > 0) {
      const next: Read[] = [];
      for (let i = 1; i <= LEVEL_BATCH; i++) next.push(prefixRead(L.levelPrefix(p, d + levels.length + i)));
      const more = await this.readTxn(next, serializable, revision);
      levels.push(...more.results.map((r) => r.kvs));
    }
    const nowMs = Date.now();
    const nodes = this.buildTree(p, topLease, levels, recursive, nowMs);
    if (isRoot) return answer(rootNode(nodes));
    return answer(nodeOfKv(p, dirKv!, true, parentLease, nowMs, nodes));
  }

  /** The listing below `top` from its levels (hidden names and what is below them left out), sorted by key. */
  private buildTree(top: string, topLease: number, levels: readonly KeyValue[][], recursive: boolean, nowMs: number): V2Node[] {
    interface Entry {
      path: string;
      kv: KeyValue;
      dir: boolean;
      parentLease: number;
      children: Entry[];
    }
    const dirs = new Map<string, { lease: number; children: Entry[] }>();
    const topChildren: Entry[] = [];
    dirs.set(top, { lease: topLease, children: topChildren });
    for (const level of levels) {
      for (const kv of level) {
        const dec = this.layout.decode(kv.key);
        if (dec === undefined) continue;
        const parent = dirs.get(KeyLayout.parent(dec.path));
        if (parent === undefined || KeyLayout.basename(dec.path).startsWith('_')) continue;
        const entry: Entry = { path: dec.path, kv, dir: dec.dir, parentLease: parent.lease, children: [] };
        parent.children.push(entry);
        if (dec.dir && recursive) dirs.set(dec.path, { lease: kv.lease, children: entry.children });
      }
    }
    const build = (entries: Entry[]): V2Node[] =>
      sortNodes(entries.map((e) => nodeOfKv(e.path, e.kv, e.dir, e.parentLease, nowMs, e.dir && recursive ? build(e.children) : undefined)));
    return build(topChildren);
  }

  /**
   * Ranges in one transaction (more when over the ops limit, at the first
   * one's revision); `revision` reads at that revision. A pinned read that a
   * member cannot serve (not there yet) is asked linearizably; a compacted
   * one throws Restart.
   */
  private async readTxn(reads: readonly Read[], serializable: boolean, revision = 0): Promise<{ header: ResponseHeader; results: RangeResponse[] }> {
    let header: ResponseHeader | undefined;
    const results: RangeResponse[] = [];
    let i = 0;
    do {
      const chunk = reads.slice(i, i + MAX_TXN_OPS);
      const rev = header?.revision ?? revision;
      const resp = await this.readChunk(chunk, serializable, rev);
      header ??= resp.header;
      for (const r of resp.responses) results.push(r.responseRange ?? { header: resp.header, kvs: [], more: false, count: 0 });
      i += MAX_TXN_OPS;
    } while (i < reads.length);
    return { header: header!, results };
  }

  private async readChunk(chunk: readonly Read[], serializable: boolean, revision: number): Promise<TxnResponse> {
    const txn = (s: boolean): TxnRequest => ({ compare: [], success: chunk.map((r) => rangeOp(r, s, revision)), failure: [] });
    try {
      // Unpinned reads arriving together share one Txn (read-batcher.ts).
      if (revision === 0) return await this.reads.read(txn(serializable).success, serializable);
      return await this.client.txn(txn(serializable), { ...this.callOptions, serializable });
    } catch (err) {
      const details = (err as { details?: unknown }).details;
      if (typeof details === 'string' && /compacted/.test(details)) throw new Restart(details);
      if (revision > 0 && serializable && typeof details === 'string' && /future revision/.test(details)) {
        return await this.client.txn(txn(false), this.callOptions);
      }
      throw err;
    }
  }

  // ---------------------------------------------------------------- writes

  /** A v2 PUT, dispatched as v2 does: create (prevExist=false), update (prevExist=true), compareAndSwap (prevValue/prevIndex), set. */
  async put(path: string, o: V3PutOptions = {}): Promise<V2Event> {
    this.assertOpen();
    const p = KeyLayout.normalize(path);
    const value = o.value ?? '';
    const refresh = o.refresh === true;
    const prevValue = o.prevValue ?? '';
    const prevIndex = o.prevIndex ?? 0;
    const expiryMs = this.expiryOf(o.ttl);
    if (refresh && value !== '') throw new V2Error(211, 'A value was provided on a refresh', 0);
    if (refresh && expiryMs === undefined) throw new V2Error(212, 'No TTL value set', 0);
    if (!Number.isSafeInteger(prevIndex) || prevIndex < 0) throw new V2Error(203, 'invalid value for "prevIndex"', 0);
    if (p === '/') throw new V2Error(107, '/', (await this.currentIndex({ quorum: true })).index);
    const own = expiryMs === undefined ? 0 : await this.grantLease(expiryMs);
    if (o.prevExist === true) {
      if (prevIndex === 0 && prevValue === '') return this.update(p, value, refresh, own);
      return this.compareAndSwap(p, value, prevValue, prevIndex, refresh, own);
    }
    if (o.prevExist === false) return this.create(p, value, o.dir === true, own);
    if (prevIndex > 0 || prevValue !== '') return this.compareAndSwap(p, value, prevValue, prevIndex, refresh, own);
    return this.set(p, value, o.dir === true, refresh, own);
  }

  /**
   * A v2 POST: a key named after the write's v2 index (20 digits) in directory
   * `dirPath` (action "create"). The POSTs of one store go one at a time
   * (concurrent ones into one directory could only take turns: each needs the
   * index nothing else takes first); each is one transaction when nothing
   * else was written since this store's previous write.
   */
  post(dirPath: string, o: V3PostOptions = {}): Promise<V2Event> {
    this.assertOpen();
    const run = this.postTail.then(() => this.postNow(dirPath, o));
    this.postTail = run.catch(() => undefined);
    return run;
  }

  private async postNow(dirPath: string, o: V3PostOptions): Promise<V2Event> {
    this.assertOpen();
    const dirP = KeyLayout.normalize(dirPath);
    const expiryMs = this.expiryOf(o.ttl);
    const own = expiryMs === undefined ? 0 : await this.grantLease(expiryMs);
    const L = this.layout;
    const reads = [...PathState.reads(L, dirP), one(L.actionKey)];
    const dir = o.dir === true;
    const value = o.value ?? '';
    const nameOf = (revision: number): string => {
      const name = String(revision).padStart(20, '0');
      return dirP === '/' ? `/${name}` : `${dirP}/${name}`;
    };
    // Without reading: this store's latest write is the latest of all (the action key still
    // has its revision), the directory exists without a TTL.
    const hint = this.lastRevision;
    const blind =
      hint === 0
        ? undefined
        : (): Attempt => {
            const p = nameOf(hint);
            const node = dir ? L.dirKey(p) : L.fileKey(p);
            return {
              compares: [...this.parentCommon(p), modIs(L.actionKey, hint), absent(L.fileKey(p)), absent(L.dirKey(p))],
              success: [putOp(node, dir ? '' : value, own), this.actOp('create')],
              attached: own,
              answer: (resp, nowMs) => {
                const idx = v2Index(resp.header.revision);
                return this.event('create', resp, makeNode({ key: p, value, dir, lease: own, modifiedIndex: idx, createdIndex: idx, nowMs }));
              },
            };
          };
    let plans = 0;
    return this.write(
      reads,
      blind,
      own,
      (snap) => {
        const revision = snap.header.revision;
        const p = nameOf(revision);
        const name = KeyLayout.basename(p);
        const state = PathState.from(L, dirP, snap.results, revision).withChild(p);
        const act = snap.results[reads.length - 1]!.kvs[0];
        const plan = this.planCreate(state, value, dir, own);
        if (plan instanceof V2Error) return plan;
        // First: nothing written anywhere since the read (the name is then the write's index). Under a
        // steady stream of other writes that may never hold: then no later name in this directory yet.
        const children = L.childrenPrefix(dirP).toString('utf8');
        const guard =
          ++plans <= POST_INDEX_ATTEMPTS
            ? modIs(L.actionKey, act?.modRevision ?? 0)
            : { ...rangeEmpty(Buffer.from(`${children}${name}/\0`)), rangeEnd: Buffer.from(`${children}:`) };
        return { ...plan, compares: [...plan.compares, guard] };
      },
      { maxAttempts: POST_MAX_ATTEMPTS },
    );
  }

  /** A v2 DELETE: compareAndDelete with prevValue/prevIndex, else delete (a directory needs dir or recursive). */
  async delete(path: string, o: V3DeleteOptions = {}): Promise<V2Event> {
    this.assertOpen();
    const p = KeyLayout.normalize(path);
    const prevValue = o.prevValue ?? '';
    const prevIndex = o.prevIndex ?? 0;
    if (!Number.isSafeInteger(prevIndex) || prevIndex < 0) throw new V2Error(203, 'invalid value for "prevIndex"', 0);
    if (prevIndex > 0 || prevValue !== '') return this.compareAndDelete(p, prevValue, prevIndex);
    if (p === '/') throw new V2Error(107, '/', (await this.currentIndex({ quorum: true })).index);
    const recursive = o.recursive === true;
    return this.deleteNode(p, recursive || o.dir === true, recursive);
  }

  private expiryOf(ttl: number | null | undefined): number | undefined {
    if (ttl === undefined || ttl === null) return undefined;
    if (typeof ttl !== 'number' || !Number.isSafeInteger(ttl) || ttl < 0) throw new V2Error(202, 'invalid value for "ttl"', 0);
    return Date.now() + ttl * 1000;
  }

  /** Blind compares on the parent: it exists and has no lease (so the node's lease is its own). */
  private parentCommon(p: string): Compare[] {
    const parent = KeyLayout.parent(p);
    if (parent === '/') return [];
    const key = this.layout.dirKey(parent);
    return [exists(key), leaseIs(key, 0)];
  }

  /** Range of the parent directory's key inside a delete (its lease tells the prevNode's own TTL). */
  private parentRange(p: string): RequestOp[] {
    const parent = KeyLayout.parent(p);
    return parent === '/' ? [] : [rangeOp(one(this.layout.dirKey(parent)), false)];
  }

  private actOp(action: string): RequestOp {
    return putOp(this.layout.actionKey, action, 0);
  }

  private event(action: string, resp: TxnResponse, node: V2Node, prevNode?: V2Node): V2Event {
    const ev: V2Event = { action, node } as V2Event;
    if (prevNode !== undefined) ev.prevNode = prevNode;
    ev.etcdIndex = v2Index(resp.header.revision);
    ev.raftTerm = resp.header.raftTerm;
    return ev;
  }

  /**
   * The answer of a blind rewrite of an existing file (update, compareAndSwap)
   * whose put (op 0) returned the previous pair: the node with its new value
   * (a refresh keeps the old one) and lease, and the previous node.
   */
  private fileRewritten(action: string, p: string, value: string, refresh: boolean, own: number): Attempt['answer'] {
    return (resp, nowMs) => {
      const prev = prevKvAt(resp, 0)!;
      const node = makeNode({
        key: p,
        value: refresh ? prev.value.toString('utf8') : value,
        lease: own,
        modifiedIndex: v2Index(resp.header.revision),
        createdIndex: v2Index(prev.createRevision),
        nowMs,
      });
      return this.event(action, resp, node, nodeOfKv(p, prev, false, 0, nowMs));
    };
  }

  /** Puts of the directories a create makes on the way (permanent in v2; here on the inherited lease). */
  private dirPuts(missing: readonly string[], lease: number): RequestOp[] {
    return missing.map((d) => putOp(this.layout.dirKey(d), '', lease));
  }

  // --- set ---

  private set(p: string, value: string, dir: boolean, refresh: boolean, own: number): Promise<V2Event> {
    const L = this.layout;
    const fk = L.fileKey(p);
    const dk = L.dirKey(p);
    const action = refresh ? 'refresh' : 'set';
    const blind = (): Attempt => {
      const base = this.parentCommon(p);
      if (dir) {
        return {
          compares: [...base, absent(fk), absent(dk)],
          success: [putOp(dk, '', own), this.actOp(action)],
          attached: own,
          answer: (resp, nowMs) => {
            const idx = v2Index(resp.header.revision);
            return this.event('set', resp, makeNode({ key: p, dir: true, lease: own, modifiedIndex: idx, createdIndex: idx, nowMs }));
          },
        };
      }
      return {
        compares: refresh ? [...base, exists(fk)] : [...base, absent(dk)],
        success: [putOp(fk, refresh ? undefined : value, own, true), this.actOp(action)],
        attached: own,
        replaced: (resp) => leftLease(resp, 0, 0, own),
        answer: (resp, nowMs) => {
          const prev = prevKvAt(resp, 0);
          const idx = v2Index(resp.header.revision);
          const node = makeNode({
            key: p,
            value: refresh ? prev?.value.toString('utf8') : value,
            lease: own,
            modifiedIndex: idx,
            createdIndex: prev !== undefined ? v2Index(prev.createRevision) : idx,
            nowMs,
          });
          return this.event('set', resp, node, prev !== undefined ? nodeOfKv(p, prev, false, 0, nowMs) : undefined);
        },
      };
    };
    // A refresh of a directory is always read first: it must find the node (100) and refuses a directory (102); the blind put would create one.
    return this.write(PathState.reads(L, p), refresh && dir ? undefined : blind, own, (snap) => {
      const s = PathState.from(L, p, snap.results, snap.header.revision);
      if (refresh) {
        const err = s.lookupError();
        if (err !== undefined) return err;
      }
      const walk = s.createWalk();
      if (walk instanceof V2Error) return walk;
      const n = s.node;
      if (n.dir !== undefined) return s.error(102, p);
      const lease = effectiveLease(own, walk.inherit);
      const replaced = n.file !== undefined && n.file.lease !== 0 && n.file.lease !== walk.inherit && n.file.lease !== lease ? [n.file.lease] : [];
      const success = this.dirPuts(walk.missing, walk.inherit);
      const nodeOp = success.length + (dir && n.file !== undefined ? 1 : 0);
      if (dir) {
        if (n.file !== undefined) success.push(deleteOp(fk, true));
        success.push(putOp(dk, '', lease));
      } else {
        success.push(putOp(fk, refresh ? undefined : value, lease, true));
      }
      success.push(this.actOp(action));
      return {
        compares: s.pins(),
        success,
        attached: lease,
        replaced,
        answer: (resp, nowMs) => {
          const idx = v2Index(resp.header.revision);
          const prev = n.file;
          const node = dir
            ? makeNode({ key: p, dir: true, lease, parentLease: walk.inherit, modifiedIndex: idx, createdIndex: idx, nowMs })
            : makeNode({
                key: p,
                value: refresh ? prev?.value.toString('utf8') : value,
                lease,
                parentLease: walk.inherit,
                modifiedIndex: idx,
                createdIndex: prev !== undefined ? v2Index(prevKvAt(resp, nodeOp)?.createRevision ?? prev.createRevision) : idx,
                nowMs,
              });
          return this.event('set', resp, node, prev !== undefined ? nodeOfKv(p, prev, false, walk.inherit, nowMs) : undefined);
        },
      };
    });
  }

  // --- create ---

  private create(p: string, value: string, dir: boolean, own: number): Promise<V2Event> {
    const L = this.layout;
    const fk = L.fileKey(p);
    const dk = L.dirKey(p);
    const blind = (): Attempt => ({
      compares: [...this.parentCommon(p), absent(fk), absent(dk)],
      success: [putOp(dir ? dk : fk, dir ? '' : value, own), this.actOp('create')],
      attached: own,
      answer: (resp, nowMs) => {
        const idx = v2Index(resp.header.revision);
        return this.event('create', resp, makeNode({ key: p, value, dir, lease: own, modifiedIndex: idx, createdIndex: idx, nowMs }));
      },
    });
    return this.write(PathState.reads(L, p), blind, own, (snap) => this.planCreate(PathState.from(L, p, snap.results, snap.header.revision), value, dir, own));
  }

  /** v2's create of the state's node (create and POST). */
  private planCreate(s: PathState, value: string, dir: boolean, own: number): Attempt | V2Error {
    const L = this.layout;
    const p = s.path;
    const walk = s.createWalk();
    if (walk instanceof V2Error) return walk;
    if (s.node.file !== undefined || s.node.dir !== undefined) return s.error(105, p);
    const lease = effectiveLease(own, walk.inherit);
    const success = this.dirPuts(walk.missing, walk.inherit);
    success.push(putOp(dir ? L.dirKey(p) : L.fileKey(p), dir ? '' : value, lease), this.actOp('create'));
    return {
      compares: s.pins(),
      success,
      attached: lease,
      answer: (resp, nowMs) => {
        const idx = v2Index(resp.header.revision);
        return this.event('create', resp, makeNode({ key: p, value, dir, lease, parentLease: walk.inherit, modifiedIndex: idx, createdIndex: idx, nowMs }));
      },
    };
  }

  // --- update ---

  private update(p: string, value: string, refresh: boolean, own: number): Promise<V2Event> {
    const L = this.layout;
    const fk = L.fileKey(p);
    const action = refresh ? 'refresh' : 'update';
    const parent = KeyLayout.parent(p);
    const blind = (): Attempt => ({
      compares: [exists(fk), ...(parent === '/' ? [] : [leaseIs(L.dirKey(parent), 0)])],
      success: [putOp(fk, refresh ? undefined : value, own, true), this.actOp(action)],
      attached: own,
      replaced: (resp) => leftLease(resp, 0, 0, own),
      answer: this.fileRewritten('update', p, value, refresh, own),
    });
    return this.write(PathState.reads(L, p), blind, own, async (snap) => {
      const s = PathState.from(L, p, snap.results, snap.header.revision);
      const err = s.lookupError();
      if (err !== undefined) return err;
      const n = s.node;
      const parentLease = s.parentDir?.lease ?? 0;
      const lease = effectiveLease(own, parentLease);
      if (n.dir !== undefined) {
        if (value !== '') return s.error(102, p);
        return this.planDirLease(s, snap, lease, parentLease, action === 'refresh' ? 'refresh' : 'update');
      }
      const prev = n.file!;
      return {
        compares: s.pins(),
        success: [putOp(fk, refresh ? undefined : value, lease, true), this.actOp(action)],
        attached: lease,
        replaced: prev.lease !== 0 && prev.lease !== parentLease && prev.lease !== lease ? [prev.lease] : [],
        answer: (resp, nowMs) => {
          const idx = v2Index(resp.header.revision);
          const node = makeNode({
            key: p,
            value: refresh ? prev.value.toString('utf8') : value,
            lease,
            parentLease,
            modifiedIndex: idx,
            createdIndex: v2Index(prev.createRevision),
            nowMs,
          });
          return this.event('update', resp, node, nodeOfKv(p, prev, false, parentLease, nowMs));
        },
      };
    });
  }

  /**
   * An update of a directory (its TTL): the directory put on `lease` and
   * every node of its subtree re-attached to the lease it now inherits (the
   * earlier-expiring of its own and its parent's); a subtree too big for one
   * transaction is re-attached in steps first (action key "refresh").
   */
  private async planDirLease(s: PathState, snap: Snapshot, lease: number, parentLease: number, action: string): Promise<Attempt> {
    const L = this.layout;
    const p = s.path;
    const d = KeyLayout.depth(p);
    const dirKv = s.node.dir!;
    const revision = snap.header.revision;
    // The subtree's keys, level by level until an empty one.
    const levels: KeyValue[][] = [];
    while (levels.length === 0 || levels[levels.length - 1]!.length > 0) {
      const reads: Read[] = [];
      for (let i = 1; i <= LEVEL_BATCH; i++) reads.push(prefixRead(L.levelPrefix(p, d + levels.length + i), { keysOnly: true }));
      levels.push(...(await snap.readMore(reads)).map((r) => r.kvs));
    }
    while (levels.length > 1 && levels[levels.length - 1]!.length === 0 && levels[levels.length - 2]!.length === 0) levels.pop();
    const oldLeases = new Map<string, number>([[p, dirKv.lease]]);
    const newLeases = new Map<string, number>([[p, lease]]);
    const reattach: Array<{ key: Buffer; kv: KeyValue; lease: number }> = [];
    for (const level of levels) {
      for (const kv of level) {
        const dec = L.decode(kv.key);
        if (dec === undefined) continue;
        const parent = KeyLayout.parent(dec.path);
        const oldParent = oldLeases.get(parent);
        const newParent = newLeases.get(parent);
        if (oldParent === undefined || newParent === undefined) continue;
        const ownLease = kv.lease === oldParent ? 0 : kv.lease;
        const next = effectiveLease(ownLease, newParent);
        if (dec.dir) {
          oldLeases.set(dec.path, kv.lease);
          newLeases.set(dec.path, next);
        }
        if (next !== kv.lease) reattach.push({ key: kv.key, kv, lease: next });
      }
    }
    // Deepest first: a step that moves part of the subtree leaves every node not yet moved under a
    // parent not yet moved, so the next plan still tells inherited leases from own ones.
    reattach.reverse();
    const pins = s.pins();
    const levelCompares = levels.map((_, i) => rangeUnchangedSince(L.levelPrefix(p, d + 1 + i), revision));
    if (pins.length + levelCompares.length + 2 > MAX_TXN_OPS) {
      // The last transaction compares each level of the subtree: past the limit no step makes it fit (before, each step moved nothing, 10,000 times).
      throw new V2Error(300, `a directory with more than ${MAX_TXN_OPS - pins.length - 2} levels below it cannot have its TTL changed (etcd's --max-txn-ops)`, v2Index(revision));
    }
    if (pins.length + levelCompares.length + reattach.length + 2 > MAX_TXN_OPS) {
      const chunk = reattach.slice(0, REATTACH_CHUNK);
      return {
        final: false,
        compares: chunk.map((r) => modIs(r.key, r.kv.modRevision)),
        success: [...chunk.map((r) => putOp(r.key, undefined, r.lease)), this.actOp('refresh')],
        answer: () => {
          throw new Error('an intermediate step has no answer');
        },
      };
    }
    const replaced = dirKv.lease !== 0 && dirKv.lease !== parentLease && dirKv.lease !== lease ? [dirKv.lease] : [];
    return {
      compares: [...pins, ...levelCompares, ...reattach.map((r) => modIs(r.key, r.kv.modRevision))],
      success: [...reattach.map((r) => putOp(r.key, undefined, r.lease)), putOp(L.dirKey(p), undefined, lease, true), this.actOp(action)],
      attached: lease,
      replaced,
      answer: (resp, nowMs) => {
        const idx = v2Index(resp.header.revision);
        const node = makeNode({ key: p, dir: true, lease, parentLease, modifiedIndex: idx, createdIndex: v2Index(dirKv.createRevision), nowMs });
        return this.event('update', resp, node, nodeOfKv(p, dirKv, true, parentLease, nowMs));
      },
    };
  }

  // --- compareAndSwap ---

  private compareAndSwap(p: string, value: string, prevValue: string, prevIndex: number, refresh: boolean, own: number): Promise<V2Event> {
    const L = this.layout;
    const fk = L.fileKey(p);
    const action = refresh ? 'refresh' : 'compareAndSwap';
    const parent = KeyLayout.parent(p);
    const blind = (): Attempt => {
      const compares = [exists(fk)];
      if (prevValue !== '') compares.push(valueIs(fk, prevValue));
      if (prevIndex > 0) compares.push(modIs(fk, prevIndex + 1));
      if (parent !== '/') compares.push(leaseIs(L.dirKey(parent), 0));
      return {
        compares,
        success: [putOp(fk, refresh ? undefined : value, own, true), this.actOp(action)],
        attached: own,
        replaced: (resp) => leftLease(resp, 0, 0, own),
        answer: this.fileRewritten('compareAndSwap', p, value, refresh, own),
      };
    };
    return this.write(PathState.reads(L, p), blind, own, (snap) => {
      const s = PathState.from(L, p, snap.results, snap.header.revision);
      const err = s.lookupError();
      if (err !== undefined) return err;
      if (s.node.dir !== undefined) return s.error(102, p);
      const prev = s.node.file!;
      const failed = compareFailure(prev, prevValue, prevIndex);
      if (failed !== undefined) return s.error(101, failed);
      const parentLease = s.parentDir?.lease ?? 0;
      const lease = effectiveLease(own, parentLease);
      return {
        compares: s.pins(),
        success: [putOp(fk, refresh ? undefined : value, lease, true), this.actOp(action)],
        attached: lease,
        replaced: prev.lease !== 0 && prev.lease !== parentLease && prev.lease !== lease ? [prev.lease] : [],
        answer: (resp, nowMs) => {
          const idx = v2Index(resp.header.revision);
          const node = makeNode({
            key: p,
            value: refresh ? prev.value.toString('utf8') : value,
            lease,
            parentLease,
            modifiedIndex: idx,
            createdIndex: v2Index(prev.createRevision),
            nowMs,
          });
          return this.event('compareAndSwap', resp, node, nodeOfKv(p, prev, false, parentLease, nowMs));
        },
      };
    });
  }

  // --- delete ---

  private deleteNode(p: string, dir: boolean, recursive: boolean): Promise<V2Event> {
    const L = this.layout;
    const fk = L.fileKey(p);
    const dk = L.dirKey(p);
    const d = KeyLayout.depth(p);
    const children = L.childrenPrefix(p);
    const pr = this.parentRange(p);
    const reads = [...PathState.reads(L, p), prefixRead(children, { limit: 1, keysOnly: true })];
    const answerDelete = (resp: TxnResponse, nowMs: number, isDir: boolean, prev: KeyValue, parentLease: number): V2Event => {
      const node = makeNode({ key: p, dir: isDir, modifiedIndex: v2Index(resp.header.revision), createdIndex: v2Index(prev.createRevision), nowMs });
      delete node.value;
      return this.event('delete', resp, node, nodeOfKv(p, prev, isDir, parentLease, nowMs));
    };
    const blind = (): Attempt => {
      if (!dir) {
        return {
          compares: [exists(fk)],
          success: [...pr, deleteOp(fk, true), this.actOp('delete')],
          replaced: (resp) => leftLease(resp, pr.length, pr.length > 0 ? (kvsAt(resp, 0)[0]?.lease ?? 0) : 0, 0),
          answer: (resp, nowMs) => answerDelete(resp, nowMs, false, prevKvAt(resp, pr.length)!, kvsAt(resp, 0)[0]?.lease ?? 0),
        };
      }
      const levels = recursive ? BLIND_DELETE_LEVELS : 0;
      const success = [...pr];
      for (let i = levels; i >= 1; i--) success.push(deletePrefixOp(L.levelPrefix(p, d + i)));
      const nodeOp = success.length;
      success.push(deleteOp(dk, true), this.actOp('delete'));
      return {
        compares: [exists(dk), rangeEmpty(L.levelPrefix(p, d + levels + 1))],
        success,
        replaced: (resp) => leftLease(resp, nodeOp, pr.length > 0 ? (kvsAt(resp, 0)[0]?.lease ?? 0) : 0, 0),
        answer: (resp, nowMs) => answerDelete(resp, nowMs, true, prevKvAt(resp, nodeOp)!, pr.length > 0 ? (kvsAt(resp, 0)[0]?.lease ?? 0) : 0),
      };
    };
    return this.write(reads, blind, 0, async (snap) => {
      const s = PathState.from(L, p, snap.results, snap.header.revision);
      const err = s.lookupError();
      if (err !== undefined) return err;
      const n = s.node;
      const parentLease = s.parentDir?.lease ?? 0;
      if (n.dir === undefined) {
        const prev = n.file!;
        return {
          compares: s.pins(),
          success: [deleteOp(fk, true), this.actOp('delete')],
          replaced: prev.lease !== 0 && prev.lease !== parentLease ? [prev.lease] : [],
          answer: (resp, nowMs) => answerDelete(resp, nowMs, false, prev, parentLease),
        };
      }
      if (!dir) return s.error(102, p);
      const hasChildren = snap.results[reads.length - 1]!.kvs.length > 0;
      if (hasChildren && !recursive) return s.error(108, p);
      const prev = n.dir;
      const compares = s.pins();
      const success: RequestOp[] = [];
      if (!hasChildren) {
        compares.push(rangeEmpty(children));
      } else {
        // How deep the subtree goes: levels until an empty one.
        let deepest = d + 1;
        for (;;) {
          const reads2: Read[] = [];
          for (let i = 1; i <= LEVEL_BATCH; i++) reads2.push(prefixRead(L.levelPrefix(p, deepest + i), { countOnly: true }));
          const counts = (await snap.readMore(reads2)).map((r) => r.count);
          const empty = counts.findIndex((c) => c === 0);
          if (empty >= 0) {
            deepest += empty;
            break;
          }
          deepest += LEVEL_BATCH;
        }
        if (deepest - d > MAX_DELETE_LEVELS) {
          return s.error(300, `${p} has more than ${MAX_DELETE_LEVELS} levels below it: too deep to delete in one transaction`);
        }
        compares.push(rangeEmpty(L.levelPrefix(p, deepest + 1)));
        for (let lvl = deepest; lvl > d; lvl--) success.push(deletePrefixOp(L.levelPrefix(p, lvl)));
      }
      success.push(deleteOp(dk, true), this.actOp('delete'));
      return {
        compares,
        success,
        replaced: prev.lease !== 0 && prev.lease !== parentLease ? [prev.lease] : [],
        answer: (resp, nowMs) => answerDelete(resp, nowMs, true, prev, parentLease),
      };
    });
  }

  // --- compareAndDelete ---

  private async compareAndDelete(p: string, prevValue: string, prevIndex: number): Promise<V2Event> {
    // v2 looks the root up like any node: a directory, so "Not a file" (with the empty cause v2 gives it).
    if (p === '/') throw new V2Error(102, '', (await this.currentIndex({ quorum: true })).index);
    const L = this.layout;
    const fk = L.fileKey(p);
    const pr = this.parentRange(p);
    const answer = (resp: TxnResponse, nowMs: number, prev: KeyValue, parentLease: number): V2Event => {
      const node = { key: p } as V2Node;
      node.modifiedIndex = v2Index(resp.header.revision);
      node.createdIndex = v2Index(prev.createRevision);
      return this.event('compareAndDelete', resp, node, nodeOfKv(p, prev, false, parentLease, nowMs));
    };
    const blind = (): Attempt => {
      const compares = [exists(fk)];
      if (prevValue !== '') compares.push(valueIs(fk, prevValue));
      if (prevIndex > 0) compares.push(modIs(fk, prevIndex + 1));
      return {
        compares,
        success: [...pr, deleteOp(fk, true), this.actOp('compareAndDelete')],
        replaced: (resp) => leftLease(resp, pr.length, pr.length > 0 ? (kvsAt(resp, 0)[0]?.lease ?? 0) : 0, 0),
        answer: (resp, nowMs) => answer(resp, nowMs, prevKvAt(resp, pr.length)!, pr.length > 0 ? (kvsAt(resp, 0)[0]?.lease ?? 0) : 0),
      };
    };
    return this.write(PathState.reads(L, p), blind, 0, (snap) => {
      const s = PathState.from(L, p, snap.results, snap.header.revision);
      const err = s.lookupError();
      if (err !== undefined) return err;
      if (s.node.dir !== undefined) return s.error(102, p);
      const prev = s.node.file!;
      const failed = compareFailure(prev, prevValue, prevIndex);
      if (failed !== undefined) return s.error(101, failed);
      const parentLease = s.parentDir?.lease ?? 0;
      return {
        compares: s.pins(),
        success: [deleteOp(fk, true), this.actOp('compareAndDelete')],
        replaced: prev.lease !== 0 && prev.lease !== parentLease ? [prev.lease] : [],
        answer: (resp, nowMs) => answer(resp, nowMs, prev, parentLease),
      };
    });
  }

  // ---------------------------------------------------------------- the write loop

  /**
   * Runs a write: the blind attempt (when there is one), then plans from the
   * consistent state its failure branch (or a read) shows, until one
   * transaction succeeds or v2 answers an error. `own`: the lease granted
   * for the request (revoked when no plan used it).
   */
  private async write(
    reads: readonly Read[],
    blind: (() => Attempt) | undefined,
    own: number,
    plan: (snap: Snapshot) => Attempt | V2Error | Promise<Attempt | V2Error>,
    options: { maxAttempts?: number } = {},
  ): Promise<V2Event> {
    const maxAttempts = options.maxAttempts ?? MAX_ATTEMPTS;
    const failure = reads.length <= MAX_TXN_OPS ? reads.map((r) => rangeOp(r, false)) : [];
    let snap: Snapshot | undefined;
    let conflicts = 0;
    let steps = 0;
    let used = false;
    /** A step put nodes on `own`, or a transaction failed with no word on whether it was applied: `own` may hold keys. */
    let mayHoldKeys = false;
    try {
      for (;;) {
        let attempt: Attempt | V2Error;
        try {
          if (snap === undefined && blind === undefined) snap = await this.snapshot(reads);
          attempt = snap === undefined ? blind!() : await plan(snap);
        } catch (err) {
          if (!(err instanceof Restart) || ++conflicts > maxAttempts) throw err;
          snap = await this.snapshot(reads);
          continue;
        }
        if (attempt instanceof V2Error) throw attempt;
        const step = attempt.final === false;
        let resp: TxnResponse;
        try {
          resp = await this.client.txn({ compare: attempt.compares, success: attempt.success, failure: step ? [] : failure }, this.callOptions);
        } catch (err) {
          if (outcomeUnknown(err)) mayHoldKeys = true;
          // A lease that ended in the meantime (a parent's that expired): wait for the cluster to remove its keys, then plan again.
          const details = (err as { details?: unknown }).details;
          if (typeof details !== 'string' || !/lease not found/.test(details) || ++conflicts > maxAttempts) throw err;
          await delay(Math.min(100 * conflicts, 1000), this.closer.signal);
          snap = await this.snapshot(reads);
          continue;
        }
        if (resp.succeeded) {
          if (attempt.attached === own) used = true;
          this.lastRevision = Math.max(this.lastRevision, resp.header.revision);
          if (step) {
            mayHoldKeys = true;
            if (++steps > 10000) throw new V2Error(300, 'too many steps re-attaching a subtree', v2Index(resp.header.revision));
            snap = await this.snapshot(reads);
            continue;
          }
          const replaced = typeof attempt.replaced === 'function' ? attempt.replaced(resp) : (attempt.replaced ?? []);
          for (const lease of replaced) this.revokeWhenUnused(lease);
          return attempt.answer(resp, Date.now());
        }
        if (++conflicts > maxAttempts) {
          throw new V2Error(300, `the keys changed under ${maxAttempts} attempts in a row; try again`, v2Index(resp.header.revision));
        }
        // Many writers on the same keys: spread the next attempts (random, growing with the conflicts).
        if (conflicts >= 3) await delay(Math.random() * Math.min(2 * conflicts, 50), this.closer.signal);
        snap = !step && failure.length > 0 ? this.snapshotOf(resp) : await this.snapshot(reads);
      }
    } finally {
      // A lease that may hold keys is revoked only once it holds none: revoking it would delete them.
      if (own !== 0 && !used) {
        if (mayHoldKeys) this.revokeWhenUnused(own);
        else this.revoke(own);
      }
    }
  }

  /** The state shown by a failed transaction's failure branch. */
  private snapshotOf(resp: TxnResponse): Snapshot {
    const results = resp.responses.map((r) => r.responseRange ?? { header: resp.header, kvs: [], more: false, count: 0 });
    return this.makeSnapshot(resp.header, results);
  }

  /** A fresh consistent read (linearizable). */
  private async snapshot(reads: readonly Read[]): Promise<Snapshot> {
    const { header, results } = await this.readTxn(reads, false);
    return this.makeSnapshot(header, results);
  }

  private makeSnapshot(header: ResponseHeader, results: RangeResponse[]): Snapshot {
    return {
      header,
      results,
      readMore: async (more) => (await this.readTxn(more, false, header.revision)).results,
    };
  }

  // ---------------------------------------------------------------- leases

  /** Grants a lease of ours expiring at `expiryMs` (another random part when the ID is taken). */
  private async grantLease(expiryMs: number): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      const id = leaseIdFor(expiryMs);
      try {
        // The expiry the ID holds (clamped to 2109 for an absurd TTL) is the one granted.
        await this.client.leaseGrant(grantSeconds(expiryOfLease(id) ?? expiryMs, Date.now()), id, this.callOptions);
        return id;
      } catch (err) {
        const details = (err as { details?: unknown }).details;
        if (attempt < 8 && typeof details === 'string' && /lease already exists/.test(details)) continue;
        throw err;
      }
    }
  }

  /** Revokes a lease granted for a request that did not use it (in the background). */
  private revoke(lease: number): void {
    if (this.closed) return;
    this.client.leaseRevoke(lease, this.callOptions).catch(() => undefined);
  }

  /**
   * Revokes, in the background, a lease a write detached its node from, once
   * no key is attached to it any more (nothing can attach to it later: every
   * write that inherits a lease compares the directory it inherits from).
   */
  private revokeWhenUnused(lease: number): void {
    if (this.closed || expiryOfLease(lease) === undefined) return;
    void (async () => {
      const ttl = await this.client.leaseTimeToLive(lease, { ...this.callOptions, keys: true });
      if (ttl.TTL > 0 && ttl.keys.length === 0) await this.client.leaseRevoke(lease, this.callOptions);
    })().catch(() => undefined);
  }
}

/**
 * Whether a failed transaction may have been applied all the same: it left
 * (or may have), and the answer that was lost, not etcd, failed it (a
 * deadline, a connection gone, etcd's own "request timed out").
 */
function outcomeUnknown(err: unknown): boolean {
  if (!(err instanceof V3RpcError)) return true;
  if (!err.sent) return false;
  return err.grpcCode === status.DEADLINE_EXCEEDED || err.grpcCode === status.UNAVAILABLE || err.grpcCode === status.CANCELLED || err.grpcCode === status.UNKNOWN || err.grpcCode === status.INTERNAL;
}

/** Waits `ms`, less when `signal` aborts (the timer is part of a request in flight: not unref'd). */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
