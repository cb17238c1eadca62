/**
 * v2 watches served from v3 watches, many v2 watchers per v3 watch and one
 * v3 watch stream (one gRPC stream on one member) for the whole hub.
 *
 * - One shared v3 watch covers the whole prefix (`[P/, P0)`). Every watcher
 *   that waits for what comes next ("from now", or a `waitIndex` the shared
 *   watch has not reached yet) hangs on it, found by path on each event.
 * - A watcher with a past `waitIndex` gets its own v3 watch, created on the
 *   same stream with `start_revision = waitIndex + 1` (v2 index = revision -
 *   1). Once that watch has caught up with the shared one, the watcher moves
 *   to the shared watch and its own is cancelled; a `stream=false` watcher
 *   drops it after its one event.
 * - Each v3 watch keeps the last revision it handled. When the stream's
 *   member fails, the hub opens a stream on another member and re-creates
 *   every watch from that revision + 1: no event is lost and none is
 *   delivered twice (each watcher also ignores revisions before its own
 *   start).
 * - History: a `waitIndex` older than the cluster's compaction is v2's 401
 *   "The event in requested index is outdated and cleared". Native v2 also
 *   forgets all but its last 1000 events; here the v3 history (up to the
 *   compaction) serves instead, so a waitIndex v2 would have refused may be
 *   answered.
 */
import { status } from '@grpc/grpc-js';
import createDebug from 'debug';
import type { WatchEvent, WatchResponse } from './rpc-types.js';
import { V2Error } from './v2-error.js';
import { KeyLayout } from './key-layout.js';
import { actionKey, translateResponse, v2Index, watcherMatches } from './v2-events.js';
import type { TranslatedEvent, V2Event, V2Node } from './v2-events.js';
import { V3RpcError } from './v3-client.js';
import type { V3Client, WatchStream } from './v3-client.js';
import { describe, durationOption, signalOption } from '../validate-options.js';
import { InvalidOptionError } from '../errors.js';

/**
 * Options of {@link WatchHub}.
 * @public
 */
export interface WatchHubOptions {
  /** The gRPC client: the hub opens its one watch stream through it. */
  client: V3Client;
  /** The v3 key prefix of the v2 tree. Default: `/v2`. */
  prefix?: string;
  /**
   * ms the stream and the shared v3 watch stay open once the last watcher is
   * gone (a client that re-watches after each event finds them ready).
   * Default: 30000.
   */
  idleTimeout?: number;
  /** Aborting it closes the hub. */
  signal?: AbortSignal;
}

/**
 * What {@link WatchHub.watch} gives: a registered v2 watch.
 * @public
 */
export interface V2Watch {
  /** Ends the watch (its `onEnd` is not called). Idempotent. */
  cancel(): void;
  /**
   * The v2 index the watch started after: events delivered have a greater
   * index (a `waitIndex` may make them start earlier). What v2 answers as
   * the watch's `X-Etcd-Index`.
   */
  readonly startIndex: number;
}

/**
 * Options of one {@link WatchHub.watch} call (v2's `recursive`, `stream`, `waitIndex`).
 * @public
 */
export interface V2WatchOptions {
  recursive: boolean;
  /** true: every matching event until `cancel()`; false: one event, then the watch ends. */
  stream: boolean;
  /** v2's `waitIndex`: deliver events with an index >= it. undefined (or 0): from now. */
  waitIndex?: number;
}

const debug = createDebug('etcd-v2-proxy:watch-hub');

/** Directories whose lease the hub remembers at most (then it starts over). */
const DIR_LEASE_CACHE = 10000;

/** How long to wait before opening a stream again after `n` failures in a row. */
function backoff(n: number): number {
  return n <= 1 ? 0 : Math.min(50 * 2 ** (n - 2), 2000);
}

/** One v3 watch on the hub's stream. */
class Feed {
  /** Its watch ID on the current stream; 0 while it is not created there. */
  watchId = 0;
  /** etcd confirmed it on the current stream. */
  created = false;
  /** Every event up to this revision has been handled. */
  lastRev: number;
  /** The revision the current create asked for (0: from now). */
  startRev: number;
  /** `watch()` calls waiting for it to be created. */
  waiters: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  /** Own feeds: the one watcher. */
  readonly watcher: HubWatcher | undefined;
  /** Own feeds: the compaction check is done (or not needed). */
  checked = true;
  /** The v2 index it was asked to start from (own feeds: the waitIndex). */
  readonly waitIndex: number;

