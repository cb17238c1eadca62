import * as grpc from '@grpc/grpc-js';
import createDebug from 'debug';
import { EventEmitter } from 'eventemitter3';
import type { Endpoint } from '../balancer/endpoint.js';
import { EndpointBalancer } from '../balancer/endpoint-balancer.js';
import { EtcdProxyError, InvalidOptionError } from '../errors.js';
import { upstreamTlsOption } from '../tls-options.js';
import type { UpstreamTls, UpstreamTlsOptions } from '../tls-options.js';
import { balancerValue, describe, durationOption, parseHostPortUrl, signalOption } from '../validate-options.js';
import { etcdMethods } from './etcd-proto.js';
import type { EtcdMethod } from './etcd-proto.js';
import type {
  ClusterMember,
  DeleteRangeRequest,
  DeleteRangeResponse,
  LeaseGrantResponse,
  LeaseTimeToLiveResponse,
  MemberListResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  RequestOp,
  ResponseHeader,
  StatusResponse,
  TxnRequest,
  TxnResponse,
  WatchCreateRequest,
  WatchResponse,
} from './rpc-types.js';

const debug = createDebug('etcd-v2-proxy:v3-client');

/**
 * The gRPC client of the v3 backend: one HTTP/2 connection (gRPC channel) per
 * member, shared by every call and watch stream to it, members ordered by the
 * {@link EndpointBalancer}.
 */

const READY = grpc.connectivityState.READY;
const CONNECTING = grpc.connectivityState.CONNECTING;
const TRANSIENT_FAILURE = grpc.connectivityState.TRANSIENT_FAILURE;
const SHUTDOWN = grpc.connectivityState.SHUTDOWN;

/** Balancer plan URLs: a serializable read may go to a degraded member, a linearizable one may not. */
const PLAN_SERIALIZABLE = '/v2/keys';
const PLAN_LINEARIZABLE = '/v2/keys?quorum=true';
const PLAN_WRITE = '/v2/keys';
const PLAN_WATCH = '/v2/keys?wait=true';

/** ms between two leader look-ups (Maintenance.Status) when the balancer does not know the leader. */
const LEADER_REFRESH_MS = 30000;

/**
 * Options of {@link V3Client}.
 * @public
 */
export interface V3ClientOptions {
  /** Which members, in what order (`plan()`); a member that cannot be reached is reported to it. */
  balancer: EndpointBalancer;
  /** TLS for `https://` members: trusted CA, client certificate (etcd flags `--cacert`, `--cert`, `--key`). */
  tls?: UpstreamTlsOptions;
  /**
   * v3 auth (etcd's `--user`): with `password`, the client calls
   * Auth/Authenticate once, sends the token with every call, and
   * authenticates again when etcd says the token is no longer valid.
   */
  username?: string;
  /** The password of `username`. */
  password?: string;
  /** ms to wait for a connection to a member before trying the next. Default: 1000. */
  dialTimeout?: number;
  /** ms deadline of one unary call on one member. Default: 5000. */
  callTimeout?: number;
  /**
   * ms between HTTP/2 pings while calls or watch streams are open, so that a
   * member that stopped answering (frozen, cut off) is detected. etcd refuses
   * pings more often than every 5 s (`--grpc-keepalive-min-time`). Default: 10000.
   */
  keepaliveTime?: number;
  /** ms a ping may wait for its answer before the connection is dropped. Default: 5000. */
  keepaliveTimeout?: number;
  /** Aborting it closes the client, as {@link V3Client.close} does. */
  signal?: AbortSignal;
}

/**
 * Per-call options.
 * @public
 */
export interface CallOptions {
  /** Aborting it cancels the call (it rejects with a {@link V3RpcError}, gRPC code CANCELLED). */
  signal?: AbortSignal;
  /**
   * The read may be answered from a member's own state (v2's default read):
   * it may then go to a member without a leader. For `range()`, true also
   * sets `RangeRequest.serializable` when the request leaves it unset.
   */
  serializable?: boolean;
}

/**
 * A gRPC call to etcd failed (or could be sent to no member).
 * @public
 */
export class V3RpcError extends EtcdProxyError {
  /** Always `ERR_ETCD_PROXY_V3_RPC`. */
  declare readonly code: 'ERR_ETCD_PROXY_V3_RPC';
  /** The gRPC status code (`@grpc/grpc-js`'s `status`): 14 UNAVAILABLE, 4 DEADLINE_EXCEEDED, 9 FAILED_PRECONDITION... */
  readonly grpcCode: number;
  /** etcd's (or gRPC's) text, e.g. `etcdserver: requested lease not found`. */
  readonly details: string;
  /** The member's client URL; `undefined` when no member was tried. */
  readonly endpoint: string | undefined;
  /** The gRPC method, e.g. `Txn`. */
  readonly method: string;
  /**
   * False when the request certainly did not reach etcd (no member could be
   * connected to), so it may be sent again whatever it is.
   */
  readonly sent: boolean;

