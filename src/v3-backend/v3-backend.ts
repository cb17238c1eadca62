import type { IncomingMessage, ServerResponse } from 'node:http';
import createDebug from 'debug';
import type { EndpointBalancer, EndpointBalancerOptions } from '../balancer/endpoint-balancer.js';
import { InvalidOptionError, V3BackendStartError } from '../errors.js';
import type { UpstreamTlsOptions } from '../tls-options.js';
import { describe, signalOption } from '../validate-options.js';
import { V3ClusterApi } from './cluster-api.js';
import { rawHeader } from '../forwarding/forward-request.js';
import type { ClientRequest, ClientResponse } from '../forwarding/forward-request.js';
import { V2Auth } from './v2-auth.js';
import type { AuthCaller } from './v2-auth.js';
import { V2Error, writeMethodNotAllowed, writeV2Error } from './v2-error.js';
import { redirectTarget, writeRedirect } from './clean-path.js';
import { KEYS_PREFIX, parseKeysRequest } from './v2-request.js';
import type { V2KeysRequest } from './v2-request.js';
import { V3Client, V3RpcError } from './v3-client.js';
import { V3Store } from './v3-store.js';
import type { V2Event } from './v3-store.js';
import { WatchHub } from './watch-hub.js';
import type { V2Watch } from './watch-hub.js';

const debug = createDebug('etcd-v2-proxy:v3-backend');

/** The default `v3Prefix`: where the v2 tree lives in the v3 key space. */
export const DEFAULT_V3_PREFIX = '/v2';

/**
 * Options of {@link V3Backend}.
 * @public
 */
export interface V3BackendOptions {
  /** The members, their order and health: the v3 calls go to the same endpoints v2 requests would. */
  balancer: EndpointBalancer;
  /**
   * The v3 key prefix under which the v2 tree lives, in the key layout of etcd
   * 3.4/3.5's `--experimental-enable-v2v3 <prefix>` (data written by either
   * reads through the other). Every proxy of a cluster must use the same.
   * CLI: `--v3-prefix`. Default: `/v2`.
   */
  prefix?: string;
  /** TLS towards `https://` members (CA, client certificate). etcd flags: `--cert-file`, `--key-file`, `--trusted-ca-file`. */
  tls?: UpstreamTlsOptions;
  /** v3 user of a cluster with auth enabled. CLI: `--v3-user name:password`. Default: none. */
  username?: string;
  /** Password of `username`. */
  password?: string;
  /**
   * With v2 auth enabled, a request that has no `Authorization` header is
   * made by the user its verified TLS client certificate names (its common
   * name, or an issuer's), as an etcd v2 member with `--client-cert-auth`
   * did; otherwise it is the guest. createProxy sets it when its https://
   * listeners ask for client certificates. Default: false.
   */
  clientCertAuth?: boolean;
  /** ms to connect to a member before trying the next. etcd flag: `--proxy-dial-timeout`. Default: 1000. */
  dialTimeout?: number;
  /** ms a v3 call may take (a watch aside). Default: 5000. */
  callTimeout?: number;
  /**
   * The client URLs `/v2/members` and `/v2/machines` show for every member
   * (the members do not serve v2: a v2 client that syncs its endpoint list from
   * them, as etcdctl v2 and client/v2 do by default, must be sent back to the proxy). `createProxy()`
   * passes the proxy's listen URLs. Default: the members' own.
   */
  advertiseClientUrls?: () => readonly string[];
  /** Aborting it closes the backend. */
  signal?: AbortSignal;
}

/** What a /v2/keys answer's headers carry. */
interface AnswerHeaders {
  index: number;
  raftIndex: number;
  raftTerm: number;
}

/**
 * The keys requests createProxy's own HTTP/1.1 reader (client-connection.ts)
 * gives a backend instead of node:http: every `/v2/keys` request with a
 * method keys take (watches included). Kept off the public API.
 */
export interface DirectKeys {
  /** Whether `method url` is one of them. */
  takes(method: string, url: string): boolean;
  /** Answers it; `body` is its Content-Length body, if any. Never rejects. */
  serve(req: ClientRequest, res: ClientResponse, body: Buffer[] | undefined): Promise<void>;
}

const directKeysOf = new WeakMap<object, DirectKeys>();

/** The {@link DirectKeys} of `backend` (undefined for an object that is not a V3Backend). */
export function directKeys(backend: object): DirectKeys | undefined {
  return directKeysOf.get(backend);
}

