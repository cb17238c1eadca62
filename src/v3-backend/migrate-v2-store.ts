import { setMaxListeners } from 'node:events';
import { request as httpRequest } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { EtcdProxyError, InvalidOptionError } from '../errors.js';
import { explainTlsFailure, tlsConnectOptions, upstreamTlsOption } from '../tls-options.js';
import type { UpstreamTls, UpstreamTlsOptions } from '../tls-options.js';
import { describe, durationOption, parseHostPortUrl, positiveIntegerOption, signalOption } from '../validate-options.js';
import type { KeyValue, RequestOp } from './rpc-types.js';
import { V3Client, V3RpcError } from './v3-client.js';
import { KeyLayout } from './key-layout.js';
import { expiryOfLease, grantSeconds, leaseIdFor } from './lease-expiry.js';

/**
 * Copies a live v2 store, read through its `/v2/keys` API, into the v3 key
 * layout of the v3 backend (etcd's `--experimental-enable-v2v3` layout, with
 * TTLs as lease-encoded expiries), so that proxies started with
 * `--backend v3` serve the same tree.
 */

/**
 * How far {@link migrateV2Store} got, given to `onProgress` after the plan and
 * after every written batch.
 * @public
 */
export interface MigrationProgress {
  /** Nodes written so far (0 in a dry run). */
  readonly copied: number;
  /** Nodes left as they are: already equal in the target, or expired. */
  readonly skipped: number;
  /** Nodes read from the source (the root aside). */
  readonly total: number;
  /** With `matchIndex`, once the nodes are written: revisions still to write to reach the source's index. */
  readonly indexGap?: number;
}

/**
 * What {@link migrateV2Store} did (or, with `dryRun`, would do).
 * @public
 */
export interface MigrationReport {
  /** The v3 prefix written under. */
  readonly prefix: string;
  /** Files (key-value nodes) read from the source. */
  readonly files: number;
  /** Directories read from the source (the root aside), empty ones included. */
  readonly dirs: number;
  /** Of those, nodes that v2 leaves out of listings (a `_` name on their path), found through `hidden`. */
  readonly hidden: number;
  /** Nodes with a TTL of their own. */
  readonly withTtl: number;
  /** Nodes put into the target (with `dryRun`: that would be). */
  readonly written: number;
  /** Nodes already equal in the target (value, kind, expiry): not written. */
  readonly unchanged: number;
  /** Nodes whose TTL (or an ancestor directory's) ran out before they could be written. */
  readonly skippedExpired: number;
  /**
   * Target nodes deleted (with `dryRun`: to delete): the other kind of node
   * at a source path (a file where the source has a directory, or the
   * reverse), anything under a source file, and, with `prune`, the target
   * nodes the source does not have.
   */
  readonly deleted: number;
  /**
   * Target nodes the source does not have, left in place: all of them without
   * `prune`; with it, hidden ones that no `hidden` path covers (the source
   * was not asked about them).
   */
  readonly extra: number;
  /** `hidden` paths asked for that the source does not have. */
  readonly hiddenMissing: readonly string[];
  /** The source's `X-Etcd-Index` when its tree was read (the highest of its answers). */
  readonly sourceIndex: number;
  /**
   * Revisions written (with `dryRun`: to write) only to bring the target's
   * v2 index (its revision - 1) up to `sourceIndex` (`matchIndex`).
   */
  readonly indexAdvanced: number;
  /** True when nothing was written. */
  readonly dryRun: boolean;
  /** ms the whole run took. */
  readonly ms: number;
}

/**
 * Options of {@link migrateV2Store}.
 * @public
 */