  constructor(method: string, grpcCode: number, details: string, endpoint: string | undefined, options?: { cause?: unknown; sent?: boolean }) {
    const name = grpc.status[grpcCode] ?? String(grpcCode);
    super('ERR_ETCD_PROXY_V3_RPC', `etcd ${method}${endpoint === undefined ? '' : ` on ${endpoint}`}: ${details} (gRPC ${name})`, options);
    this.grpcCode = grpcCode;
    this.details = details;
    this.endpoint = endpoint;
    this.method = method;
    this.sent = options?.sent ?? true;
  }
}

/**
 * Events of a {@link WatchStream}.
 * @public
 */
export interface WatchStreamEvents {
  /** Every WatchResponse etcd sends (created, canceled, events, progress). */
  response: (response: WatchResponse) => void;
  /** The stream failed (the member died or could not be reached...): emitted once; nothing follows. */
  error: (err: Error) => void;
  /** The stream is over without an error: etcd ended it, or the {@link V3Client} was closed. Not emitted after the stream's own `close()`. */
  end: () => void;
}

/**
 * One bidirectional Watch stream on one member; many watches share it.
 * @public
 */
export interface WatchStream extends EventEmitter<WatchStreamEvents> {
  /** The member's client URL. */
  readonly endpoint: string;
  /** Starts a watch; give `watchId` yourself (1 or more, unique on this stream). */
  create(req: WatchCreateRequest): void;
  /** Cancels a watch (etcd answers with a `canceled` response). */
  cancel(watchId: number): void;
  /** Asks etcd for a progress notification (a response with the current revision and no events). */
  requestProgress(): void;
  /** Ends the stream; no event follows. Idempotent. */
  close(): void;
}

/**
 * Answer of {@link V3Client.memberAdd}.
 * @public
 */
export interface MemberAddResponse {
  header: ResponseHeader;
  /** The member added (its ID as a decimal string). */
  member: ClusterMember;
  /** Every member after the change. */
  members: ClusterMember[];
}

/** What a member of the cluster is to this client: its connection. */
interface MemberChannel {
  readonly url: string;
  readonly client: grpc.Client;
  readonly channel: ReturnType<grpc.Client["getChannel"]>;
  /** Calls in flight and watch streams open on it. */
  busy: number;
  /** No longer one of the balancer's endpoints: closed once not busy. */
  retired: boolean;
}

type Kind = 'read' | 'write';

interface AuthenticateResponse {
  header: ResponseHeader;
  token: string;
}

/**
 * etcd v3 over gRPC (`@grpc/grpc-js`), for the v3 backend.
 *
 * - One channel (one HTTP/2 connection) per member client URL, shared by all
 *   services and watch streams; `https://` members use `tls`.
 * - Reads (range, read-only txn, memberList, leaseTimeToLive) go to the
 *   balancer's first choice and move on to the next member when one cannot
 *   be connected to within `dialTimeout`, answers UNAVAILABLE, or misses its
 *   `callTimeout` deadline.
 * - Writes go to the leader first. A write is sent to another member only
 *   when it never left: the member could not be connected to within
 *   `dialTimeout`. Once sent, its error is final.
 * - A member that cannot be reached is reported to the balancer.
 * @public
 */
export class V3Client {
  /** ms to wait for a connection. */
  readonly dialTimeout: number;
  /** ms deadline of a unary call. */
  readonly callTimeout: number;
  /** The client URL of the member that answered the latest call (for tests and logs). */
  lastEndpoint: string | undefined = undefined;
  /** How many times Auth/Authenticate succeeded (0 without `username`). */
  authentications = 0;
  private readonly balancer: EndpointBalancer;
  private readonly tls: UpstreamTls | undefined;
  private readonly auth: { readonly name: string; readonly password: string } | undefined;
  private readonly channelOptions: grpc.ChannelOptions;
  private readonly methods = etcdMethods();
  private readonly members = new Map<string, MemberChannel>();
  private knownList: readonly Endpoint[] | undefined = undefined;
  private knownUrls = new Set<string>();
  private readonly calls = new Set<grpc.ClientUnaryCall>();
  private readonly streams = new Set<V3WatchStream>();
  private token: string | undefined = undefined;
  private tokenMetadata: grpc.Metadata | undefined = undefined;
  private readonly noMetadata = new grpc.Metadata();
  private authenticating: Promise<string> | undefined = undefined;
  private leaderUrl: string | undefined = undefined;
  private leaderCheckedAt = 0;
  private leaderLookup: Promise<void> | undefined = undefined;
  private closed = false;
  private readonly closer = new AbortController();
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.close();