/** Whether `url`'s path is `/v2/keys` or below it. */
function isKeysTarget(url: string): boolean {
  if (!url.startsWith(KEYS_PREFIX)) return false;
  const c = url.charCodeAt(KEYS_PREFIX.length);
  return Number.isNaN(c) || c === 0x2f /* / */ || c === 0x3f /* ? */;
}

/**
 * The v2 API served from a cluster's v3 API: for clusters whose members do
 * not serve v2 (etcd 3.5 without `--enable-v2`, etcd 3.6). It answers
 * `/v2/keys` (v3 transactions in the key layout of etcd's v2 emulation, TTLs
 * on leases, watches sharing one v3 watch stream), `/v2/members`,
 * `/v2/machines`, `/v2/stats/*` (v3's Cluster and Maintenance APIs) and
 * `/v2/auth/*` (users and roles kept in the cluster); {@link V2ProxyHandler}
 * forwards the rest (`/version`, `/health`) to the members as before.
 * @public
 */
export class V3Backend {
  /** The v3 key prefix of the v2 tree. */
  readonly prefix: string;
  /** The gRPC client, one channel per member. */
  private readonly client: V3Client;
  /** v2 key operations. */
  private readonly store: V3Store;
  /** v2 watches over shared v3 watch streams. */
  private readonly watches: WatchHub;
  /** `/v2/members`, `/v2/machines`, `/v2/stats/*`. */
  private readonly clusterApi: V3ClusterApi;
  /** `/v2/auth/*` and the checks of every keys request. */
  private readonly auth: V2Auth;
  /** The `(req, res)` function. Bound. */
  readonly handle: (req: IncomingMessage, res: ServerResponse) => void;
  /** Open watches, each with what ends its answer. */
  private readonly open = new Map<V2Watch, () => void>();
  /** Requests being answered (watches aside), node:http's and the own reader's. */
  private pending = 0;
  private clusterIdHex: string | undefined;
  /** The highest raft term an answer carried: a watch's headers show it. */
  private raftTerm = 0;
  /** The highest v2 index an answer showed: a watch's headers never show less (they stay monotonic). */
  private lastIndex = 0;
  private closed = false;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.close();

  constructor(options: V3BackendOptions) {
    if (options === null || typeof options !== 'object') {
      throw new InvalidOptionError('options', `expected an object with a balancer, got ${describe(options)}`);
    }
    this.prefix = prefixOption(options.prefix);
    this.signal = signalOption(options.signal);
    this.client = new V3Client({
      balancer: options.balancer,
      tls: options.tls,
      username: options.username,
      password: options.password,
      dialTimeout: options.dialTimeout,
      callTimeout: options.callTimeout,
    });
    this.store = new V3Store({ client: this.client, prefix: this.prefix });
    this.watches = new WatchHub({ client: this.client, prefix: this.prefix });
    this.auth = new V2Auth({ client: this.client, prefix: this.prefix, clusterId: () => this.clusterIdHex, clientCertAuth: options.clientCertAuth });
    this.clusterApi = new V3ClusterApi({
      client: this.client,
      balancer: options.balancer,
      advertiseClientUrls: options.advertiseClientUrls,
      checkRootAccess: (req, res) => this.auth.checkRoot(req, res),
    });
    this.clusterApi.watchers = () => this.open.size;
    this.handle = (req, res) => void this.serve(req, res);
    directKeysOf.set(this, {
      takes: (method, url) => isKeysTarget(url) && isKeysMethod(method),
      serve: (req, res, body) => this.serveDirect(req, res, body),
    });
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (this.signal?.aborted) this.close();
  }

  /**
   * The client URLs of the cluster's leader, asked of v3's Maintenance and
   * Cluster APIs (undefined while there is none): an
   * {@link EndpointBalancerOptions.leaderLookup} for a cluster without v2.
   */
  lookUpLeader(signal: AbortSignal): Promise<readonly string[] | undefined> {
    return this.clusterApi.lookUpLeader(signal);
  }

  /** The member (client URL) the shared v3 watch stream is open on; undefined while none is. */
  get watchEndpoint(): string | undefined {
    return this.watches.endpoint;
  }

  /** Open v3 watch streams (all v2 watches share them: one while any watch is open). */
  get watchStreams(): number {
    return this.watches.streams;
  }

  /** Open v2 watches. */
  get watchCount(): number {
    return this.open.size;
  }

  /** Requests being answered (watches aside). */
  get inFlight(): number {
    return this.pending;
  }

  /** Whether this backend answers the request target `url` (the rest goes to the members). */
  handles(url: string): boolean {
    if (!url.startsWith('/v2/')) return false;
    if (isKeysTarget(url)) return true;
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    return this.clusterApi.handles(path) || this.auth.handles(path);
  }