export interface MigrateV2StoreOptions {
  /**
   * Client URL(s) of the v2 store to copy (`http(s)://host:port`): an etcd
   * member with the v2 API on (etcd 3.4, 3.5 with `--enable-v2`) or a v2
   * proxy. Tried in order when one cannot be reached.
   */
  source: string | readonly string[];
  /** TLS for an `https://` source (CA, client certificate). Default: none. */
  sourceTls?: UpstreamTlsOptions;
  /** v2 user to read the source as, when v2 auth is on there (it must read everything: `root`). Default: none. */
  sourceUsername?: string;
  /** Password of `sourceUsername`. */
  sourcePassword?: string;
  /** Where to write: a client of the target cluster's v3 API. Not closed here. */
  target: V3Client;
  /** The v3 key prefix of the v2 tree, as the proxies' `v3Prefix`. Default: `/v2`. */
  prefix?: string;
  /**
   * Hidden keys or directories to copy (v2 never lists a node whose name
   * starts with `_`, so they cannot be discovered): absolute v2 paths, each
   * copied with its subtree. A segment `*` stands for every child of the
   * directory above it, e.g. `/_etcd/registry/*\/_config` (the discovery
   * service's layout). A path the source does not have is reported in
   * `hiddenMissing`. Default: none.
   */
  hidden?: readonly string[];
  /** Read and plan only: nothing is written, the report says what would be. Default: false. */
  dryRun?: boolean;
  /**
   * Write into a target prefix that holds keys not equal to the source: a
   * different value, kind or expiry, a node the source does not have, a key
   * outside the layout. Without it such a target is refused before anything
   * is written. A target whose every node equals the source is not (a
   * re-run, or the rest of an interrupted run); neither are the action key,
   * v2 auth data (`<prefix>/auth/...`) and hidden nodes no `hidden` path
   * covers, which are not compared. Default: false.
   */
  force?: boolean;
  /**
   * Delete target nodes the source does not have (they are otherwise left,
   * and counted in `extra`); hidden ones only under a `hidden` path (the
   * source cannot be asked about the others). Default: false.
   */
  prune?: boolean;
  /**
   * After the copy, write empty revisions (puts of a key outside the prefix,
   * deleted at the end: no v2 event) until the target's v2 index is at
   * least the source's (one beyond at most). v2
   * clients carry indexes across the switch (a watch's `waitIndex`, a
   * `prevIndex`), and the v3 backend names in-order keys after the index: a
   * target behind the source would hold back watches and give new in-order
   * keys names that sort before the copied ones. One small write per
   * revision missing, 128 in flight: thousands a second on a healthy
   * cluster (about 1,900/s on one loaded test machine), so a source at index
   * 1,000,000 takes minutes. Default: true.
   */
  matchIndex?: boolean;
  /** Most operations in one v3 transaction, the action-key put included (etcd's `--max-txn-ops` is 128 by default). Default: 100. */
  batchOps?: number;
  /** ms one request to the source may take (the whole recursive listing). Default: 60000. */
  sourceTimeout?: number;
  /** Called after the plan and after every written batch. */
  onProgress?: (progress: MigrationProgress) => void;
  /** Aborting it stops the run between two batches (what was written stays: re-run to finish). */
  signal?: AbortSignal;
}

/**
 * Why {@link migrateV2Store} failed:
 *
 * - `source-unreachable`: no source URL answered.
 * - `source-not-v2`: the source answered `/v2/keys` with 404 (v2 off).
 * - `source-refused`: the source wants v2 credentials (401/403).
 * - `source-bad-answer`: an answer that is not a v2 keys answer.
 * - `target-unreachable`: the target's v3 API did not answer.
 * - `target-refused`: the target refused the credentials or the call.
 * - `target-not-empty`: the prefix holds keys not equal to the source, and `force` is not set.
 * - `aborted`: `signal` was aborted.
 * @public
 */
export type MigrationErrorReason =
  | 'source-unreachable'
  | 'source-not-v2'
  | 'source-refused'
  | 'source-bad-answer'
  | 'target-unreachable'
  | 'target-refused'
  | 'target-not-empty'
  | 'aborted';

/**
 * {@link migrateV2Store} could not copy the store. The message is one line
 * naming the URL or prefix and what was wrong.
 * @public
 */
export class MigrationError extends EtcdProxyError {
  /** Always `ERR_ETCD_PROXY_MIGRATION`. */
  declare readonly code: 'ERR_ETCD_PROXY_MIGRATION';
  /** What went wrong, for programs. */
  readonly reason: MigrationErrorReason;

  constructor(reason: MigrationErrorReason, message: string, options?: { cause?: unknown }) {
    super('ERR_ETCD_PROXY_MIGRATION', message, options);
    this.reason = reason;
  }
}

// --- the run ---

/** A node read from the source. */
interface SourceNode {
  /** The v2 path, e.g. `/foo/bar`. */
  readonly path: string;
  readonly dir: boolean;
  /** '' for a directory. */
  readonly value: string;
  /** ms since the epoch (this host's clock) when its own TTL runs out. */
  readonly ownExpiry: number | undefined;
  readonly createdIndex: number;
  /** A `_` name on its path: v2 leaves it out of listings. */
  readonly hidden: boolean;
  /** When it runs out, its own TTL or an ancestor directory's. Set once the tree is read. */
  expiry: number | undefined;
}

/** A node to put into the target. */
interface Wanted {
  readonly key: string;
  readonly node: SourceNode;
  /**
   * The target lease of the directory whose TTL the node goes with, when
   * that directory stays as it is in the target: the node must be on the
   * same lease, or the v3 backend would take its TTL for the node's own.
   */
  inherit?: number;
}

/** A key already under the target prefix, in the layout. */
interface TargetNode {
  readonly key: string;
  readonly path: string;
  readonly kv: KeyValue;
}

/** The v2 JSON of a node, as far as it is read here. */
interface V2NodeJson {
  key?: unknown;
  dir?: unknown;
  value?: unknown;
  ttl?: unknown;
  expiration?: unknown;
  createdIndex?: unknown;
  nodes?: unknown;
}

/** An expiry read back from a target lease may differ by this much (the remaining TTL is known to the second). */
const EXPIRY_TOLERANCE_MS = 1000;
/** ms to connect to a source URL before trying the next. */
const SOURCE_DIAL_MS = 3000;
/** Target keys read per Range call. */
const TARGET_PAGE = 1000;
const SET = Buffer.from('set', 'utf8');
/** Empty revisions written at once to bring the target's index up. */
const INDEX_LANES = 128;