  constructor(options: V3ClientOptions) {
    if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', `expected an object, got ${describe(options)}`);
    this.balancer = balancerValue(options.balancer);
    this.tls = upstreamTlsOption(options.tls, 'tls');
    const { username, password } = options;
    if (username !== undefined && (typeof username !== 'string' || username === '')) {
      throw new InvalidOptionError('username', `expected a non-empty string, got ${describe(username)}`);
    }
    if (password !== undefined && typeof password !== 'string') {
      throw new InvalidOptionError('password', `expected a string, got ${describe(password)}`);
    }
    if ((username === undefined) !== (password === undefined)) {
      throw username === undefined
        ? new InvalidOptionError('username', 'password is given without username: give both or neither')
        : new InvalidOptionError('password', 'username is given without password: give both or neither');
    }
    this.auth = username === undefined ? undefined : { name: username, password: password! };
    this.dialTimeout = durationOption('dialTimeout', options.dialTimeout, 1000, 1);
    this.callTimeout = durationOption('callTimeout', options.callTimeout, 5000, 1);
    const keepaliveTime = durationOption('keepaliveTime', options.keepaliveTime, 10000, 1);
    const keepaliveTimeout = durationOption('keepaliveTimeout', options.keepaliveTimeout, 5000, 1);
    this.signal = signalOption(options.signal);
    this.channelOptions = {
      // etcd's own client sets no receive limit either; a recursive listing can exceed gRPC's 4 MiB default.
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
      'grpc.keepalive_time_ms': keepaliveTime,
      'grpc.keepalive_timeout_ms': keepaliveTimeout,
      // etcd's default enforcement closes connections that ping with no call open.
      'grpc.keepalive_permit_without_calls': 0,
      'grpc.initial_reconnect_backoff_ms': 300,
      'grpc.max_reconnect_backoff_ms': 3000,
      // Our channels never share a connection with another gRPC client in the process.
      'grpc.use_local_subchannel_pool': 1,
      'grpc.enable_channelz': 0,
    };
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (this.signal?.aborted) this.close();
  }

  /** KV/Range: a read, any member (linearizable unless `serializable`). */
  range(req: RangeRequest, opts?: CallOptions): Promise<RangeResponse> {
    const serializable = req.serializable ?? opts?.serializable ?? false;
    const request = req.serializable === undefined && serializable ? { ...req, serializable } : req;
    return this.call<RangeResponse>('read', this.methods.KV.Range, 'Range', request, opts, serializable ? PLAN_SERIALIZABLE : PLAN_LINEARIZABLE);
  }

  /**
   * KV/Txn. A txn without put or delete is a read (any member); otherwise a
   * write: leader first, sent to another member only if it never left.
   */
  txn(req: TxnRequest, opts?: CallOptions): Promise<TxnResponse> {
    const readOnly = isReadOnly(req);
    if (!readOnly) return this.call<TxnResponse>('write', this.methods.KV.Txn, 'Txn', req, opts, PLAN_WRITE);
    const serializable = opts?.serializable === true || allSerializable(req);
    return this.call<TxnResponse>('read', this.methods.KV.Txn, 'Txn', req, opts, serializable ? PLAN_SERIALIZABLE : PLAN_LINEARIZABLE);
  }

  /** KV/Put: a write. */
  put(req: PutRequest, opts?: CallOptions): Promise<PutResponse> {
    return this.call<PutResponse>('write', this.methods.KV.Put, 'Put', req, opts, PLAN_WRITE);
  }

  /** KV/DeleteRange: a write. */
  deleteRange(req: DeleteRangeRequest, opts?: CallOptions): Promise<DeleteRangeResponse> {
    return this.call<DeleteRangeResponse>('write', this.methods.KV.DeleteRange, 'DeleteRange', req, opts, PLAN_WRITE);
  }

  /** KV/Compact: drops the history before `revision` (a write). */
  async compact(revision: number, opts?: CallOptions & { physical?: boolean }): Promise<{ header: ResponseHeader }> {
    return this.call<{ header: ResponseHeader }>('write', this.methods.KV.Compact, 'Compact', { revision, physical: opts?.physical ?? false }, opts, PLAN_WRITE);
  }

  /** Lease/LeaseGrant of lease `id` (0: etcd picks one) for `ttlSeconds` (a write). "etcdserver: lease already exists" when `id` is taken. */
  leaseGrant(ttlSeconds: number, id: number, opts?: CallOptions): Promise<LeaseGrantResponse> {
    return this.call<LeaseGrantResponse>('write', this.methods.Lease.LeaseGrant, 'LeaseGrant', { TTL: ttlSeconds, ID: id }, opts, PLAN_WRITE);
  }