  constructor(
    readonly kind: 'shared' | 'own',
    startRev: number,
    watcher?: HubWatcher,
  ) {
    this.startRev = startRev;
    this.lastRev = startRev > 0 ? startRev - 1 : 0;
    this.waitIndex = v2Index(startRev);
    this.watcher = watcher;
  }
}

/** One v2 watcher. */
class HubWatcher implements V2Watch {
  /** Events with a lower revision are not for it. */
  sinceRev = 0;
  startIndex = 0;
  ended = false;
  /** `watch()` resolved with it: its `onEnd` is due when it ends other than by `cancel()`. */
  registered = false;
  /** Events come only once `watch()` has resolved (so the HTTP head goes first). */
  ready = false;
  buffered: TranslatedEvent[] = [];
  /** Its own v3 watch; undefined once (or while) it hangs on the shared one. */
  feed: Feed | undefined = undefined;
  inShared = false;

  constructor(
    private readonly remove: (w: HubWatcher) => void,
    readonly path: string,
    readonly recursive: boolean,
    readonly stream: boolean,
    readonly onEvent: (ev: V2Event) => void,
    readonly onEnd: (err?: Error) => void,
  ) {}

  cancel(): void {
    this.remove(this);
  }
}

/**
 * v2 watches (`wait=true`) over v3 watches: one v3 watch stream for the
 * whole hub, whatever the number of watchers.
 * @public
 */
export class WatchHub {
  /** The v3 key prefix of the v2 tree. */
  readonly prefix: string;
  private readonly client: V3Client;
  private readonly idleTimeout: number;
  private readonly signal: AbortSignal | undefined;
  private readonly aborter = new AbortController();
  private readonly actKey: Buffer;
  private readonly rangeKey: Buffer;
  private readonly rangeEnd: Buffer;

  private stream: WatchStream | undefined;
  private readonly feeds = new Map<number, Feed>();
  private shared: Feed | undefined;
  private readonly own = new Set<Feed>();
  private readonly byPath = new Map<string, Set<HubWatcher>>();
  /** Responses waiting to be handled, in order. */
  private readonly inbox: Array<{ feed: Feed; watchId: number; r: WatchResponse }> = [];
  private pumping = false;
  /** The lease of each directory the shared watch knows, as of its last revision (0: none, or no such directory). */
  private readonly dirLeases = new Map<string, number>();
  private readonly layout: KeyLayout;
  private readonly live = new Set<HubWatcher>();
  private nextWatchId = 1;
  private failures = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private nowInFlight: Promise<number | undefined> | undefined;
  private nowQueued: Promise<number | undefined> | undefined;
  private closed = false;
  private readonly onAbort = (): void => this.close();