/**
 * Copies the v2 store at `source` into `target` under `prefix`, in the v3
 * backend's key layout: values, directories (empty ones too), the hidden
 * nodes named in `hidden`, TTLs as the remaining time (a lease per distinct
 * expiry, its ID encoding the expiry). In-order keys keep their names, so
 * their order.
 *
 * Idempotent: a node already equal in the target (kind, value, expiry within
 * a second) is not written again; one that changed is. Writes go in
 * transactions of `batchOps` operations, each also putting the action key
 * `<prefix>/act` ("set"; "delete" for deletions) as the v3 backend's own
 * writes do, parents before children, in creation order.
 *
 * @throws {@link InvalidOptionError} for a bad option, at once (not as a rejection).
 * @throws {@link MigrationError} (the promise rejects) when the source or the target cannot be
 *   used, or the target prefix holds other data and `force` is not set.
 * @public
 */
export function migrateV2Store(options: MigrateV2StoreOptions): Promise<MigrationReport> {
  const o = checkOptions(options);
  return run(o, Date.now());
}

async function run(options: CheckedOptions, started: number): Promise<MigrationReport> {
  // One signal of our own for the calls: many are in flight at once, each listening to it.
  const inner = new AbortController();
  setMaxListeners(INDEX_LANES * 2 + 100, inner.signal);
  const onAbort = (): void => inner.abort(options.signal?.reason);
  if (options.signal?.aborted === true) onAbort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await copy({ ...options, signal: inner.signal }, started);
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
}