  /** Lease/LeaseRevoke: ends the lease and deletes its keys (a write). */
  async leaseRevoke(id: number, opts?: CallOptions): Promise<void> {
    await this.call<unknown>('write', this.methods.Lease.LeaseRevoke, 'LeaseRevoke', { ID: id }, opts, PLAN_WRITE);
  }

  /** Lease/LeaseTimeToLive (a read); `keys: true` lists the lease's keys. TTL -1: no such lease. */
  leaseTimeToLive(id: number, opts?: CallOptions & { keys?: boolean }): Promise<LeaseTimeToLiveResponse> {
    return this.call<LeaseTimeToLiveResponse>('read', this.methods.Lease.LeaseTimeToLive, 'LeaseTimeToLive', { ID: id, keys: opts?.keys ?? false }, opts, PLAN_LINEARIZABLE);
  }

  /** Cluster/MemberList (a read). */
  memberList(opts?: CallOptions): Promise<MemberListResponse> {
    return this.call<MemberListResponse>('read', this.methods.Cluster.MemberList, 'MemberList', {}, opts, PLAN_SERIALIZABLE);
  }

  /** Cluster/MemberAdd (a write). */
  memberAdd(peerURLs: string[], opts?: CallOptions & { isLearner?: boolean }): Promise<MemberAddResponse> {
    return this.call<MemberAddResponse>('write', this.methods.Cluster.MemberAdd, 'MemberAdd', { peerURLs, isLearner: opts?.isLearner ?? false }, opts, PLAN_WRITE);
  }

  /** Cluster/MemberRemove of the member `id` (decimal string) (a write). */
  async memberRemove(id: string, opts?: CallOptions): Promise<void> {
    await this.call<unknown>('write', this.methods.Cluster.MemberRemove, 'MemberRemove', { ID: id }, opts, PLAN_WRITE);
  }

  /** Cluster/MemberUpdate: new peer URLs of the member `id` (a write). */
  async memberUpdate(id: string, peerURLs: string[], opts?: CallOptions): Promise<void> {
    await this.call<unknown>('write', this.methods.Cluster.MemberUpdate, 'MemberUpdate', { ID: id, peerURLs }, opts, PLAN_WRITE);
  }

  /** Maintenance/Status of the member at `endpointUrl` (any client URL; no other member is tried). */
  async status(endpointUrl: string, opts?: CallOptions): Promise<StatusResponse> {
    const parsed = parseHostPortUrl(endpointUrl);
    if (parsed.error !== undefined) throw new InvalidOptionError('endpointUrl', parsed.error);
    return this.call<StatusResponse>('read', this.methods.Maintenance.Status, 'Status', {}, opts, PLAN_SERIALIZABLE, { target: parsed.url });
  }

  /**
   * Opens one bidirectional Watch stream on the balancer's first choice for
   * reads. Watches created before the stream is connected are sent once it is.
   */
  openWatchStream(opts: { signal?: AbortSignal } = {}): WatchStream {
    const endpoint = this.closed ? undefined : this.balancer.plan('GET', PLAN_WATCH)[0];
    const stream = new V3WatchStream(endpoint?.url ?? '');
    const signal = opts.signal;
    if (signal !== undefined) {
      if (signal.aborted) {
        stream.close();
        return stream;
      }
      const onAbort = (): void => stream.close();
      signal.addEventListener('abort', onAbort, { once: true });
      stream.onDone(() => signal.removeEventListener('abort', onAbort));
    }
    if (endpoint === undefined) {
      const err = this.closed ? this.closedError('Watch') : new V3RpcError('Watch', grpc.status.UNAVAILABLE, 'no etcd endpoint is known', undefined, { sent: false });
      process.nextTick(() => stream.fail(err));
      return stream;
    }
    const member = this.member(endpoint.url);
    member.busy++;
    this.streams.add(stream);
    stream.onDone(() => {
      member.busy--;
      this.streams.delete(stream);
      this.release(member);
    });
    void this.startWatch(stream, member, endpoint);
    return stream;
  }

