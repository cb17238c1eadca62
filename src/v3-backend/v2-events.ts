/**
 * v3 watch events -> v2 watch events, as pure functions.
 *
 * A v2 write is one v3 transaction, so one v3 revision. The transaction also
 * puts the action key (`${prefix}/act`) with the v2 action's name; a revision
 * that deletes layout keys without it is a lease expiry ("expire"). The rules
 * (see the v3 backend's design, issue 16):
 * - set / create / update / compareAndSwap: the node is the key put whose
 *   other puts are directories created on the way (new ancestors) or its
 *   subtree re-attached to a directory's new lease (existing descendants);
 * - delete / compareAndDelete: the node is the shallowest key deleted (a
 *   recursive delete removes the subtree with it);
 * - deletes without the action key: one "expire" per deleted subtree root;
 * - puts without the action key (written by some other program): one "set"
 *   per key put that is not an ancestor of another key put in that revision;
 * - "refresh" revisions are not delivered (v2 does not notify refreshes);
 * - a revision with only the action key, only keys outside the layout, or an
 *   action that names no matching key change gives no event (it never throws).
 *
 * Indexes: v2 index = v3 revision - 1.
 */
import type { KeyValue, WatchEvent } from './rpc-types.js';
import { KeyLayout } from './key-layout.js';
import { expiryFields, expiryOfLease } from './lease-expiry.js';
import type { V2Event, V2Node } from './v3-store.js';

export type { V2Event, V2Node };

/** One v2 event read from a v3 revision, with what the watch hub matches watchers on. */
export interface TranslatedEvent {
  /** The v3 revision it came from (its v2 index is `revision - 1`). */
  readonly revision: number;
  readonly event: V2Event;
  /**
   * For delete and expire: the v2 paths of every node removed with it (the
   * node and, for a directory, its subtree). v2 notifies a watcher on any of
   * them, recursive or not.
   */
  readonly removed: readonly string[];
  /** The lease of the node's key-value (0: none, or a delete). */
  readonly nodeLease: number;
  /** The lease of the prevNode's key-value (0: none). */
  readonly prevLease: number;
}

const PUT_ACTIONS = new Set(['set', 'create', 'update', 'compareAndSwap']);
const DELETE_ACTIONS = new Set(['delete', 'compareAndDelete']);

/** v3 revision -> v2 index (0 stays 0). */
export function v2Index(revision: number): number {
  return revision > 0 ? revision - 1 : 0;
}

/** The action key of the layout under `prefix`. */
export function actionKey(prefix: string): string {
  return `${prefix}/act`;
}

/** One decoder per prefix (a hub uses one). */
const layouts = new Map<string, KeyLayout>();
function layoutOf(prefix: string): KeyLayout {
  let l = layouts.get(prefix);
  if (l === undefined) {
    if (layouts.size > 16) layouts.clear();
    layouts.set(prefix, (l = new KeyLayout(prefix)));
  }
  return l;
}

/**
 * Groups a watch response's events by revision, in order (etcd sends them in
 * revision order; a revision is never split across responses without
 * `fragment`).
 */
export function groupByRevision(events: readonly WatchEvent[]): Array<{ revision: number; events: WatchEvent[] }> {
  const out: Array<{ revision: number; events: WatchEvent[] }> = [];
  for (const ev of events) {
    const revision = ev.kv.modRevision;
    const last = out[out.length - 1];
    if (last !== undefined && last.revision === revision) last.events.push(ev);
    else out.push({ revision, events: [ev] });
  }
  return out;
}

interface Decoded {
  path: string;
  dir: boolean;
  ev: WatchEvent;
}

/** The v2 node of a key-value (a node in an answer or a prevNode). */
function nodeOf(path: string, dir: boolean, kv: KeyValue, nowMs: number): V2Node {
  const node: V2Node = { key: path } as V2Node;
  if (dir) node.dir = true;
  else node.value = kv.value.toString('utf8');
  const expiry = expiryOfLease(Number(kv.lease));
  if (expiry !== undefined) Object.assign(node, expiryFields(expiry, nowMs));
  node.modifiedIndex = v2Index(Number(kv.modRevision));
  node.createdIndex = v2Index(Number(kv.createRevision));
  return node;
}

/** The prevNode from a prev_kv, if the key's layout decodes. */
function prevNodeOf(prefix: string, prev: KeyValue | null | undefined, nowMs: number): V2Node | undefined {
  if (prev === null || prev === undefined || Number(prev.createRevision) === 0) return undefined;
  const d = layoutOf(prefix).decode(prev.key);
  if (d === undefined) return undefined;
  return nodeOf(d.path, d.dir, prev, nowMs);
}

/** A live prev_kv (a key that existed before). */
function existed(kv: KeyValue | null | undefined): kv is KeyValue {
  return kv !== null && kv !== undefined && Number(kv.createRevision) > 0;
}

function putEvent(prefix: string, action: string, revision: number, etcdIndex: number, put: Decoded, nowMs: number, replaced?: Decoded): TranslatedEvent {
  const event: V2Event = { action, node: nodeOf(put.path, put.dir, put.ev.kv, nowMs), etcdIndex } as V2Event;
  // A file replaced by a directory (or the reverse) in the write: its old key's prev_kv is the prevNode.
  const prevKv = existed(put.ev.prevKv) ? put.ev.prevKv : replaced?.ev.prevKv;
  const prev = prevNodeOf(prefix, prevKv, nowMs);
  if (prev !== undefined) event.prevNode = prev;
  return { revision, event, removed: [], nodeLease: Number(put.ev.kv.lease), prevLease: prev !== undefined ? Number(prevKv!.lease) : 0 };
}