async function copy(o: CheckedOptions, started: number): Promise<MigrationReport> {
  const signal = o.signal;
  const stopIfAborted = (): void => {
    if (signal?.aborted === true) throw new MigrationError('aborted', 'migration aborted; what was written stays (a re-run finishes it)', { cause: signal.reason });
  };

  // 1. The source tree: one recursive listing, then the hidden paths asked for.
  const source = new SourceReader(o);
  const src = new SourceTree();
  const root = await source.get('/');
  if (root === undefined) throw new MigrationError('source-bad-answer', `source ${source.url} answered GET /v2/keys/ with "key not found"`);
  src.add(root.node, root.requestedAt, root.answeredAt);
  const hiddenMissing: string[] = [];
  for (const pattern of o.hidden) {
    stopIfAborted();
    if (!(await expandHidden(pattern, src, source))) hiddenMissing.push(pattern);
  }
  const sourceIndex = source.index;
  src.setExpiries();
  const tree = src.nodes;

  // 2. The target: every key under the prefix, in pages at one revision.
  stopIfAborted();
  const { kvs: targetKeys, revision: targetRevision } = await readTarget(o.target, o.prefix, signal);
  const keys = new KeyLayout(o.prefix);
  const actionKey = keys.actionKey.toString('utf8');
  const layout = new Map<string, TargetNode>();
  const foreign: string[] = [];
  for (const kv of targetKeys) {
    const key = kv.key.toString('utf8');
    // The action key and v2 auth data are the proxies' own: neither copied nor compared.
    if (key === actionKey || key.startsWith(`${o.prefix}/auth/`)) continue;
    const decoded = keys.decode(key);
    if (decoded === undefined) foreign.push(key);
    else layout.set(key, { key, path: decoded.path, kv });
  }

  // 3. The plan.
  const now = Date.now();
  let files = 0;
  let dirs = 0;
  let hidden = 0;
  let withTtl = 0;
  let skippedExpired = 0;
  const wanted = new Map<string, Wanted>();
  const liveFiles = new Set<string>();
  const livePaths = new Set<string>();
  for (const node of tree.values()) {
    if (node.dir) dirs++;
    else files++;
    if (node.hidden) hidden++;
    if (node.ownExpiry !== undefined) withTtl++;
    if (node.expiry !== undefined && node.expiry <= now) {
      skippedExpired++;
      continue;
    }
    if (!node.dir) liveFiles.add(node.path);
    livePaths.add(node.path);
    const key = (node.dir ? keys.dirKey(node.path) : keys.fileKey(node.path)).toString('utf8');
    wanted.set(key, { key, node });
  }
  let unchanged = 0;
  let changed = 0;
  const toWrite: Wanted[] = [];
  for (const w of wanted.values()) {
    const there = layout.get(w.key);
    if (there !== undefined && isEqual(there.kv, w.node)) {
      unchanged++;
      continue;
    }
    if (there !== undefined) changed++;
    toWrite.push(w);
  }
  // A node that goes with a directory's TTL joins that directory's lease, when the
  // directory is not written again (a re-run): a fresh lease of the same expiry would be
  // taken for the node's own TTL, kept when the directory's changes.
  const rewritten = new Set(toWrite.map((w) => w.key));
  for (const w of toWrite) {
    const expiry = w.node.expiry;
    if (expiry === undefined || w.node.ownExpiry === expiry) continue;
    for (let p = KeyLayout.parent(w.node.path); p !== '/' && p !== ''; p = KeyLayout.parent(p)) {
      const dir = tree.get(p);
      if (dir?.ownExpiry !== expiry) continue;
      const dirKey = keys.dirKey(p).toString('utf8');
      const there = layout.get(dirKey);
      if (there !== undefined && !rewritten.has(dirKey) && there.kv.lease !== 0) w.inherit = there.kv.lease;
      break;
    }
  }
  // Target nodes the source does not have: the other kind of node at a source path, and
  // anything under a source file, must go; the others go with `prune`.
  // A hidden target node the source was not asked about (no `hidden` path covers it) may
  // well be there: it is kept, never pruned, and does not make the target differ.
  const toDelete: TargetNode[] = [];
  let extra = 0;
  let differing = changed + foreign.length;
  let example: string | undefined = foreign[0];
  let hiddenExtra = false;
  for (const t of layout.values()) {
    if (wanted.has(t.key)) continue;
    if (livePaths.has(t.path) || atOrUnderFile(t.path, liveFiles)) {
      toDelete.push(t);
    } else if (!source.covers(t.path, src)) {
      extra++;
      continue;
    } else if (o.prune) {
      toDelete.push(t);
    } else {
      extra++;
    }
    differing++;
    example ??= t.key;
    hiddenExtra ||= isHidden(t.path);
  }
  if (example === undefined) example = toWrite.find((w) => layout.has(w.key))?.key;
  const held = layout.size + foreign.length;
  if (held > 0 && differing > 0 && !o.force) {
    throw new MigrationError(
      'target-not-empty',
      `target prefix ${o.prefix} is not empty: it holds ${held} key(s), ${differing} of them not equal to the source (e.g. ${JSON.stringify(example)})${hiddenExtra ? ', hidden nodes among them' : ''}; give force (--force) to copy into it anyway`,
    );
  }
  const total = tree.size;
  let copied = 0;
  const progress = (): void => o.onProgress?.({ copied, skipped: unchanged + skippedExpired, total });
  progress();

  if (o.dryRun) {
    return {
      prefix: o.prefix, files, dirs, hidden, withTtl, written: toWrite.length, unchanged, skippedExpired,
      deleted: toDelete.length, extra, hiddenMissing, sourceIndex,
      // The copy's own transactions advance the revision too.
      indexAdvanced: o.matchIndex ? Math.max(0, sourceIndex + 1 - targetRevision - [...batches(toWrite, o.batchOps - 1)].length - Math.ceil(toDelete.length / (o.batchOps - 1))) : 0,
      dryRun: true, ms: Date.now() - started,
    };
  }

  // 4. Deletions, then puts: parents before children, in creation order.
  const writer = new TargetWriter(o, keys.actionKey);
  let deleted = 0;
  const perBatch = o.batchOps - 1;
  for (let i = 0; i < toDelete.length; i += perBatch) {
    stopIfAborted();
    const batch = toDelete.slice(i, i + perBatch);
    await writer.commit(
      batch.map((t) => ({ requestDeleteRange: { key: t.kv.key } })),
      'delete',
    );
    deleted += batch.length;
  }
  toWrite.sort((a, b) => KeyLayout.depth(a.node.path) - KeyLayout.depth(b.node.path) || a.node.createdIndex - b.node.createdIndex || (a.key < b.key ? -1 : 1));
  for (const batch of batches(toWrite, perBatch)) {
    stopIfAborted();
    // The batch's leases at once (one per distinct expiry), then one transaction.
    const leases = new Map<number, number | undefined>();
    for (const w of batch) if (w.node.expiry !== undefined && w.inherit === undefined) leases.set(w.node.expiry, undefined);
    await Promise.all([...leases.keys()].map(async (expiry) => leases.set(expiry, await writer.lease(expiry))));
    const ops: RequestOp[] = [];
    for (const w of batch) {
      const lease = w.node.expiry === undefined ? 0 : w.inherit !== undefined && w.node.expiry > Date.now() ? w.inherit : leases.get(w.node.expiry);
      if (lease === undefined) {
        skippedExpired++;
        continue;
      }
      ops.push({ requestPut: { key: Buffer.from(w.key, 'utf8'), value: Buffer.from(w.node.value, 'utf8'), lease } });
    }
    if (ops.length > 0) {
      await writer.commit(ops, 'set');
      copied += ops.length;
    }
    progress();
  }

  // 5. The target's v2 index up to the source's: revisions outside the prefix (no v2 event).
  let indexAdvanced = 0;
  if (o.matchIndex) {
    const goal = sourceIndex + 1;
    let revision = Math.max(targetRevision, writer.revision);
    let inFlight = 0;
    const lanes = Array.from({ length: INDEX_LANES }, async () => {
      while (revision + inFlight < goal) {
        stopIfAborted();
        inFlight++;
        try {
          const written = await writer.emptyRevision();
          revision = Math.max(revision, written);
        } finally {
          inFlight--;
        }
        indexAdvanced++;
        if (indexAdvanced % 1000 === 0) o.onProgress?.({ copied, skipped: unchanged + skippedExpired, total, indexGap: Math.max(0, goal - revision) });
      }
    });
    await Promise.all(lanes);
    if (indexAdvanced > 0) await writer.dropPadKey();
    if (indexAdvanced > 0) o.onProgress?.({ copied, skipped: unchanged + skippedExpired, total, indexGap: 0 });
  }
  return {
    prefix: o.prefix, files, dirs, hidden, withTtl, written: copied, unchanged, skippedExpired,
    deleted, extra, hiddenMissing, sourceIndex, indexAdvanced, dryRun: false, ms: Date.now() - started,
  };
}