  /** Closes every watch stream and channel; calls in flight reject. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closer.abort();
    this.signal?.removeEventListener('abort', this.onAbort);
    for (const call of this.calls) call.cancel();
    this.calls.clear();
    for (const stream of [...this.streams]) stream.end();
    for (const member of this.members.values()) member.client.close();
    this.members.clear();
  }

  // --- calls ---

  private async call<T>(
    kind: Kind,
    method: EtcdMethod,
    name: string,
    request: object,
    opts: CallOptions | undefined,
    planUrl: string,
    internal?: { target?: string; anonymous?: boolean },
  ): Promise<T> {
    if (this.closed) throw this.closedError(name);
    const signal = opts?.signal;
    if (signal?.aborted) throw abortError(name, undefined, signal);
    let metadata = this.noMetadata;
    let token: string | undefined;
    if (this.auth !== undefined && internal?.anonymous !== true) {
      token = this.token ?? (await this.authenticate(undefined, signal));
      metadata = this.tokenMetadata!;
    }
    let plan: readonly (Endpoint | string)[];
    if (internal?.target !== undefined) {
      plan = [this.balancer.endpoints.find((e) => e.url === internal.target) ?? internal.target];
    } else if (kind === 'write') {
      plan = await this.writePlan();
    } else {
      plan = this.balancer.plan('GET', planUrl);
    }
    if (plan.length === 0) throw new V3RpcError(name, grpc.status.UNAVAILABLE, 'no etcd endpoint is known', undefined, { sent: false });
    let last: V3RpcError | undefined;
    let reauthenticated = false;
    let sentAny = false;
    for (let i = 0; i < plan.length; i++) {
      const target = plan[i]!;
      const endpoint = typeof target === 'string' ? undefined : target;
      const url = typeof target === 'string' ? target : target.url;
      const member = this.member(url);
      const reached = this.connect(member, signal);
      const outcome = reached === true ? true : await reached;
      if (outcome !== true) {
        if (signal?.aborted) throw abortError(name, url, signal);
        if (this.closed) throw this.closedError(name);
        last = new V3RpcError(name, grpc.status.UNAVAILABLE, outcome, url, { sent: sentAny });
        debug('%s: %s', name, last.message);
        if (endpoint !== undefined) this.balancer.reportFailure(endpoint, last);
        this.release(member);
        continue;
      }
      sentAny = true;
      try {
        const res = await this.send<T>(member, endpoint, method, request, metadata, signal);
        if (endpoint !== undefined && endpoint.state === 'down') this.balancer.reportAnswer(endpoint);
        this.lastEndpoint = url;
        return res;
      } catch (thrown) {
        if (signal?.aborted) throw abortError(name, url, signal);
        if (this.closed) throw this.closedError(name);
        const err = toRpcError(name, url, thrown);
        if (token !== undefined && !reauthenticated && isStaleToken(err)) {
          reauthenticated = true;
          token = await this.authenticate(token, signal);
          metadata = this.tokenMetadata!;
          i--; // the same member again: etcd refused the call before doing anything
          continue;
        }
        if (isMemberFailure(err)) {
          debug('%s: %s', name, err.message);
          if (endpoint !== undefined) this.balancer.reportFailure(endpoint, err);
        }
        // The leader may have changed: look it up again (in the background) at the next write.
        if (kind === 'write' && err.grpcCode === grpc.status.UNAVAILABLE) this.leaderCheckedAt = Math.min(this.leaderCheckedAt, 1);
        if (kind === 'read' && isRetryableRead(err)) {
          last = err;
          continue;
        }
        throw err;
      }
    }
    throw last!;
  }

  /** One unary call on one member, bounded by `callTimeout`, cancelled by `signal`. */
  private send<T>(member: MemberChannel, endpoint: Endpoint | undefined, method: EtcdMethod, request: object, metadata: grpc.Metadata, signal: AbortSignal | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      member.busy++;
      if (endpoint !== undefined) endpoint.inFlight++;
      const onAbort = (): void => call.cancel();
      const call = member.client.makeUnaryRequest<object, unknown>(
        method.path,
        method.serialize,
        method.deserialize,
        request,
        metadata,
        { deadline: Date.now() + this.callTimeout },
        (err, res) => {
          this.calls.delete(call);
          member.busy--;
          if (endpoint !== undefined) endpoint.inFlight--;
          signal?.removeEventListener('abort', onAbort);
          this.release(member);
          if (err !== null) reject(err);
          else resolve(res as T);
        },
      );
      this.calls.add(call);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * `true` when the member's connection is ready now; otherwise waits up to
   * `dialTimeout` for it and resolves `true`, or why it is not.
   */
  private connect(member: MemberChannel, signal: AbortSignal | undefined): true | Promise<true | string> {
    const channel = member.channel;
    const state = channel.getConnectivityState(true);
    if (state === READY) return true;
    if (state === SHUTDOWN) return Promise.resolve('the client is closed');
    const dialTimeout = this.dialTimeout;
    return new Promise((resolve) => {
      const deadline = Date.now() + dialTimeout;
      // Already failing (waiting to retry): only a new attempt's outcome counts.
      let attempted = state !== TRANSIENT_FAILURE;
      let done = false;
      const finish = (result: true | string): void => {
        if (done) return;
        done = true;
        signal?.removeEventListener('abort', onAbort);
        resolve(result);
      };
      const onAbort = (): void => finish('aborted');
      signal?.addEventListener('abort', onAbort, { once: true });
      const watch = (current: grpc.connectivityState): void => {
        channel.watchConnectivityState(current, deadline, (err) => {
          if (done) return;
          if (err !== undefined && err !== null) return finish(`no connection within dialTimeout (${dialTimeout} ms)`);
          const next = channel.getConnectivityState(true);
          if (next === READY) return finish(true);
          if (next === SHUTDOWN) return finish('the client is closed');
          if (next === TRANSIENT_FAILURE && attempted) return finish('could not connect (connection refused or reset)');
          if (next === CONNECTING) attempted = true;
          watch(next);
        });
      };
      watch(state);
    });
  }

  // --- members and their channels ---

  /** The channel of `url`, created on first use. Channels of URLs the balancer dropped are closed once idle. */
  private member(url: string): MemberChannel {
    const list = this.balancer.endpoints;
    if (list !== this.knownList) this.sweep(list);
    let member = this.members.get(url);
    if (member === undefined) {
      const u = new URL(url);
      const port = u.port === '' ? (u.protocol === 'https:' ? '443' : '80') : u.port;
      const target = `${u.hostname}:${port}`;
      const credentials = u.protocol === 'https:' ? this.sslCredentials() : grpc.credentials.createInsecure();
      const client = new grpc.Client(target, credentials, this.channelOptions);
      member = { url, client, channel: client.getChannel(), busy: 0, retired: !this.knownUrls.has(url) };
      this.members.set(url, member);
      debug('channel to %s (%s)', url, target);
    } else if (member.retired && this.knownUrls.has(url)) {
      member.retired = false;
    }
    return member;
  }

  private sslCredentials(): grpc.ChannelCredentials {
    const tls = this.tls;
    if (tls === undefined) return grpc.credentials.createSsl();
    return grpc.credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null, {
      rejectUnauthorized: tls.rejectUnauthorized,
      ...(tls.rejectUnauthorized ? {} : { checkServerIdentity: () => undefined }),
    });
  }