  /**
   * Start-up check: the cluster answers v3 calls with these credentials, and
   * the prefix holds nothing but the v2 layout.
   * @throws {@link V3BackendStartError} naming what is wrong.
   */
  async check(signal?: AbortSignal): Promise<void> {
    try {
      const members = await this.client.memberList({ signal });
      this.clusterIdHex = BigInt(String(members.header.clusterId)).toString(16);
    } catch (err) {
      throw new V3BackendStartError(`the cluster's v3 API did not answer: ${(err as Error).message}`, err);
    }
    const foreign = await this.foreignKey(signal);
    if (foreign !== undefined) {
      throw new V3BackendStartError(
        `v3 prefix ${this.prefix} holds data that is not a v2 tree (e.g. key ${JSON.stringify(foreign)}): choose another --v3-prefix`,
      );
    }
  }

  /**
   * A key under the prefix that is not part of the v2 layout (`P/NNN/k/...`,
   * `P/act`, `P/auth/...`), if one is found: the ranges around the layout are
   * checked whole, the first 1,000 keys of the layout's own range one by one
   * (a constant cost, whatever the size of the tree).
   */
  private async foreignKey(signal?: AbortSignal): Promise<string | undefined> {
    const p = this.prefix;
    const b = (s: string): Buffer => Buffer.from(s);
    const around: Array<[string, string]> = [
      [`${p}/`, `${p}/0`],
      [`${p}/:`, `${p}/act`],
      [`${p}/act\0`, `${p}/auth/`],
      [`${p}/auth0`, `${p}0`],
    ];
    const res = await this.client.txn(
      {
        compare: [],
        success: [
          ...around.map(([from, to]) => ({ requestRange: { key: b(from), rangeEnd: b(to), limit: 1, keysOnly: true } })),
          { requestRange: { key: b(`${p}/0`), rangeEnd: b(`${p}/:`), limit: 1000, keysOnly: true } },
        ],
        failure: [],
      },
      { signal },
    );
    const layout = new RegExp(`^${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/[0-9]{3}/k/`);
    for (const [i, r] of res.responses.entries()) {
      for (const kv of r.responseRange?.kvs ?? []) {
        const key = kv.key.toString('utf8');
        if (i < around.length || !layout.test(key)) return key;
      }
    }
    return undefined;
  }

  /** Ends every open watch (its client re-polls with its waitIndex), as a graceful stop does. */
  endWatches(): void {
    // Each answer ends (its last chunk sent): the client re-polls with its waitIndex, on the same connection if it likes.
    for (const finish of [...this.open.values()]) finish();
    this.open.clear();
  }