// --- options ---

interface CheckedOptions {
  readonly sources: readonly string[];
  readonly sourceTls: UpstreamTls | undefined;
  readonly authorization: string | undefined;
  readonly target: V3Client;
  readonly prefix: string;
  readonly hidden: readonly string[];
  readonly dryRun: boolean;
  readonly force: boolean;
  readonly prune: boolean;
  readonly matchIndex: boolean;
  readonly batchOps: number;
  readonly sourceTimeout: number;
  readonly onProgress: ((progress: MigrationProgress) => void) | undefined;
  readonly signal: AbortSignal | undefined;
}

function checkOptions(options: MigrateV2StoreOptions): CheckedOptions {
  if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', `expected an object, got ${describe(options)}`);
  const rawSources: readonly unknown[] = typeof options.source === 'string' ? [options.source] : Array.isArray(options.source) ? options.source : [];
  if (rawSources.length === 0) {
    throw new InvalidOptionError('source', `expected a v2 client URL (http(s)://host:port) or a non-empty list of them, got ${describe(options.source)}`);
  }
  const sources = rawSources.map((raw) => {
    if (typeof raw !== 'string') throw new InvalidOptionError('source', `expected a URL string, got ${describe(raw)}`);
    const parsed = parseHostPortUrl(raw);
    if (parsed.error !== undefined) throw new InvalidOptionError('source', parsed.error);
    return parsed.url;
  });
  const sourceTls = upstreamTlsOption(options.sourceTls, 'sourceTls');
  const { sourceUsername: user, sourcePassword: password } = options;
  if (user !== undefined && (typeof user !== 'string' || user === '' || user.includes(':'))) {
    throw new InvalidOptionError('sourceUsername', `expected a non-empty name without ":", got ${describe(user)}`);
  }
  if (password !== undefined && typeof password !== 'string') {
    throw new InvalidOptionError('sourcePassword', `expected a string, got ${describe(password)}`);
  }
  if ((user === undefined) !== (password === undefined)) {
    throw user === undefined
      ? new InvalidOptionError('sourceUsername', 'sourcePassword is given without sourceUsername: give both or neither')
      : new InvalidOptionError('sourcePassword', 'sourceUsername is given without sourcePassword: give both or neither');
  }
  if (!(options.target instanceof V3Client)) throw new InvalidOptionError('target', `expected a V3Client, got ${describe(options.target)}`);
  const prefix = options.prefix ?? '/v2';
  if (typeof prefix !== 'string' || !isPrefix(prefix)) {
    throw new InvalidOptionError('prefix', `expected a key prefix that starts with "/" and does not end with "/", e.g. "/v2", got ${describe(options.prefix)}`);
  }
  const hiddenRaw: unknown = options.hidden ?? [];
  if (!Array.isArray(hiddenRaw)) throw new InvalidOptionError('hidden', `expected an array of v2 paths, got ${describe(hiddenRaw)}`);
  const hidden = hiddenRaw.map((p: unknown) => {
    if (typeof p !== 'string' || !isHiddenPattern(p)) {
      throw new InvalidOptionError('hidden', `expected absolute v2 paths such as "/_hidden" or "/dir/*/_name" (no ".", ".." or empty segment), got ${describe(p)}`);
    }
    return p.replace(/\/+$/, '');
  });
  for (const name of ['dryRun', 'force', 'prune', 'matchIndex'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'boolean') throw new InvalidOptionError(name, `expected true or false, got ${describe(options[name])}`);
  }
  const batchOps = positiveIntegerOption('batchOps', options.batchOps, 100);
  if (batchOps < 2) throw new InvalidOptionError('batchOps', `expected at least 2 (one node and the action key), got ${batchOps}`);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw new InvalidOptionError('onProgress', `expected a function, got ${describe(options.onProgress)}`);
  }
  return {
    sources,
    sourceTls,
    authorization: user === undefined ? undefined : `Basic ${Buffer.from(`${user}:${password!}`).toString('base64')}`,
    target: options.target,
    prefix,
    hidden,
    dryRun: options.dryRun ?? false,
    force: options.force ?? false,
    prune: options.prune ?? false,
    matchIndex: options.matchIndex ?? true,
    batchOps,
    sourceTimeout: durationOption('sourceTimeout', options.sourceTimeout, 60000, 1),
    onProgress: options.onProgress,
    signal: signalOption(options.signal),
  };
}

function isHiddenPattern(p: string): boolean {
  if (!p.startsWith('/')) return false;
  const segments = p.replace(/\/+$/, '').split('/').slice(1);
  return segments.length > 0 && segments.every((s) => s !== '' && s !== '.' && s !== '..');
}

// --- the source ---

interface SourceAnswer {
  readonly node: V2NodeJson;
  /** This host's clock before the request and when its answer came (for the remaining TTLs). */
  readonly requestedAt: number;
  readonly answeredAt: number;
}