  private sweep(list: readonly Endpoint[]): void {
    this.knownList = list;
    this.knownUrls = new Set(list.map((e) => e.url));
    for (const member of this.members.values()) {
      member.retired = !this.knownUrls.has(member.url);
      this.release(member);
    }
  }

  /** Closes a retired member's channel once nothing uses it. */
  private release(member: MemberChannel): void {
    if (!member.retired || member.busy > 0 || this.members.get(member.url) !== member) return;
    this.members.delete(member.url);
    member.client.close();
    debug('closed the channel to %s (no longer an endpoint)', member.url);
  }

  // --- leader ---

  /** The balancer's write plan, with the leader first when the balancer does not know it (v3-only members). */
  private async writePlan(): Promise<readonly Endpoint[]> {
    const plan = this.balancer.plan('PUT', PLAN_WRITE);
    if (this.balancer.leader !== undefined || plan.length <= 1) return plan;
    if (Date.now() - this.leaderCheckedAt > LEADER_REFRESH_MS) {
      const first = this.leaderCheckedAt === 0;
      const lookup = this.lookUpLeader();
      if (first) {
        // The first write waits for the leader, up to dialTimeout.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([lookup, new Promise<void>((resolve) => (timer = setTimeout(resolve, this.dialTimeout)))]);
        clearTimeout(timer);
        return this.leaderFirst(this.balancer.plan('PUT', PLAN_WRITE));
      }
    }
    return this.leaderFirst(plan);
  }

  private leaderFirst(plan: readonly Endpoint[]): readonly Endpoint[] {
    const url = this.leaderUrl;
    if (url === undefined || plan[0]?.url === url) return plan;
    const leader = plan.find((e) => e.url === url);
    if (leader === undefined || leader.state !== 'up') return plan;
    return [leader, ...plan.filter((e) => e !== leader)];
  }