  constructor(options: WatchHubOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', `expected an object, got ${describe(options)}`);
    if (typeof options.client !== 'object' || options.client === null || typeof options.client.openWatchStream !== 'function') {
      throw new InvalidOptionError('client', `expected a V3Client, got ${describe(options.client)}`);
    }
    const prefix = options.prefix ?? '/v2';
    if (typeof prefix !== 'string' || !prefix.startsWith('/') || prefix.endsWith('/')) {
      throw new InvalidOptionError('prefix', `expected a key prefix starting with "/" and not ending with "/", got ${describe(prefix)}`);
    }
    this.idleTimeout = durationOption('idleTimeout', options.idleTimeout, 30000);
    this.signal = signalOption(options.signal);
    this.client = options.client;
    this.prefix = prefix;
    this.layout = new KeyLayout(prefix);
    this.actKey = Buffer.from(actionKey(prefix));
    this.rangeKey = Buffer.from(`${prefix}/`);
    this.rangeEnd = Buffer.from(`${prefix}0`);
    if (this.signal?.aborted === true) this.closed = true;
    else this.signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** v3 watch streams open: 0 or 1. */
  get streams(): number {
    return this.stream === undefined ? 0 : 1;
  }

  /** The client URL of the member the stream is on (undefined without a stream). */
  get endpoint(): string | undefined {
    return this.stream?.endpoint;
  }

  /** v2 watchers registered (or registering). */
  get watchers(): number {
    return this.live.size;
  }

  /** v3 watches on the stream (the shared one and the watchers' own). */
  get v3Watches(): number {
    return (this.shared !== undefined ? 1 : 0) + this.own.size;
  }

  /**
   * Registers a v2 watch on `path`. Resolves once it is registered (so the
   * HTTP layer can send its 200 head; no event comes before), or rejects with
   * a {@link V2Error} (401 when `waitIndex` is older than the compaction).
   * `onEvent` gets each matching event (the same object for every watcher:
   * do not change it); `onEnd` is called once when the watch ends other than
   * by `cancel()`: after its one event (`stream: false`), when the hub
   * closes, or with an error (the cluster cancelled the watch, its history
   * was compacted during a failover).
   */
  async watch(path: string, o: V2WatchOptions, onEvent: (ev: V2Event) => void, onEnd: (err?: Error) => void): Promise<V2Watch> {
    if (this.closed) throw this.closedError();
    const clean = KeyLayout.normalize(path);
    const w = new HubWatcher(this.dropWatcher, clean, o.recursive, o.stream, onEvent, onEnd);
    this.live.add(w);
    this.stopIdle();
    try {
      this.ensureStream();
      const waitIndex = o.waitIndex === undefined || o.waitIndex === 0 ? undefined : o.waitIndex;
      if (waitIndex === undefined) {
        const [now, shared] = await Promise.all([this.currentRevision(), this.ensureShared()]);
        this.assertShared(w, shared);
        const at = Math.max(now ?? 0, shared.lastRev);
        w.sinceRev = at + 1;
        w.startIndex = v2Index(at);
        this.joinShared(w);
      } else {
        const since = waitIndex + 1;
        const shared = await this.ensureShared();
        this.assertShared(w, shared);
        w.startIndex = v2Index(shared.lastRev);
        w.sinceRev = since;
        if (since > shared.lastRev) this.joinShared(w);
        else await this.openOwn(w, since);
        this.assertOpen(w);
      }
    } catch (err) {
      if (!w.ended) this.drop(w);
      throw err;
    }
    w.registered = true;
    setImmediate(() => this.flush(w));
    return w;
  }

  /** Cancels every watch (each watcher's `onEnd` is called), closes the stream and stops every timer. Idempotent. */
  close(): void {
    this.shutdown(undefined);
  }

  /** close(), with `reason` given to each watcher's `onEnd` (the client was closed under the hub). */
  private shutdown(reason: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    this.aborter.abort();
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.idleTimer);
    this.reconnectTimer = undefined;
    this.idleTimer = undefined;
    const err = reason ?? this.closedError();
    for (const feed of [this.shared, ...this.own]) if (feed !== undefined) this.rejectWaiters(feed, err);
    this.closeStream();
    const watchers = [...this.live];
    this.live.clear();
    this.byPath.clear();
    this.own.clear();
    this.shared = undefined;
    for (const w of watchers) {
      w.ended = true;
      w.buffered = [];
      if (w.registered) safeCall(() => w.onEnd(reason));
    }
  }

  // --- registration ---

  private readonly dropWatcher = (w: HubWatcher): void => this.drop(w);

  /** Removes a watcher (its `cancel()`, its end). */
  private drop(w: HubWatcher): void {
    if (w.ended) return;
    w.ended = true;
    w.buffered = [];
    this.live.delete(w);
    if (w.inShared) {
      w.inShared = false;
      const set = this.byPath.get(w.path);
      set?.delete(w);
      if (set?.size === 0) this.byPath.delete(w.path);
    }
    if (w.feed !== undefined) {
      this.dropFeed(w.feed);
      w.feed = undefined;
    }
    this.maybeIdle();
  }

  private assertOpen(w: HubWatcher): void {
    if (this.closed || w.ended) throw this.closedError();
  }