/** Reads `/v2/keys` from the first source URL that answers. */
class SourceReader {
  private readonly o: CheckedOptions;
  private current = 0;
  /** Every path asked for. */
  private readonly asked = new Set<string>();
  /** The highest `X-Etcd-Index` answered. */
  index = 0;

  constructor(o: CheckedOptions) {
    this.o = o;
  }

  get url(): string {
    return this.o.sources[this.current]!;
  }

  /**
   * True when the source's answers tell whether it has `path`: it was asked
   * for (the root, a `hidden` path), or is a visible name under such a path
   * (v2 lists those), or its directory is known to be missing.
   */
  covers(path: string, tree: SourceTree): boolean {
    if (path === '/' || this.asked.has(path)) return true;
    const parent = KeyLayout.parent(path);
    if (!this.covers(parent, tree)) return false;
    if (!isHidden(KeyLayout.basename(path))) return true;
    return parent !== '/' && tree.nodes.get(parent)?.dir !== true;
  }

  /** A recursive, sorted GET of `path`; undefined when the source has no such node. */
  async get(path: string): Promise<SourceAnswer | undefined> {
    this.asked.add(path);
    const target = `/v2/keys${path === '/' ? '/' : path.split('/').map(encodeURIComponent).join('/')}?recursive=true&sorted=true&quorum=true`;
    let lastError: Error | undefined;
    for (let tries = 0; tries < this.o.sources.length; tries++) {
      const url = this.url;
      const requestedAt = Date.now();
      let res: { status: number; index: string | undefined; text: string };
      try {
        res = await httpGet(`${url}${target}`, this.o);
      } catch (err) {
        if (this.o.signal?.aborted === true) throw new MigrationError('aborted', 'migration aborted while reading the source', { cause: err });
        lastError = err as Error;
        this.current = (this.current + 1) % this.o.sources.length;
        continue;
      }
      const answeredAt = Date.now();
      let body: { node?: V2NodeJson; errorCode?: unknown } | undefined;
      try {
        body = JSON.parse(res.text) as typeof body;
      } catch {
        body = undefined;
      }
      if (res.status === 200 && body?.node !== undefined && typeof body.node === 'object') {
        const index = Number(res.index ?? 0);
        if (Number.isSafeInteger(index) && index > this.index) this.index = index;
        return { node: body.node, requestedAt, answeredAt };
      }
      if (res.status === 404 && body?.errorCode === 100) return undefined;
      if (res.status === 404) {
        throw new MigrationError('source-not-v2', `source ${url} does not serve the v2 API (/v2/keys answered 404: etcd 3.6, or 3.5 without --enable-v2): there is no v2 store to copy`);
      }
      if (res.status === 401 || res.status === 403) {
        throw new MigrationError('source-refused', `source ${url} refused to list /v2/keys (${res.status}: v2 auth is on): give a v2 user that can read everything (--v2-user root:password)`);
      }
      throw new MigrationError('source-bad-answer', `source ${url} answered GET ${target} with ${res.status}: ${oneLine(res.text)}`);
    }
    const tried = this.o.sources.join(', ');
    throw new MigrationError('source-unreachable', `source ${tried} unreachable: ${lastError?.message ?? 'no answer'}`, { cause: lastError });
  }
}