  /**
   * Asks every endpoint's Maintenance.Status at once; the leader is the
   * member whose own ID is the leader ID of the highest term seen. Settles
   * as soon as it is known, or when every member answered or failed.
   */
  private lookUpLeader(): Promise<void> {
    if (this.leaderLookup !== undefined) return this.leaderLookup;
    this.leaderCheckedAt = Date.now() - LEADER_REFRESH_MS + 1000; // a failed look-up is retried after 1 s
    const endpoints = this.balancer.endpoints.filter((e) => e.state !== 'down');
    const lookup = new Promise<void>((resolve) => {
      let pending = endpoints.length;
      let leaderId: string | undefined;
      let term = -1n;
      const ids = new Map<string, string>();
      const settle = (): void => {
        if (leaderId !== undefined) {
          for (const [url, id] of ids) {
            if (id !== leaderId) continue;
            if (this.leaderUrl !== url) debug('leader (from Maintenance.Status): %s', url);
            this.leaderUrl = url;
            this.leaderCheckedAt = Date.now();
            resolve();
            return;
          }
        }
        if (pending === 0) resolve();
      };
      if (pending === 0) resolve();
      for (const e of endpoints) {
        this.status(e.url, { signal: this.closer.signal })
          .then((s) => {
            ids.set(e.url, String(s.header.memberId));
            const t = BigInt(s.raftTerm);
            if (s.leader !== '0' && t > term) {
              term = t;
              leaderId = s.leader;
            }
          })
          .catch(() => undefined)
          .finally(() => {
            pending--;
            settle();
          });
      }
    }).finally(() => {
      this.leaderLookup = undefined;
    });
    this.leaderLookup = lookup;
    return lookup;
  }

  // --- auth ---