  /** Still open, and the shared watch is still the one awaited (etcd did not cancel it meanwhile). */
  private assertShared(w: HubWatcher, shared: Feed): void {
    this.assertOpen(w);
    if (this.shared !== shared) throw new V2Error(300, 'the shared watch was cancelled by the cluster', v2Index(shared.lastRev));
  }

  private closedError(): V2Error {
    return new V2Error(300, 'the watch hub is closed', 0);
  }

  private joinShared(w: HubWatcher): void {
    w.inShared = true;
    let set = this.byPath.get(w.path);
    if (set === undefined) this.byPath.set(w.path, (set = new Set()));
    set.add(w);
  }

  /** Delivers what came while `watch()` was resolving. */
  private flush(w: HubWatcher): void {
    if (w.ended) return;
    w.ready = true;
    const queued = w.buffered;
    w.buffered = [];
    for (const te of queued) this.offer(w, te);
  }

  /**
   * The cluster's current revision (a linearizable read, so it covers every
   * write acknowledged before the call); concurrent calls share reads, each
   * waiting for one that started after it. undefined when the read failed.
   */
  private currentRevision(): Promise<number | undefined> {
    if (this.nowQueued !== undefined) return this.nowQueued;
    if (this.nowInFlight !== undefined) {
      const queued = this.nowInFlight.then(() => {
        if (this.nowQueued === queued) this.nowQueued = undefined;
        return this.readRevision();
      });
      this.nowQueued = queued;
      return queued;
    }
    return this.readRevision();
  }

  private readRevision(): Promise<number | undefined> {
    const p = this.client
      .range({ key: this.actKey, countOnly: true }, { signal: this.aborter.signal })
      .then(
        (r) => Number(r.header.revision),
        () => undefined,
      );
    this.nowInFlight = p;
    void p.then(() => {
      if (this.nowInFlight === p) this.nowInFlight = undefined;
    });
    return p;
  }

  /** The shared watch, created once it is confirmed. */
  private async ensureShared(): Promise<Feed> {
    let feed = this.shared;
    if (feed === undefined) {
      feed = new Feed('shared', 0);
      this.shared = feed;
      this.dirLeases.clear();
      const waiting = this.waitCreated(feed);
      // Awaited below, unless this call gives up first: its rejection (the hub closed meanwhile) is then no one's.
      waiting.catch(() => undefined);
      const now = await this.currentRevision();
      if (this.shared !== feed || this.closed) throw this.closedError();
      // (A stream re-opened meanwhile may have created it, from now, already: then it
      // resumes from what it has seen, lastRev, and the read's revision is too late.)
      if (feed.watchId === 0 && !feed.created) {
        if (now !== undefined && feed.lastRev === 0) {
          feed.startRev = now + 1;
          feed.lastRev = now;
        }
        this.createFeed(feed);
      }
      await waiting;
      return feed;
    }
    if (!feed.created) await this.waitCreated(feed);
    return feed;
  }

  private waitCreated(feed: Feed): Promise<void> {
    return new Promise<void>((resolve, reject) => feed.waiters.push({ resolve, reject }));
  }

  private rejectWaiters(feed: Feed, err: Error): void {
    for (const w of feed.waiters.splice(0)) w.reject(err);
  }

  private resolveWaiters(feed: Feed): void {
    if (!feed.created || !feed.checked) return;
    for (const w of feed.waiters.splice(0)) w.resolve();
  }

  /**
   * Gives `w` its own v3 watch from `since`, checking first that the history
   * is there (a linearizable read at that revision: etcd refuses one older
   * than the compaction). The compacted revision itself comes in the watch's
   * cancel response.
   */
  private async openOwn(w: HubWatcher, since: number): Promise<void> {
    const feed = new Feed('own', since, w);
    feed.checked = false;
    w.feed = feed;
    this.own.add(feed);
    const waiting = this.waitCreated(feed);
    this.createFeed(feed);
    this.client.range({ key: this.actKey, countOnly: true, revision: since }, { signal: this.aborter.signal }).then(
      () => {
        feed.checked = true;
        this.resolveWaiters(feed);
      },
      (err: unknown) => {
        if (/compacted/i.test(String((err as { details?: unknown }).details ?? (err as Error).message))) {
          this.ownCompacted(feed, since);
          return;
        }
        feed.checked = true;
        this.resolveWaiters(feed);
      },
    );
    await waiting;
  }