  /** Ends every watch and closes the gRPC channels. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    this.endWatches();
    this.auth.close();
    this.clusterApi.close();
    this.watches.close();
    this.store.close();
    this.client.close();
  }

  /** Answers one v2 API request. Never throws. */
  async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const moved = redirectTarget(url);
    if (moved !== undefined) {
      req.resume();
      writeRedirect(res, req.method ?? 'GET', moved);
      return;
    }
    this.pending++;
    try {
      if (this.auth.handles(path)) await this.auth.serve(req, res, path);
      else if (this.clusterApi.handles(path)) await this.clusterApi.serve(req, res, path);
      else await this.serveKeys(req, res, url);
    } catch (err) {
      this.failed(res, req.method, url, err);
    } finally {
      this.pending--;
    }
  }

  private async serveKeys(req: IncomingMessage, res: ServerResponse, url: string): Promise<void> {
    const method = req.method ?? 'GET';
    if (!isKeysMethod(method)) {
      req.resume();
      writeMethodNotAllowed(res, 'HEAD,GET,PUT,POST,DELETE');
      return;
    }
    await this.answer(req, res, method, url, await readForm(req, method));
  }

  /**
   * A keys request read by createProxy's own HTTP/1.1 reader (see
   * `directKeys`): `body` is its Content-Length body, if any.
   */
  private async serveDirect(req: ClientRequest, res: ClientResponse, body: Buffer[] | undefined): Promise<void> {
    const method = req.method!;
    const url = req.url!;
    const moved = redirectTarget(url);
    if (moved !== undefined) {
      writeRedirect(res, method, moved);
      return;
    }
    this.pending++;
    try {
      const form = body !== undefined && body.length > 0 && isForm(method, rawHeader(req.rawHeaders, 'content-type'));
      await this.answer(req, res, method, url, form ? Buffer.concat(body).toString('utf8') : undefined);
    } catch (err) {
      this.failed(res, method, url, err);
    } finally {
      this.pending--;
    }
  }

  /** A keys request, whichever server read it (`body`: its form, if any): parsed, its auth checked, answered. */
  private async answer(req: AuthCaller, res: ClientResponse, method: string, url: string, body: string | undefined): Promise<void> {
    let r: V2KeysRequest;
    try {
      r = parseKeysRequest(method, url, body);
    } catch (err) {
      this.writeError(res, toV2Error(err));
      return;
    }
    const refused = await this.auth.checkKeys(req, r.authPath, isWrite(method), r.recursive);
    if (refused !== undefined) {
      if (!res.headersSent) this.writeError(res, refused);
      return;
    }
    if (r.wait) await this.serveWatch(res, r);
    else await this.answerKeys(res, r);
  }

  /** A request whose answer threw: a v2 error if nothing was sent yet, else the connection is dropped. */
  private failed(res: ClientResponse, method: string | undefined, url: string, err: unknown): void {
    debug('%s %s failed: %s', method, url, (err as Error).stack);
    if (!res.headersSent) this.writeError(res, toV2Error(err));
    else res.destroy();
  }

  /** A keys request other than a watch, its auth checked: the store call and the answer. */
  private async answerKeys(res: ClientResponse, r: V2KeysRequest): Promise<void> {
    let ev: V2Event;
    try {
      ev = await this.apply(r);
    } catch (err) {
      const e = toV2Error(err);
      this.clusterApi.count(actionOf(r), false);
      this.writeError(res, e);
      return;
    }
    this.clusterApi.count(ev.action, true);
    this.writeEvent(res, ev, r.noValueOnSuccess, r.method === 'HEAD');
  }

  /** The store call a keys request stands for, dispatched as etcd's v2 apply does. */
  private apply(r: V2KeysRequest): Promise<V2Event> {
    switch (r.method) {
      case 'GET':
      case 'HEAD':
        return this.store.get(r.path, { recursive: r.recursive, sorted: r.sorted, quorum: r.quorum });
      case 'POST':
        return this.store.post(r.path, { value: r.value, dir: r.dir, ttl: r.ttl });
      case 'DELETE':
        return this.store.delete(r.path, {
          dir: r.dir,
          recursive: r.recursive,
          prevValue: r.prevValue,
          prevIndex: r.prevIndex === 0 ? undefined : r.prevIndex,
        });
      default:
        return this.store.put(r.path, {
          value: r.value,
          dir: r.dir,
          ttl: r.ttl,
          refresh: r.refresh,
          prevExist: r.prevExist,
          prevValue: r.prevValue,
          prevIndex: r.prevIndex === 0 ? undefined : r.prevIndex,
        });
    }
  }

  private async serveWatch(res: ClientResponse, r: V2KeysRequest): Promise<void> {
    let ended = false;
    let watch: V2Watch | undefined;
    const finish = (): void => {
      if (ended) return;
      ended = true;
      if (watch !== undefined) this.open.delete(watch);
      watch?.cancel();
      res.end();
    };
    res.on('close', finish);
    // The client may have gone while the request was checked (auth): its 'close' came before there was a listener.
    if (res.destroyed === true) {
      finish();
      return;
    }
    const onEvent = (ev: V2Event): void => {
      if (ended) return;
      res.write(Buffer.from(`${JSON.stringify(eventBody(ev, false))}\n`));
      if (!r.stream) finish();
    };
    const onEnd = (err?: Error): void => {
      if (err !== undefined) debug('watch on %s ended: %s', r.path, err.message);
      finish();
    };
    watch = await this.watches.watch(r.path, { recursive: r.recursive, stream: r.stream, waitIndex: r.waitIndex === 0 ? undefined : r.waitIndex }, onEvent, onEnd);
    if (ended) {
      watch.cancel();
      return;
    }
    this.open.set(watch, finish);
    if (!res.headersSent) {
      // The index the watch started at (its events are all later), or the
      // latest one answered if that is higher: the shared v3 watch may not
      // have seen the latest revisions yet, and the headers stay monotonic.
      // (The raft term is not known without another call; the latest seen.)
      const index = Math.max(watch.startIndex, this.lastIndex);
      res.writeHead(200, undefined, this.headers({ index, raftIndex: index + 1, raftTerm: this.raftTerm }));
      res.flushHeaders();
    }
  }

  /** Names and values alternating, as both node's ServerResponse and createProxy's own writer take them. */
  private headers(h: AnswerHeaders): string[] {
    const out = ['Content-Type', 'application/json', 'X-Etcd-Index', String(h.index), 'X-Raft-Index', String(h.raftIndex), 'X-Raft-Term', String(h.raftTerm)];
    if (this.clusterIdHex !== undefined) out.push('X-Etcd-Cluster-Id', this.clusterIdHex);
    return out;
  }

  private writeEvent(res: ClientResponse, ev: V2Event, noValueOnSuccess: boolean, head: boolean): void {
    const created = ev.action === 'create' || (ev.action === 'set' && ev.prevNode === undefined);
    const body = `${JSON.stringify(eventBody(ev, noValueOnSuccess))}\n`;
    if (ev.raftTerm !== undefined && ev.raftTerm > this.raftTerm) this.raftTerm = ev.raftTerm;
    if (ev.etcdIndex > this.lastIndex) this.lastIndex = ev.etcdIndex;
    const headers = this.headers({ index: ev.etcdIndex, raftIndex: ev.etcdIndex + 1, raftTerm: ev.raftTerm ?? this.raftTerm });
    headers.push('Content-Length', String(Buffer.byteLength(body)));
    res.writeHead(created ? 201 : 200, undefined, headers);
    res.end(head ? undefined : body);
  }

  private writeError(res: ClientResponse, e: V2Error): void {
    writeV2Error(res, e, this.clusterIdHex);
  }
}