  /**
   * A valid token: the current one unless it is `stale`, else a new one
   * (one Authenticate at a time, on any member, shared by all callers).
   */
  private authenticate(stale: string | undefined, signal: AbortSignal | undefined): Promise<string> {
    if (this.token !== undefined && this.token !== stale) return Promise.resolve(this.token);
    const auth = this.auth!;
    this.token = undefined;
    this.authenticating ??= this.call<AuthenticateResponse>(
      'read',
      this.methods.Auth.Authenticate,
      'Authenticate',
      { name: auth.name, password: auth.password },
      { signal: this.closer.signal },
      PLAN_SERIALIZABLE,
      { anonymous: true },
    )
      .then((res) => {
        this.token = res.token;
        const md = new grpc.Metadata();
        md.set('token', res.token);
        this.tokenMetadata = md;
        this.authentications++;
        debug('authenticated as %s', auth.name);
        return res.token;
      })
      .finally(() => {
        this.authenticating = undefined;
      });
    const pending = this.authenticating;
    if (signal === undefined) return pending;
    return new Promise<string>((resolve, reject) => {
      const onAbort = (): void => reject(abortError('Authenticate', undefined, signal));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      pending.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  // --- watch ---

  private async startWatch(stream: V3WatchStream, member: MemberChannel, endpoint: Endpoint): Promise<void> {
    try {
      let metadata = this.noMetadata;
      let token: string | undefined;
      if (this.auth !== undefined) {
        token = this.token ?? (await this.authenticate(undefined, stream.abortSignal));
        metadata = this.tokenMetadata!;
      }
      const reached = this.connect(member, stream.abortSignal);
      const outcome = reached === true ? true : await reached;
      if (stream.finished) return;
      if (outcome !== true) {
        const err = new V3RpcError('Watch', grpc.status.UNAVAILABLE, outcome, endpoint.url, { sent: false });
        this.balancer.reportFailure(endpoint, err);
        stream.fail(err);
        return;
      }
      const m = this.methods.Watch.Watch;
      // As etcd's clientv3 asks for watches: a member that loses its leader (cut off from the
      // others) ends the stream with "no leader" instead of keeping it open with no event.
      const withLeader = metadata.clone();
      withLeader.set('hasleader', 'true');
      const call = member.client.makeBidiStreamRequest<object, WatchResponse>(m.path, m.serialize, m.deserialize as (b: Buffer) => WatchResponse, withLeader);
      stream.attach(call, (thrown) => {
        const err = toRpcError('Watch', endpoint.url, thrown);
        if (isMemberFailure(err)) this.balancer.reportFailure(endpoint, err);
        if (token !== undefined && isStaleToken(err) && this.token === token) this.token = undefined;
        return err;
      });
    } catch (err) {
      stream.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private closedError(method: string): V3RpcError {
    return new V3RpcError(method, grpc.status.CANCELLED, 'the client is closed', undefined, { sent: false });
  }
}

/** The Watch stream of {@link V3Client.openWatchStream}. */
class V3WatchStream extends EventEmitter<WatchStreamEvents> implements WatchStream {
  readonly endpoint: string;
  private call: grpc.ClientDuplexStream<object, WatchResponse> | undefined = undefined;
  private pending: object[] = [];
  private done = false;
  private readonly doneHooks: (() => void)[] = [];
  private readonly aborter = new AbortController();

  constructor(endpoint: string) {
    super();
    this.endpoint = endpoint;
  }

  /** Aborted once the stream is over (stops a pending connection wait). */
  get abortSignal(): AbortSignal {
    return this.aborter.signal;
  }

  get finished(): boolean {
    return this.done;
  }

  create(req: WatchCreateRequest): void {
    if (req.watchId === undefined || !Number.isSafeInteger(req.watchId) || req.watchId <= 0) {
      throw new InvalidOptionError('watchId', `expected a whole number > 0, got ${describe(req.watchId)}`);
    }
    this.write({ createRequest: req });
  }

  cancel(watchId: number): void {
    this.write({ cancelRequest: { watchId } });
  }

  requestProgress(): void {
    this.write({ progressRequest: {} });
  }

  close(): void {
    this.finish();
  }

  /** Runs `fn` once the stream is over, however. */
  onDone(fn: () => void): void {
    if (this.done) fn();
    else this.doneHooks.push(fn);
  }

  /** Starts using the gRPC call; `convert` turns its error into what is emitted. */
  attach(call: grpc.ClientDuplexStream<object, WatchResponse>, convert: (err: unknown) => Error): void {
    if (this.done) {
      call.on('error', () => undefined);
      call.cancel();
      return;
    }
    this.call = call;
    call.on('data', (res: WatchResponse) => {
      if (!this.done) this.emit('response', res);
    });
    call.on('error', (err: Error) => {
      if (!this.done) this.fail(convert(err));
    });
    call.on('end', () => {
      if (!this.done) this.end();
    });
    const pending = this.pending;
    this.pending = [];
    for (const message of pending) call.write(message);
  }

  /** Ends the stream with `err` (emitted once). */
  fail(err: Error): void {
    if (this.done) return;
    this.finish();
    this.emit('error', err);
  }

  /** Ends the stream without an error ('end'). */
  end(): void {
    if (this.done) return;
    this.finish();
    this.emit('end');
  }

  private write(message: object): void {
    if (this.done) return;
    if (this.call === undefined) this.pending.push(message);
    else this.call.write(message);
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.pending = [];
    this.aborter.abort();
    this.call?.cancel();
    for (const fn of this.doneHooks.splice(0)) fn();
  }
}

// --- helpers ---

function isReadOnly(req: TxnRequest): boolean {
  return opsReadOnly(req.success) && opsReadOnly(req.failure);
}

function opsReadOnly(ops: readonly RequestOp[] | undefined): boolean {
  if (ops === undefined) return true;
  for (const op of ops) {
    if (op.requestPut != null || op.requestDeleteRange != null) return false;
    if (op.requestTxn != null && !isReadOnly(op.requestTxn)) return false;
  }
  return true;
}

function allSerializable(req: TxnRequest): boolean {
  const ops = [...(req.success ?? []), ...(req.failure ?? [])];
  if (ops.length === 0) return false;
  return ops.every((op) => (op.requestRange != null ? op.requestRange.serializable === true : op.requestTxn != null ? allSerializable(op.requestTxn) : true));
}

function toRpcError(method: string, endpoint: string, thrown: unknown): V3RpcError {
  if (thrown instanceof V3RpcError) return thrown;
  const e = thrown as Partial<grpc.ServiceError> & Error;
  const code = typeof e.code === 'number' ? e.code : grpc.status.UNKNOWN;
  const details = typeof e.details === 'string' && e.details !== '' ? e.details : (e.message ?? String(thrown));
  return new V3RpcError(method, code, details, endpoint, { cause: thrown });
}

function abortError(method: string, endpoint: string | undefined, signal: AbortSignal): V3RpcError {
  return new V3RpcError(method, grpc.status.CANCELLED, 'the call was aborted', endpoint, { cause: signal.reason });
}

/** The member could not serve the call (unreachable, stopped, no leader, too slow): the next may. */
function isRetryableRead(err: V3RpcError): boolean {
  return err.grpcCode === grpc.status.UNAVAILABLE || err.grpcCode === grpc.status.DEADLINE_EXCEEDED;
}

/**
 * The member itself cannot serve (unreachable, too slow, stopping, no
 * leader): reported to the balancer. etcd's answers about the cluster
 * (an election in progress, a proposal that timed out) are not its fault.
 */
function isMemberFailure(err: V3RpcError): boolean {
  if (err.grpcCode === grpc.status.DEADLINE_EXCEEDED) return true;
  if (err.grpcCode !== grpc.status.UNAVAILABLE) return false;
  if (!err.details.startsWith('etcdserver: ')) return true; // the connection, not etcd, failed
  return err.details === 'etcdserver: no leader' || err.details === 'etcdserver: server stopped';
}

/** etcd refused the token (expired, or issued before auth was re-enabled): authenticate again. */
function isStaleToken(err: V3RpcError): boolean {
  return (
    err.grpcCode === grpc.status.UNAUTHENTICATED ||
    err.details.includes('invalid auth token') ||
    err.details.includes('revision of auth store is old')
  );
}