/** One GET on its own connection, bounded by `sourceTimeout`. */
function httpGet(url: string, o: CheckedOptions): Promise<{ status: number; index: string | undefined; text: string }> {
  const send = url.startsWith('https:') ? httpsRequest : httpRequest;
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (o.authorization !== undefined) headers.Authorization = o.authorization;
  return new Promise((resolve, reject) => {
    const req = send(url, { method: 'GET', agent: false, headers, signal: o.signal, timeout: o.sourceTimeout, ...tlsConnectOptions(o.sourceTls) }, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const index = res.headers['x-etcd-index'];
        resolve({ status: res.statusCode ?? 0, index: Array.isArray(index) ? index[0] : index, text: Buffer.concat(chunks).toString('utf8') });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${o.sourceTimeout} ms`)));
    req.once('socket', (socket) => {
      if (!socket.connecting) return;
      const timer = setTimeout(() => req.destroy(new Error(`dial timeout after ${SOURCE_DIAL_MS} ms`)), SOURCE_DIAL_MS);
      timer.unref();
      socket.once('connect', () => clearTimeout(timer));
      socket.once('close', () => clearTimeout(timer));
    });
    req.on('error', (err) => {
      const explained = explainTlsFailure(err, o.sourceTls);
      reject(explained === err.message ? err : new Error(explained, { cause: err }));
    });
    req.end();
  });
}

function oneLine(text: string): string {
  const line = text.trim().replace(/\s+/g, ' ');
  return line.length > 200 ? `${line.slice(0, 200)}...` : line === '' ? '(empty body)' : line;
}

/**
 * When a node's TTL runs out, on this host's clock. v2 gives `ttl`, the whole
 * seconds left rounded up when the member answered, and `expiration`, on the
 * member's clock: the expiration is used when it agrees with the TTL (clocks
 * in step), else it is brought within the TTL's bounds.
 */
function remaining(json: V2NodeJson, requestedAt: number, answeredAt: number): number | undefined {
  if (typeof json.ttl !== 'number' && typeof json.expiration !== 'string') return undefined;
  const ttl = typeof json.ttl === 'number' ? json.ttl : undefined;
  const stated = typeof json.expiration === 'string' ? Date.parse(json.expiration) : NaN;
  if (ttl === undefined) return Number.isNaN(stated) ? undefined : stated;
  const earliest = requestedAt + (ttl - 1) * 1000 + 1;
  const latest = answeredAt + ttl * 1000;
  if (Number.isNaN(stated)) return latest;
  return Math.min(latest, Math.max(earliest, stated));
}

/** The nodes read from the source, by path, and which are whose children. */
class SourceTree {
  readonly nodes = new Map<string, SourceNode>();
  private readonly children = new Map<string, Set<string>>();

  /** Adds a node of a v2 answer and its subtree (the root itself is not a node to copy). */
  add(json: V2NodeJson, requestedAt: number, answeredAt: number): void {
    const path = typeof json.key === 'string' ? json.key : '/';
    const dir = json.dir === true;
    if (path !== '/') {
      this.nodes.set(path, {
        path,
        dir,
        value: dir || typeof json.value !== 'string' ? '' : json.value,
        ownExpiry: remaining(json, requestedAt, answeredAt),
        createdIndex: typeof json.createdIndex === 'number' ? json.createdIndex : 0,
        hidden: isHidden(path),
        expiry: undefined,
      });
      const parent = KeyLayout.parent(path);
      let set = this.children.get(parent);
      if (set === undefined) this.children.set(parent, (set = new Set()));
      set.add(path);
    }
    if (dir && Array.isArray(json.nodes)) {
      for (const child of json.nodes as V2NodeJson[]) {
        if (child !== null && typeof child === 'object') this.add(child, requestedAt, answeredAt);
      }
    }
  }

  /** The paths of the children of `dir` read so far. */
  childrenOf(dir: string): readonly string[] {
    return [...(this.children.get(dir) ?? [])];
  }

  /** Sets each node's effective expiry: its own, or an ancestor directory's when that comes first. */
  setExpiries(): void {
    const nodes = [...this.nodes.values()].sort((a, b) => KeyLayout.depth(a.path) - KeyLayout.depth(b.path));
    for (const n of nodes) {
      const inherited = this.nodes.get(KeyLayout.parent(n.path))?.expiry;
      n.expiry = inherited === undefined ? n.ownExpiry : n.ownExpiry === undefined ? inherited : Math.min(inherited, n.ownExpiry);
    }
  }
}

/** A `_` name on the path: v2 leaves the node out of listings. */
function isHidden(path: string): boolean {
  return path.split('/').some((s) => s.startsWith('_'));
}

/**
 * Reads the hidden nodes one `hidden` pattern names (and every directory on
 * the way that the tree does not hold yet); false when it matched nothing.
 */
async function expandHidden(pattern: string, tree: SourceTree, source: SourceReader): Promise<boolean> {
  const segments = pattern.split('/').slice(1);
  let frontier = ['/'];
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    const last = i === segments.length - 1;
    const next: string[] = [];
    for (const dirPath of frontier) {
      const base = dirPath === '/' ? '' : dirPath;
      if (segment === '*') {
        next.push(...tree.childrenOf(dirPath));
      } else {
        next.push(`${base}/${segment}`);
      }
    }
    const found: string[] = [];
    for (const path of next) {
      if (!tree.nodes.has(path)) {
        const answer = await source.get(path);
        if (answer === undefined) continue;
        tree.add(answer.node, answer.requestedAt, answer.answeredAt);
      }
      const node = tree.nodes.get(path);
      if (node !== undefined && (last || node.dir)) found.push(path);
    }
    frontier = found;
    if (frontier.length === 0) return false;
  }
  return true;
}

// --- the target ---

/** Every key under `${prefix}/`, read in pages at the revision of the first. */
async function readTarget(client: V3Client, prefix: string, signal: AbortSignal | undefined): Promise<{ kvs: KeyValue[]; revision: number }> {
  const out: KeyValue[] = [];
  const end = Buffer.from(`${prefix}0`, 'utf8');
  let from = Buffer.from(`${prefix}/`, 'utf8');
  let revision = 0;
  for (;;) {
    const res = await targetCall(() => client.range({ key: from, rangeEnd: end, limit: TARGET_PAGE, revision }, { signal }), signal);
    if (revision === 0) revision = res.header.revision;
    out.push(...res.kvs);
    const last = res.kvs[res.kvs.length - 1];
    if (!res.more || last === undefined) return { kvs: out, revision };
    from = Buffer.concat([last.key, Buffer.from([0])]);
  }
}

/** The key the index matching puts, outside every prefix (v3 prefixes start with '/'), and deletes when done. */
const INDEX_PAD_KEY = Buffer.from('\0etcd-v2-proxy/migrate-index-pad');

/** Writes batches and grants the leases of their TTLs. */
class TargetWriter {
  private readonly o: CheckedOptions;
  private readonly actionKey: Buffer;
  /** Lease per expiry (ms): nodes that run out together share one. */
  private readonly leases = new Map<number, number>();

  constructor(o: CheckedOptions, actionKey: Buffer) {
    this.o = o;
    this.actionKey = actionKey;
  }

  /** The target's revision after the latest write here (0: none yet). */
  revision = 0;

  /** One transaction: `ops` and the action key. */
  async commit(ops: RequestOp[], action: string): Promise<void> {
    const success = [...ops, { requestPut: { key: this.actionKey, value: Buffer.from(action, 'utf8') } }];
    const res = await targetCall(() => this.o.target.txn({ compare: [], success, failure: [] }, { signal: this.o.signal }), this.o.signal);
    this.revision = Math.max(this.revision, res.header.revision);
  }

  /**
   * One revision that no v2 reader sees: a put of {@link INDEX_PAD_KEY},
   * outside the prefix. (Not the action key alone: a revision under the
   * prefix without a node crashes an etcd 3.4 member serving the prefix
   * through its emulation while one of its v2 watches is open.) Resolves to it.
   */
  async emptyRevision(): Promise<number> {
    const res = await targetCall(() => this.o.target.put({ key: INDEX_PAD_KEY, value: SET }, { signal: this.o.signal }), this.o.signal);
    this.revision = Math.max(this.revision, res.header.revision);
    return res.header.revision;
  }

  /** Deletes {@link INDEX_PAD_KEY} once the index is matched. */
  async dropPadKey(): Promise<void> {
    await targetCall(() => this.o.target.deleteRange({ key: INDEX_PAD_KEY }, { signal: this.o.signal }), this.o.signal);
  }

  /** The lease of nodes that run out at `expiry` (granted on first use); undefined when that is past. */
  async lease(expiry: number): Promise<number | undefined> {
    // (A lease granted earlier in the run may have run out since: its nodes are skipped as expired.)
    if (expiry <= Date.now()) return undefined;
    const known = this.leases.get(expiry);
    if (known !== undefined) return known;
    for (let attempt = 0; ; attempt++) {
      const now = Date.now();
      if (expiry <= now) return undefined;
      const ttl = grantSeconds(expiry, now);
      const id = leaseIdFor(expiry);
      try {
        await targetCall(() => this.o.target.leaseGrant(ttl, id, { signal: this.o.signal }), this.o.signal);
      } catch (err) {
        if (attempt < 8 && err instanceof MigrationError && err.cause instanceof V3RpcError && err.cause.details.includes('lease already exists')) continue;
        throw err;
      }
      this.leases.set(expiry, id);
      return id;
    }
  }
}

/** A target call, its failures as {@link MigrationError}s. */
async function targetCall<T>(call: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (signal?.aborted === true) throw new MigrationError('aborted', 'migration aborted; what was written stays (a re-run finishes it)', { cause: err });
    if (!(err instanceof V3RpcError)) throw err;
    // 14 UNAVAILABLE, 4 DEADLINE_EXCEEDED: nobody answered.
    if (err.grpcCode === 14 || err.grpcCode === 4) throw new MigrationError('target-unreachable', `target unreachable: ${err.message}`, { cause: err });
    throw new MigrationError('target-refused', `target refused: ${err.message}`, { cause: err });
  }
}

// --- comparing ---

/** The target's key-value equals what the node would be written as (kind is in the key). */
/**
 * Bytes of keys and values one transaction carries at most: below etcd's
 * request limit (`--max-request-bytes`, 1.5 MiB by default), which a batch
 * of ordinary values (100 of 20 KB) would pass. A larger node goes alone.
 */
const BATCH_BYTES = 1024 * 1024;

/** `toWrite` in batches of at most `ops` nodes and {@link BATCH_BYTES} (a larger node alone). */
function* batches(toWrite: readonly Wanted[], ops: number): Generator<Wanted[]> {
  let batch: Wanted[] = [];
  let bytes = 0;
  for (const w of toWrite) {
    const size = Buffer.byteLength(w.key) + Buffer.byteLength(w.node.value);
    if (batch.length > 0 && (batch.length >= ops || bytes + size > BATCH_BYTES)) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(w);
    bytes += size;
  }
  if (batch.length > 0) yield batch;
}

function isEqual(kv: KeyValue, node: SourceNode): boolean {
  if (!kv.value.equals(Buffer.from(node.value, 'utf8'))) return false;
  if (node.expiry === undefined) return kv.lease === 0;
  if (kv.lease === 0) return false;
  const there = expiryOfLease(kv.lease);
  return there !== undefined && Math.abs(there - node.expiry) <= EXPIRY_TOLERANCE_MS;
}

/** `path` is a file of the source, or below one. */
function atOrUnderFile(path: string, files: ReadonlySet<string>): boolean {
  for (let p = path; p !== '/' && p !== ''; p = KeyLayout.parent(p)) if (files.has(p)) return true;
  return false;
}

/** A v3 key prefix as the proxies take it (`v3Prefix`). */
function isPrefix(prefix: string): boolean {
  return prefix.startsWith('/') && !prefix.endsWith('/') && !prefix.includes('\0');
}