/** The JSON of an event as v2 writes it (noValueOnSuccess drops the nodes of a successful write). */
function eventBody(ev: V2Event, noValueOnSuccess: boolean): object {
  if (noValueOnSuccess && (ev.action === 'set' || ev.action === 'compareAndSwap' || ev.action === 'create' || ev.action === 'update')) {
    return { action: ev.action };
  }
  return ev.prevNode === undefined ? { action: ev.action, node: ev.node } : { action: ev.action, node: ev.node, prevNode: ev.prevNode };
}

/** The stats action a failed request is counted under. */
function actionOf(r: V2KeysRequest): string {
  switch (r.method) {
    case 'GET':
    case 'HEAD':
      return 'get';
    case 'POST':
      return 'create';
    case 'DELETE':
      return r.prevValue !== undefined || r.prevIndex > 0 ? 'compareAndDelete' : 'delete';
    default:
      if (r.prevExist === false) return 'create';
      if (r.prevValue !== undefined || r.prevIndex > 0) return 'compareAndSwap';
      return r.prevExist === true ? 'update' : 'set';
  }
}

/** Any failure as the v2 error etcd would answer: a v3 failure is v2's 300 "Raft Internal Error" with the reason. */
function toV2Error(err: unknown): V2Error {
  if (err instanceof V2Error) return err;
  // etcd refuses a request over --max-request-bytes itself ("request is too
  // large"), or, 512 KiB further, its gRPC server does (RESOURCE_EXHAUSTED).
  if (err instanceof V3RpcError && (/request is too large/.test(err.details) || (err.grpcCode === 8 && /larger than max/.test(err.details)))) {
    return new V2Error(
      209,
      'the request is over the cluster\'s request size limit (etcd --max-request-bytes, 1.5 MiB by default); native v2 took it, a v3 cluster does not',
      0,
    );
  }
  return new V2Error(300, (err as Error)?.message ?? String(err), 0);
}

/** The form body of a PUT or POST sent as `application/x-www-form-urlencoded` (Go's ParseForm reads no other). */
async function readForm(req: IncomingMessage, method: string): Promise<string | undefined> {
  if (!isForm(method, req.headers['content-type'])) {
    req.resume();
    return undefined;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** A PUT or POST whose body is a form (`application/x-www-form-urlencoded`: Go's ParseForm reads no other). */
function isForm(method: string, type: string | undefined): boolean {
  return (method === 'PUT' || method === 'POST') && type !== undefined && type.split(';')[0]!.trim().toLowerCase() === 'application/x-www-form-urlencoded';
}

function isKeysMethod(method: string): boolean {
  return method === 'GET' || method === 'HEAD' || isWrite(method);
}

function isWrite(method: string): boolean {
  return method === 'PUT' || method === 'POST' || method === 'DELETE';
}

function prefixOption(value: unknown): string {
  if (value === undefined) return DEFAULT_V3_PREFIX;
  if (typeof value !== 'string' || !/^\/[\x21-\x7e]*[^/]$|^\/$/.test(value) || value === '/') {
    throw new InvalidOptionError('v3Prefix', `expected a key prefix that starts with "/" and does not end with "/", e.g. "/v2", got ${describe(value)}`);
  }
  return value;
}