  /**
   * The history check of an own feed found `since` compacted. etcd cancels
   * the watch (with the compact revision, which rejects the waiters with
   * 401) when its start was compacted as it was created; but a watch that
   * had caught up just before the compaction goes on, and its waiters would
   * wait for ever. So: events from `since` on that already reached it show
   * the history was there (the watch stands); otherwise the watch is made
   * again from `since`, which etcd cancels for sure.
   */
  private ownCompacted(feed: Feed, since: number): void {
    if (!this.active(feed) || feed.checked) return;
    if (feed.lastRev >= since) {
      feed.checked = true;
      this.resolveWaiters(feed);
      return;
    }
    if (feed.watchId !== 0) {
      this.feeds.delete(feed.watchId);
      this.stream?.cancel(feed.watchId);
      feed.watchId = 0;
      feed.created = false;
    }
    this.createFeed(feed);
  }

  /** Sends the create request of `feed` on the current stream (if there is one). */
  private createFeed(feed: Feed): void {
    const stream = this.stream;
    if (stream === undefined || this.closed || feed.watchId !== 0) return;
    const watchId = this.nextWatchId++;
    feed.watchId = watchId;
    feed.created = false;
    feed.startRev = feed.lastRev > 0 || feed.startRev > 0 ? feed.lastRev + 1 : 0;
    this.feeds.set(watchId, feed);
    stream.create({
      key: this.rangeKey,
      rangeEnd: this.rangeEnd,
      startRevision: feed.startRev,
      prevKv: true,
      progressNotify: true,
      watchId,
    });
  }

  private dropFeed(feed: Feed): void {
    if (feed.kind === 'own') this.own.delete(feed);
    if (feed.watchId !== 0) {
      this.feeds.delete(feed.watchId);
      if (this.stream !== undefined) this.stream.cancel(feed.watchId);
      feed.watchId = 0;
    }
    feed.created = false;
  }

  // --- the stream ---

  /**
   * Opens the stream if there is none, and (after a failure) re-creates every
   * v3 watch on it from its last revision + 1.
   */
  private ensureStream(): void {
    if (this.stream !== undefined || this.closed) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const stream = this.client.openWatchStream({ signal: this.aborter.signal });
    this.stream = stream;
    stream.on('response', (r) => {
      if (this.stream === stream) this.receive(r);
    });
    stream.on('error', (err) => {
      if (this.stream === stream) this.onStreamDown(err);
    });
    stream.on('end', () => {
      if (this.stream === stream) this.onStreamDown(undefined);
    });
    if (this.shared !== undefined) this.createFeed(this.shared);
    for (const feed of this.own) this.createFeed(feed);
  }

  private closeStream(): void {
    const stream = this.stream;
    this.stream = undefined;
    this.feeds.clear();
    for (const feed of [this.shared, ...this.own]) {
      if (feed === undefined) continue;
      feed.watchId = 0;
      feed.created = false;
    }
    stream?.close();
  }