function deleteEvent(prefix: string, action: string, revision: number, etcdIndex: number, root: Decoded, removed: string[], nowMs: number): TranslatedEvent {
  const node = { key: root.path } as V2Node;
  if (root.dir && action !== 'compareAndDelete') node.dir = true;
  node.modifiedIndex = v2Index(revision);
  const prevKv = root.ev.prevKv;
  node.createdIndex = prevKv !== null && prevKv !== undefined ? v2Index(Number(prevKv.createRevision)) : 0;
  const event: V2Event = { action, node, etcdIndex } as V2Event;
  const prev = prevNodeOf(prefix, prevKv, nowMs);
  if (prev !== undefined) event.prevNode = prev;
  return { revision, event, removed, nodeLease: 0, prevLease: prev !== undefined ? Number(prevKv!.lease) : 0 };
}

/**
 * The node of a write among the keys it put: the one whose other puts are
 * all either directories created on the way (new ancestors) or keys of its
 * subtree moved to its new lease (existing descendants, a directory's TTL
 * change). etcd's emulation writes in no fixed order, so order is not used;
 * failing that (a foreign writer), the last key put, as V3Store puts the
 * node last before the action key.
 */
function writtenNode(puts: readonly Decoded[], revision: number): Decoded {
  const isNew = (d: Decoded): boolean => Number(d.ev.kv.createRevision) === revision;
  let best: Decoded | undefined;
  for (const p of puts) {
    const fits = puts.every((q) => q === p || (isNew(q) && KeyLayout.isAncestor(q.path, p.path)) || (!isNew(q) && KeyLayout.isAncestor(p.path, q.path)));
    if (fits && (best === undefined || KeyLayout.depth(p.path) > KeyLayout.depth(best.path))) best = p;
  }
  return best ?? puts[puts.length - 1]!;
}

/**
 * The v2 events of one v3 revision (its events from a watch response, with
 * `prevKv`), in order. `etcdIndex` of each event: `headerRevision - 1` when
 * given (the watch response's header), else the event's own index.
 */
export function translateRevision(
  prefix: string,
  revision: number,
  events: readonly WatchEvent[],
  options: { nowMs?: number; headerRevision?: number } = {},
): TranslatedEvent[] {
  const nowMs = options.nowMs ?? Date.now();
  const etcdIndex = v2Index(Math.max(revision, options.headerRevision ?? 0));
  const layout = layoutOf(prefix);
  const act = actionKey(prefix);
  let action: string | undefined;
  const puts: Decoded[] = [];
  const dels: Decoded[] = [];
  for (const ev of events) {
    const key = ev.kv.key.toString('utf8');
    if (key === act) {
      if (ev.type === 'PUT') action = ev.kv.value.toString('utf8');
      continue;
    }
    const d = layout.decode(ev.kv.key);
    if (d === undefined) continue;
    (ev.type === 'DELETE' ? dels : puts).push({ path: d.path, dir: d.dir, ev });
  }
  if (action === 'refresh') return [];
  if (action !== undefined && PUT_ACTIONS.has(action)) {
    if (puts.length === 0) return [];
    const node = writtenNode(puts, revision);
    return [putEvent(prefix, action, revision, etcdIndex, node, nowMs, dels.find((d) => d.path === node.path))];
  }
  if (action !== undefined && DELETE_ACTIONS.has(action)) {
    if (dels.length === 0) return [];
    let root = dels[0]!;
    for (const d of dels) if (KeyLayout.depth(d.path) < KeyLayout.depth(root.path) || (KeyLayout.depth(d.path) === KeyLayout.depth(root.path) && d.path.length < root.path.length)) root = d;
    return [deleteEvent(prefix, action, revision, etcdIndex, root, dels.map((d) => d.path), nowMs)];
  }
  // No action key (or one we do not know): written by the cluster (lease expiry) or another program.
  if (puts.length > 0) {
    const leaves = puts.filter((p) => !puts.some((q) => KeyLayout.isAncestor(p.path, q.path)));
    leaves.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    return leaves.map((p) => putEvent(prefix, 'set', revision, etcdIndex, p, nowMs));
  }
  if (dels.length > 0) {
    const roots = dels.filter((d) => !dels.some((e) => KeyLayout.isAncestor(e.path, d.path)));
    roots.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    return roots.map((r) =>
      deleteEvent(
        prefix,
        'expire',
        revision,
        etcdIndex,
        r,
        dels.filter((d) => d.path === r.path || KeyLayout.isAncestor(r.path, d.path)).map((d) => d.path),
        nowMs,
      ),
    );
  }
  return [];
}

/** The v2 events of a whole watch response, in revision order. */
export function translateResponse(prefix: string, events: readonly WatchEvent[], options: { nowMs?: number; headerRevision?: number } = {}): TranslatedEvent[] {
  const out: TranslatedEvent[] = [];
  for (const group of groupByRevision(events)) for (const ev of translateRevision(prefix, group.revision, group.events, options)) out.push(ev);
  return out;
}

/**
 * Whether a v2 watcher on `watchPath` gets `ev`, as v2's watcher hub decides:
 * the event's key is the watched path; or the watch is recursive, the watched
 * path is an ancestor of the key (by path components: `/foo` is not an
 * ancestor of `/foobar`) and no component below the watched path is hidden
 * (starts with '_'); or the watched path was removed with it (a directory
 * deleted or expired notifies the watchers of every node in it).
 */
export function watcherMatches(watchPath: string, recursive: boolean, ev: TranslatedEvent): boolean {
  const key = ev.event.node.key;
  if (key === watchPath) return true;
  if (ev.removed.length > 0 && ev.removed.includes(watchPath)) return true;
  if (!recursive || !KeyLayout.isAncestor(watchPath, key)) return false;
  const below = watchPath === '/' ? key : key.slice(watchPath.length);
  return !below.includes('/_');
}