  /** The stream's member failed (or ended the stream): resume every watch elsewhere. */
  private onStreamDown(err: Error | undefined): void {
    this.closeStream();
    if (this.closed) return;
    if (err instanceof V3RpcError && err.grpcCode === status.CANCELLED && !err.sent && err.endpoint === undefined) {
      // The client was closed: nothing to resume on.
      this.shutdown(err);
      return;
    }
    if (this.live.size === 0) {
      this.shared = undefined;
      return;
    }
    this.failures++;
    if (err !== undefined && this.failures >= 3) {
      // No member has taken the watches for a while: the watch() calls still waiting fail (their clients retry).
      for (const feed of [this.shared, ...this.own]) if (feed !== undefined) this.rejectWaiters(feed, err);
    }
    const delay = backoff(this.failures);
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closed || this.stream !== undefined) return;
      if (this.live.size === 0) {
        this.shared = undefined;
        return;
      }
      try {
        this.ensureStream();
      } catch (err) {
        this.onStreamDown(err as Error);
      }
    }, delay);
    this.reconnectTimer.unref();
  }

  /** Queues a response of the current stream; they are handled one after the other, in order. */
  private receive(r: WatchResponse): void {
    const watchId = Number(r.watchId);
    const feed = this.feeds.get(watchId);
    if (feed === undefined) return;
    this.inbox.push({ feed, watchId, r });
    if (!this.pumping) void this.pump();
  }

  /** Handles the queued responses; synchronously unless a response needs a lookup. */
  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (this.inbox.length > 0 && !this.closed) {
        const item = this.inbox.shift()!;
        try {
          const pending = this.handle(item.feed, item.watchId, item.r);
          if (pending !== undefined) await pending;
        } catch (err) {
          debug('watch response not handled: %s', (err as Error).stack);
        }
      }
      if (this.closed) this.inbox.length = 0;
    } finally {
      this.pumping = false;
    }
  }

  /** Whether `feed` still serves watchers (not cancelled or replaced meanwhile). */
  private active(feed: Feed): boolean {
    if (feed.kind === 'shared') return this.shared === feed;
    const w = feed.watcher!;
    return !w.ended && w.feed === feed;
  }

  private handle(feed: Feed, watchId: number, r: WatchResponse): Promise<void> | undefined {
    if (r.created || r.canceled || r.events.length === 0) {
      // Control messages count only from the feed's current v3 watch (not one of a stream since replaced).
      if (feed.watchId !== watchId) return undefined;
      if (r.created) {
        this.failures = 0;
        if (r.canceled) {
          this.feedCanceled(feed, r);
          return undefined;
        }
        feed.created = true;
        if (feed.startRev === 0) {
          // From now: nothing at or before the header's revision comes.
          feed.lastRev = Math.max(feed.lastRev, Number(r.header.revision));
        }
        this.resolveWaiters(feed);
      } else if (r.canceled) {
        this.feedCanceled(feed, r);
        return undefined;
      } else if (feed.created) {
        // A progress notification: etcd sends it only for a watch that has caught up.
        feed.lastRev = Math.max(feed.lastRev, Number(r.header.revision));
      }
      this.maybeMerge(feed);
      return undefined;
    }
    if (!this.active(feed)) return undefined;
    // Events are history whichever stream brought them; what a resumed watch sends again is dropped here.
    const fresh = r.events.filter((ev) => Number(ev.kv.modRevision) > feed.lastRev);
    if (fresh.length === 0) return undefined;
    const translated = translateResponse(this.prefix, fresh, { headerRevision: Number(r.header.revision) });
    // (Not Math.max(...): a recursive delete of a big directory is one response of as many events, past the spread's limit.)
    let lastRev = 0;
    for (const ev of fresh) lastRev = Math.max(lastRev, Number(ev.kv.modRevision));
    const lookups = this.inheritedLeases(feed, fresh, translated);
    const deliver = (): void => {
      if (!this.active(feed)) return;
      feed.lastRev = Math.max(feed.lastRev, lastRev);
      if (feed.kind === 'shared') for (const te of translated) this.dispatch(te);
      else {
        const w = feed.watcher!;
        for (const te of translated) {
          if (w.ended || w.feed !== feed) break;
          if (te.revision >= w.sinceRev && watcherMatches(w.path, w.recursive, te)) this.offer(w, te);
        }
      }
      this.maybeMerge(feed);
    };
    if (lookups === undefined) {
      deliver();
      return undefined;
    }
    return lookups.then(deliver);
  }

  /**
   * v2 shows no `ttl`/`expiration` on a node that only goes with its
   * directory: V3Store attaches such a node to its parent's lease. For each
   * event whose node (or prevNode) is on a lease of ours, this finds the
   * parent directory's lease at that revision (from the same revision's
   * events, the shared watch's record of directory leases, or one read of
   * the missing ones at their revisions) and removes the fields when they
   * are the same lease. Returns a promise when a read is needed.
   */
  private inheritedLeases(feed: Feed, events: readonly WatchEvent[], translated: readonly TranslatedEvent[]): Promise<void> | undefined {
    const useCache = feed.kind === 'shared';
    // The directories put or deleted in each revision (for the cache and for same-revision answers).
    const dirChanges = new Map<number, Map<string, { now: number; before: number | undefined }>>();
    for (const ev of events) {
      const d = this.layout.decode(ev.kv.key);
      if (d === undefined || !d.dir) continue;
      const rev = Number(ev.kv.modRevision);
      let m = dirChanges.get(rev);
      if (m === undefined) dirChanges.set(rev, (m = new Map()));
      const prev = ev.prevKv;
      m.set(d.path, {
        now: ev.type === 'PUT' ? Number(ev.kv.lease) : 0,
        before: prev !== null && prev !== undefined ? (Number(prev.createRevision) > 0 ? Number(prev.lease) : 0) : undefined,
      });
    }
    const byRev = new Map<number, TranslatedEvent[]>();
    for (const te of translated) {
      let list = byRev.get(te.revision);
      if (list === undefined) byRev.set(te.revision, (list = []));
      list.push(te);
    }
    const missing: Array<{ dir: string; rev: number; apply: (lease: number) => void }> = [];
    const revisions = [...new Set([...byRev.keys(), ...dirChanges.keys()])].sort((a, b) => a - b);
    for (const rev of revisions) {
      const changes = dirChanges.get(rev);
      for (const te of byRev.get(rev) ?? []) {
        const parent = KeyLayout.parent(te.event.node.key);
        if (parent === '/') continue;
        const node = te.event.node;
        if (node.expiration !== undefined && te.nodeLease !== 0) {
          const strip = (lease: number): void => {
            if (lease === te.nodeLease) stripTtl(node);
          };
          const known = changes?.get(parent)?.now ?? (useCache ? this.dirLeases.get(parent) : undefined);
          if (known !== undefined) strip(known);
          else missing.push({ dir: parent, rev, apply: strip });
        }
        const prevNode = te.event.prevNode;
        if (prevNode !== undefined && prevNode.expiration !== undefined && te.prevLease !== 0) {
          const strip = (lease: number): void => {
            if (lease === te.prevLease) stripTtl(prevNode);
          };
          const change = changes?.get(parent);
          const known = change !== undefined ? change.before : useCache ? this.dirLeases.get(parent) : undefined;
          if (known !== undefined) strip(known);
          else missing.push({ dir: parent, rev: rev - 1, apply: strip });
        }
      }
      if (useCache && changes !== undefined) {
        if (this.dirLeases.size > DIR_LEASE_CACHE) this.dirLeases.clear();
        for (const [dir, c] of changes) this.dirLeases.set(dir, c.now);
      }
    }
    if (missing.length === 0) return undefined;
    const keys = [...new Map(missing.map((m) => [`${m.rev} ${m.dir}`, m])).values()];
    const changedInBatch = new Set<string>();
    for (const m of dirChanges.values()) for (const dir of m.keys()) changedInBatch.add(dir);
    return this.client
      .txn(
        {
          compare: [],
          success: keys.map((m) => ({ requestRange: { key: this.layout.dirKey(m.dir), revision: m.rev, keysOnly: true } })),
          failure: [],
        },
        { signal: this.aborter.signal },
      )
      .then(
        (resp) => {
          const found = new Map<string, number>();
          keys.forEach((m, i) => found.set(`${m.rev} ${m.dir}`, Number(resp.responses[i]?.responseRange?.kvs[0]?.lease ?? 0)));
          for (const m of missing) m.apply(found.get(`${m.rev} ${m.dir}`) ?? 0);
          if (useCache && this.active(feed)) {
            // Still true at the end of this batch when the directory did not change in it.
            for (const m of keys) if (!changedInBatch.has(m.dir) && !this.dirLeases.has(m.dir)) this.dirLeases.set(m.dir, found.get(`${m.rev} ${m.dir}`) ?? 0);
          }
        },
        (err: unknown) => {
          // History compacted, no member: the fields stay (what the lease says).
          debug('directory leases not read: %s', (err as Error).message);
        },
      );
  }

  /** An own watch that has caught up with the shared one hands its watcher over to it. */
  private maybeMerge(feed: Feed): void {
    if (feed.kind !== 'own') return;
    const w = feed.watcher!;
    const shared = this.shared;
    if (w.ended || w.feed !== feed || shared === undefined || !shared.created || !feed.created || !feed.checked) return;
    if (feed.lastRev < shared.lastRev) return;
    // Every event up to feed.lastRev reached it here; the shared watch brings every one after shared.lastRev.
    w.sinceRev = Math.max(w.sinceRev, feed.lastRev + 1);
    w.feed = undefined;
    this.dropFeed(feed);
    this.joinShared(w);
  }

  /**
   * etcd cancelled a watch: its history was compacted, or it refused it. Its
   * watchers are removed at once; they get the error (v2's 401 for a
   * compaction, index = the current one) once the current index is known
   * (etcd's cancel response carries no revision).
   */
  private feedCanceled(feed: Feed, r: WatchResponse): void {
    this.feeds.delete(feed.watchId);
    feed.watchId = 0;
    feed.created = false;
    const ended: HubWatcher[] = [];
    if (feed.kind === 'own') {
      this.own.delete(feed);
      const w = feed.watcher!;
      if (w.feed === feed) {
        w.feed = undefined;
        ended.push(w);
      }
    } else if (this.shared === feed) {
      this.shared = undefined;
      for (const set of this.byPath.values()) for (const w of set) ended.push(w);
    }
    const notify = ended.filter((w) => w.registered);
    for (const w of ended) this.drop(w);
    const compactRev = Number(r.compactRevision);
    const finish = (currentRev: number): void => {
      const index = v2Index(currentRev);
      const err =
        compactRev > 0
          ? new V2Error(401, `the requested history has been cleared [${v2Index(compactRev)}/${feed.kind === 'own' ? feed.waitIndex : v2Index(feed.startRev)}]`, index)
          : new V2Error(300, `the watch was cancelled by the cluster${r.cancelReason ? `: ${r.cancelReason}` : ''}`, index);
      this.rejectWaiters(feed, err);
      for (const w of notify) safeCall(() => w.onEnd(err));
    };
    const headerRev = Number(r.header?.revision ?? 0);
    if (headerRev > 0) finish(headerRev);
    else void this.currentRevision().then((now) => finish(now ?? Math.max(compactRev, this.shared?.lastRev ?? 0)));
  }

  // --- delivery ---

  /** Hands one event to every shared watcher it matches. */
  private dispatch(te: TranslatedEvent): void {
    const key = te.event.node.key;
    const found: HubWatcher[] = [];
    const seen = new Set<HubWatcher>();
    const collect = (p: string): void => {
      const set = this.byPath.get(p);
      if (set === undefined) return;
      for (const w of set) {
        if (seen.has(w)) continue;
        seen.add(w);
        found.push(w);
      }
    };
    // The key and its ancestors ("/", "/a", "/a/b", ...).
    collect('/');
    for (let i = key.indexOf('/', 1); i > 0; i = key.indexOf('/', i + 1)) collect(key.slice(0, i));
    collect(key);
    for (const p of te.removed) if (p !== key && !KeyLayout.isAncestor(p, key)) collect(p);
    for (const w of found) {
      if (!w.ended && w.inShared && te.revision >= w.sinceRev && watcherMatches(w.path, w.recursive, te)) this.offer(w, te);
    }
  }

  private offer(w: HubWatcher, te: TranslatedEvent): void {
    if (w.ended) return;
    if (!w.ready) {
      w.buffered.push(te);
      return;
    }
    safeCall(() => w.onEvent(te.event));
    if (!w.stream && !w.ended) {
      this.drop(w);
      safeCall(() => w.onEnd());
    }
  }

  // --- idle ---

  private stopIdle(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  /** Once no watcher is left, closes the stream after `idleTimeout`. */
  private maybeIdle(): void {
    if (this.closed || this.live.size > 0 || this.idleTimer !== undefined) return;
    if (this.stream === undefined && this.shared === undefined) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.live.size > 0 || this.closed) return;
      const shared = this.shared;
      this.shared = undefined;
      if (shared !== undefined) this.rejectWaiters(shared, this.closedError());
      this.closeStream();
    }, this.idleTimeout);
    this.idleTimer.unref();
  }
}

function stripTtl(node: V2Node): void {
  delete node.ttl;
  delete node.expiration;
}

function safeCall(fn: () => void): void {
  try {
    fn();
  } catch {
    // A watcher's callback must not break the others.
  }
}
