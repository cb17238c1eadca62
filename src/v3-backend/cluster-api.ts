import type { IncomingMessage, ServerResponse } from 'node:http';
import createDebug from 'debug';
import type { EndpointBalancer } from '../balancer/endpoint-balancer.js';
import { InvalidOptionError } from '../errors.js';
import { balancerValue, describe, signalOption } from '../validate-options.js';
import type { ClusterMember, MemberListResponse, StatusResponse } from './rpc-types.js';
import { StoreCounters, hexId, leaderStats, selfStats } from './v2-stats.js';
import { writeMethodNotAllowed } from './v2-error.js';
import { V3RpcError } from './v3-client.js';
import type { V3Client } from './v3-client.js';

const debug = createDebug('etcd-v2-proxy:v3-cluster-api');

const MEMBERS = '/v2/members';
const MACHINES = '/v2/machines';
const STATS = new Set(['/v2/stats/self', '/v2/stats/leader', '/v2/stats/store']);
/** A members request body bigger than this is refused (a peer URL list is a few hundred bytes). */
const MAX_BODY = 1 << 20;
/** A v2 member ID: Go's `strconv.ParseUint(s, 16, 64)` takes hex digits only. */
const HEX_ID = /^[0-9a-fA-F]+$/;
const MAX_UINT64 = (1n << 64n) - 1n;

/** gRPC status codes this file tells apart. */
const GRPC = { CANCELLED: 1, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, PERMISSION_DENIED: 7, FAILED_PRECONDITION: 9, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;

/**
 * Options of {@link V3ClusterApi}.
 * @public
 */
export interface V3ClusterApiOptions {
  /** The gRPC client to the cluster's members. */
  client: V3Client;
  /** The members' endpoints: `/v2/stats/self` and the leader look-up ask them `Maintenance.Status` in its order. */
  balancer: EndpointBalancer;
  /**
   * v2 auth on member changes: called for a POST, PUT or DELETE on
   * `/v2/members` after the method check, as native v2 checks root access
   * there; it answers the request itself (401) and returns false to refuse.
   * Default: every request allowed (v2 auth off).
   */
  checkRootAccess?: (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;
  /**
   * The client URLs `GET /v2/members`, `/v2/members/leader` and
   * `/v2/machines` show for every member, instead of the members' own: the
   * members do not serve v2, so a v2 client that syncs its endpoint list
   * from them (etcdctl v2 and client/v2 do by default) must be sent back to
   * the proxy. `createProxy()` passes the proxy's listen URLs. Default: the
   * members' own client URLs.
   */
  advertiseClientUrls?: () => readonly string[];
  /** Aborting it closes the object, as {@link V3ClusterApi.close} does. */
  signal?: AbortSignal;
}

/** An answer decided before or instead of a v3 call: status, message (`{"message":...}` body). */
class HttpAnswer extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * etcd v2's cluster endpoints answered from a v3 cluster's Cluster and
 * Maintenance APIs, in native v2's JSON shapes, status codes and messages
 * (oracle: etcd 3.4 with `--enable-v2`):
 *
 * - `GET /v2/members` (`/v2/members/` too): every member, IDs in v2's hex.
 * - `POST /v2/members` `{"peerURLs":[...]}` (`Content-Type: application/json`):
 *   adds a member, 201 with it (no name, no client URLs until it starts);
 *   409 `membership: peerURL exists`; 400 for bad JSON or URLs; 415 for
 *   another content type. As native, a POST on any `/v2/members/...` path adds.
 * - `DELETE /v2/members/<hex id>`: 204; 404 `No such member: <id>` (also for
 *   an ID removed before: v3 does not tell it apart, native says 410).
 * - `PUT /v2/members/<hex id>` `{"peerURLs":[...]}`: 204; 404; 409.
 * - `GET /v2/members/leader`: the leader as Maintenance.Status says;
 *   503 `During election` while there is none.
 * - `GET|HEAD /v2/machines`: the members' client URLs, sorted, `", "`-joined, text.
 * - `GET /v2/stats/self|leader|store`: see `v2-stats.ts` for each field's source.
 *
 * A wrong method gets native's 405 (`Allow` header, text body). etcd's own
 * refusal of a member change that is not one of the above (e.g. not enough
 * started members, an unhealthy cluster) gets native's 500
 * `{"message":"Internal Server Error"}`; a cluster that does not answer gets
 * 503 with the reason. `X-Etcd-Cluster-Id` (hex) is on every members answer
 * past the method check, as native.
 * @public
 */
export class V3ClusterApi {
  /** Number of open v2 watches, for `/v2/stats/store`'s `watchers`: set by the HTTP layer. */
  watchers: () => number = () => 0;
  private readonly client: V3Client;
  private readonly balancer: EndpointBalancer;
  private readonly checkRootAccess: ((req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>) | undefined;
  private readonly advertiseClientUrls: (() => readonly string[]) | undefined;
  private readonly counters = new StoreCounters();
  private clusterIdHex: string | undefined;
  /** decimal member ID -> when this proxy first saw it answer Status. */
  private readonly firstSeen = new Map<string, Date>();
  private leaderSeen: { id: string; since: Date; hr: bigint } | undefined;
  private readonly closer = new AbortController();
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.close();

  constructor(options: V3ClusterApiOptions) {
    if (options === null || typeof options !== 'object') {
      throw new InvalidOptionError('options', `expected an object with a client and a balancer, got ${describe(options)}`);
    }
    const { client, balancer } = options;
    if (client === null || typeof client !== 'object' || typeof (client as Partial<V3Client>).memberList !== 'function') {
      throw new InvalidOptionError('client', `expected a V3Client, got ${describe(client)}`);
    }
    balancerValue(balancer);
    if (options.checkRootAccess !== undefined && typeof options.checkRootAccess !== 'function') {
      throw new InvalidOptionError('checkRootAccess', `expected a function, got ${describe(options.checkRootAccess)}`);
    }
    this.client = client;
    this.balancer = balancer;
    this.checkRootAccess = options.checkRootAccess;
    if (options.advertiseClientUrls !== undefined && typeof options.advertiseClientUrls !== 'function') {
      throw new InvalidOptionError('advertiseClientUrls', `expected a function, got ${describe(options.advertiseClientUrls)}`);
    }
    this.advertiseClientUrls = options.advertiseClientUrls;
    this.signal = signalOption(options.signal);
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (this.signal?.aborted) this.close();
  }

  /**
   * True when `path` (no query) is one this object answers: `/v2/members`,
   * `/v2/members/<anything>` (native answers them all: 404 `Not found` for a
   * GET of an unknown sub-path), `/v2/machines`, `/v2/stats/self`,
   * `/v2/stats/leader`, `/v2/stats/store`.
   */
  handles(path: string): boolean {
    return path === MEMBERS || path.startsWith(`${MEMBERS}/`) || path === MACHINES || STATS.has(path);
  }

  /**
   * Answers one request whose path {@link V3ClusterApi.handles} (reads the
   * body itself for POST and PUT). Never throws: every failure becomes an
   * answer in native v2's form.
   */
  async serve(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    try {
      if (path === MACHINES) await this.serveMachines(req, res);
      else if (STATS.has(path)) await this.serveStats(req, res, path);
      else await this.serveMembers(req, res, path);
    } catch (err) {
      this.answerFailure(res, err);
    }
  }

  /**
   * The leader look-up of the balancer in v3 mode: `Maintenance.Status` on
   * the endpoints in the balancer's order until one names a leader, then that
   * member's client URLs from `MemberList`. undefined when no endpoint knows a
   * leader (an election) or none answers.
   */
  async lookUpLeader(signal: AbortSignal): Promise<readonly string[] | undefined> {
    // Ends with either signal (AbortSignal.any needs Node 20.3).
    const both = new AbortController();
    const stop = (): void => both.abort();
    if (signal.aborted || this.closer.signal.aborted) both.abort();
    signal.addEventListener('abort', stop, { once: true });
    this.closer.signal.addEventListener('abort', stop, { once: true });
    try {
      return await this.findLeader({ signal: both.signal });
    } finally {
      signal.removeEventListener('abort', stop);
      this.closer.signal.removeEventListener('abort', stop);
    }
  }

  private async findLeader(opts: { signal: AbortSignal }): Promise<readonly string[] | undefined> {
    for (const e of [...this.balancer.order()]) {
      if (opts.signal.aborted) return undefined;
      let status: StatusResponse;
      try {
        status = await this.client.status(e.url, opts);
      } catch (err) {
        debug('leader look-up: Status on %s failed: %s', e.url, (err as Error).message);
        continue;
      }
      this.sawStatus(status);
      if (status.leader === '0' || status.leader === '') continue;
      try {
        const list = await this.memberList(opts);
        const leader = list.members.find((m) => m.ID === status.leader);
        return leader === undefined || leader.clientURLs.length === 0 ? undefined : [...leader.clientURLs];
      } catch (err) {
        debug('leader look-up: MemberList failed: %s', (err as Error).message);
        return undefined;
      }
    }
    return undefined;
  }

  /**
   * Counts one v2 keys operation for `/v2/stats/store`: `action` is v2's
   * name (`get`, `set`, `create`, `update`, `compareAndSwap`, `delete`,
   * `compareAndDelete`; `refresh` counts as `set`; `expire` counts one expiry).
   */
  count(action: string, ok: boolean): void {
    this.counters.count(action, ok);
  }

  /** Ends the v3 calls in flight (their requests get 503). Idempotent. */
  close(): void {
    if (this.closer.signal.aborted) return;
    this.closer.abort();
    this.signal?.removeEventListener('abort', this.onAbort);
  }

  // --- /v2/machines, /v2/stats/* ---

  private async serveMachines(req: IncomingMessage, res: ServerResponse): Promise<void> {
    req.resume();
    if (!allowMethod(req, res, ['GET', 'HEAD'])) return;
    const list = await this.memberList();
    const urls = this.advertiseClientUrls === undefined ? list.members.flatMap((m) => m.clientURLs) : [...this.advertiseClientUrls()];
    urls.sort(byteOrder);
    const body = urls.join(', ');
    res.writeHead(200, { 'Content-Length': String(Buffer.byteLength(body)), 'Content-Type': 'text/plain; charset=utf-8' });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private async serveStats(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    req.resume();
    if (!allowMethod(req, res, ['GET'])) return;
    if (path === '/v2/stats/store') {
      writeJson(res, 200, this.counters.toJSON(this.watchers()), false);
      return;
    }
    const [status, list] = await Promise.all([this.firstStatus(), this.memberList()]);
    if (path === '/v2/stats/leader') {
      if (status.leader === '0' || status.leader === '') throw new HttpAnswer(403, 'not current leader');
      writeJson(res, 200, leaderStats(status.leader, list.members.map((m) => m.ID)), false);
      return;
    }
    const id = String(status.header.memberId);
    const seen = this.sawStatus(status);
    writeJson(
      res,
      200,
      selfStats({
        name: list.members.find((m) => m.ID === id)?.name ?? '',
        id,
        leader: status.leader,
        startTime: seen.startTime,
        leaderSince: seen.leaderSince,
        leaderSinceHr: seen.leaderSinceHr,
      }),
      false,
    );
  }

  /** Maintenance.Status of the first endpoint, in the balancer's order, that answers. */
  private async firstStatus(): Promise<StatusResponse> {
    let last: unknown = new HttpAnswer(503, 'etcd-v2-proxy: no member is known');
    for (const e of [...this.balancer.order()]) {
      try {
        return await this.client.status(e.url, { signal: this.closer.signal });
      } catch (err) {
        last = err;
        if (this.closer.signal.aborted) break;
      }
    }
    throw last;
  }

  /** Records first-seen times from a Status answer; returns those of its member and its leader. */
  private sawStatus(status: StatusResponse): { startTime: Date; leaderSince: Date; leaderSinceHr: bigint } {
    const id = String(status.header.memberId);
    let startTime = this.firstSeen.get(id);
    if (startTime === undefined) {
      startTime = new Date();
      this.firstSeen.set(id, startTime);
    }
    if (this.leaderSeen === undefined || this.leaderSeen.id !== status.leader) {
      this.leaderSeen = { id: status.leader, since: new Date(), hr: process.hrtime.bigint() };
    }
    return { startTime, leaderSince: this.leaderSeen.since, leaderSinceHr: this.leaderSeen.hr };
  }

  // --- /v2/members ---

  /** A member as a v2 members answer shows it (client URLs as advertised). */
  private shown(m: ClusterMember): ReturnType<typeof v2Member> {
    const v2 = v2Member(m);
    if (this.advertiseClientUrls !== undefined && v2.clientURLs.length > 0) v2.clientURLs = [...this.advertiseClientUrls()];
    return v2;
  }

  private async serveMembers(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const method = req.method ?? 'GET';
    if (!allowMethod(req, res, ['GET', 'POST', 'DELETE', 'PUT'])) {
      req.resume();
      return;
    }
    if (method !== 'GET' && this.checkRootAccess !== undefined && !(await this.checkRootAccess(req, res))) {
      req.resume();
      return;
    }
    const sub = trimPrefix(path);
    let clusterId: string;
    try {
      clusterId = await this.clusterId();
    } catch (err) {
      req.resume();
      throw err;
    }
    res.setHeader('X-Etcd-Cluster-Id', clusterId);
    switch (method) {
      case 'GET': {
        req.resume();
        if (sub === '') {
          const list = await this.memberList();
          writeJson(res, 200, { members: sortById(list.members).map((m) => this.shown(m)) }, true);
        } else if (sub === 'leader') {
          const status = await this.firstStatus();
          this.sawStatus(status);
          const leader = status.leader === '0' || status.leader === '' ? undefined : (await this.memberList()).members.find((m) => m.ID === status.leader);
          if (leader === undefined) throw new HttpAnswer(503, 'During election');
          writeJson(res, 200, this.shown(leader), true);
        } else {
          throw new HttpAnswer(404, 'Not found');
        }
        return;
      }
      case 'POST': {
        const peerURLs = await readPeerUrls(req);
        let added: Awaited<ReturnType<V3Client['memberAdd']>>;
        try {
          added = await this.client.memberAdd(peerURLs, { signal: this.closer.signal });
        } catch (err) {
          throw memberError(err, undefined);
        }
        this.learnClusterId(added.header?.clusterId);
        writeJson(res, 201, v2Member(added.member), true);
        return;
      }
      case 'DELETE': {
        req.resume();
        const id = memberId(res, sub);
        if (id === undefined) return;
        try {
          await this.client.memberRemove(id.decimal, { signal: this.closer.signal });
        } catch (err) {
          throw memberError(err, id.hex);
        }
        res.writeHead(204);
        res.end();
        return;
      }
      default: {
        // PUT
        const id = memberId(res, sub);
        if (id === undefined) {
          req.resume();
          return;
        }
        const peerURLs = await readPeerUrls(req);
        try {
          await this.client.memberUpdate(id.decimal, peerURLs, { signal: this.closer.signal });
        } catch (err) {
          throw memberError(err, id.hex);
        }
        res.writeHead(204);
        res.end();
      }
    }
  }

  private async memberList(opts: { signal?: AbortSignal } = { signal: this.closer.signal }): Promise<MemberListResponse> {
    const list = await this.client.memberList(opts);
    this.learnClusterId(list.header?.clusterId);
    return list;
  }

  /** The cluster's ID in v2's hex, asked once (MemberList) and kept: it never changes. */
  private async clusterId(): Promise<string> {
    if (this.clusterIdHex === undefined) await this.memberList();
    if (this.clusterIdHex === undefined) throw new HttpAnswer(503, 'etcd-v2-proxy: the cluster did not tell its ID');
    return this.clusterIdHex;
  }

  private learnClusterId(id: number | string | undefined): void {
    if (this.clusterIdHex !== undefined || id === undefined || id === '' || id === 0 || id === '0') return;
    try {
      this.clusterIdHex = hexId(id);
    } catch {
      // not a number: keep asking
    }
  }

  // --- failures ---

  private answerFailure(res: ServerResponse, err: unknown): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (err instanceof HttpAnswer) {
      writeError(res, err.status, err.message);
      return;
    }
    debug('v3 call failed: %s', (err as Error)?.stack ?? String(err));
    if (!(err instanceof V3RpcError) || this.closer.signal.aborted) {
      // No member answered (or this object is closing): not etcd's refusal.
      writeError(res, 503, `etcd-v2-proxy: the cluster did not answer: ${(err as Error)?.message ?? String(err)}`);
      return;
    }
    const details = err.details ?? '';
    if (err.grpcCode === GRPC.PERMISSION_DENIED || err.grpcCode === GRPC.UNAUTHENTICATED) {
      writeError(res, 500, `etcd-v2-proxy: the cluster refused this proxy's v3 credentials: ${details}`);
      return;
    }
    const answeredByEtcd = details.startsWith('etcdserver:');
    if (!answeredByEtcd && (err.grpcCode === GRPC.UNAVAILABLE || err.grpcCode === GRPC.DEADLINE_EXCEEDED || err.grpcCode === GRPC.CANCELLED)) {
      writeError(res, 503, `etcd-v2-proxy: the cluster did not answer: ${details || err.message}`);
      return;
    }
    // etcd refused it for a reason native v2 has no own answer for (as native: 500).
    writeError(res, 500, 'Internal Server Error');
  }
}

/** A failed MemberAdd/MemberRemove/MemberUpdate (of member `hex`) as native v2 answers it. */
function memberError(err: unknown, hex: string | undefined): unknown {
  if (!(err instanceof V3RpcError)) return err;
  if (err.grpcCode === GRPC.NOT_FOUND && hex !== undefined) return new HttpAnswer(404, `No such member: ${hex}`);
  if (err.grpcCode === GRPC.INVALID_ARGUMENT && /member URLs are invalid/.test(err.details)) return new HttpAnswer(400, err.details);
  return peerUrlConflict(err) ?? err;
}

/** etcd's "Peer URLs already exists" / "member ID already exist" as native v2's 409. */
function peerUrlConflict(err: V3RpcError): HttpAnswer | undefined {
  if (err.grpcCode !== GRPC.FAILED_PRECONDITION) return undefined;
  if (/Peer URLs already exists/i.test(err.details)) return new HttpAnswer(409, 'membership: peerURL exists');
  if (/member ID already exist/i.test(err.details)) return new HttpAnswer(409, 'membership: ID exists');
  return undefined;
}

/** The v2 ID in a members path, as Go's `types.IDFromString`; answers 405/404 itself when there is none. */
function memberId(res: ServerResponse, sub: string): { decimal: string; hex: string } | undefined {
  if (sub === '') {
    writeMethodNotAllowed(res, undefined);
    return undefined;
  }
  const value = HEX_ID.test(sub) ? BigInt(`0x${sub}`) : undefined;
  if (value === undefined || value > MAX_UINT64) {
    writeError(res, 404, `No such member: ${sub}`);
    return undefined;
  }
  return { decimal: value.toString(10), hex: value.toString(16) };
}

/** `p` after `/v2/members` and one `/` (Go's trimPrefix in v2http). */
function trimPrefix(p: string): string {
  const s = p.slice(MEMBERS.length);
  return s.startsWith('/') ? s.slice(1) : s;
}

/**
 * The body of a POST or PUT on `/v2/members` as native v2 reads it:
 * `Content-Type: application/json` (else 415), JSON with `peerURLs` (key
 * matched case-insensitively, as Go's encoding/json), each URL as etcd's
 * `types.NewURLs` takes it. Returns the URLs trimmed, scheme lower-cased, sorted.
 */
async function readPeerUrls(req: IncomingMessage): Promise<string[]> {
  let ctype = req.headers['content-type'] ?? '';
  const semicolon = ctype.indexOf(';');
  if (semicolon !== -1) ctype = ctype.slice(0, semicolon).trim().toLowerCase();
  if (ctype !== 'application/json') {
    req.resume();
    throw new HttpAnswer(415, `Bad Content-Type ${ctype}, accept application/json`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size <= MAX_BODY) chunks.push(chunk as Buffer);
  }
  if (size > MAX_BODY) throw new HttpAnswer(400, 'http: request body too large');
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new HttpAnswer(400, 'unexpected end of JSON input');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new HttpAnswer(400, (err as Error).message);
  }
  let list: unknown = null;
  if (doc !== null) {
    if (typeof doc !== 'object' || Array.isArray(doc)) {
      throw new HttpAnswer(400, `json: cannot unmarshal ${goKind(doc)} into Go value of type struct { PeerURLs []string "json:\\"peerURLs\\"" }`);
    }
    for (const [key, value] of Object.entries(doc)) if (key.toLowerCase() === 'peerurls') list = value;
  }
  if (list !== null && !Array.isArray(list)) {
    throw new HttpAnswer(400, `json: cannot unmarshal ${goKind(list)} into Go struct field .peerURLs of type []string`);
  }
  const raw = ((list ?? []) as unknown[]).map((u) => {
    if (u !== null && typeof u !== 'string') throw new HttpAnswer(400, `json: cannot unmarshal ${goKind(u)} into Go struct field .peerURLs of type string`);
    return u ?? '';
  });
  if (raw.length === 0) throw new HttpAnswer(400, 'no valid URLs given');
  const urls = raw.map(checkPeerUrl);
  urls.sort(byteOrder);
  return urls;
}

/** One peer URL as etcd's `types.NewURLs` checks it (errors with its messages); the URL as Go's `url.URL.String()` gives it back. */
function checkPeerUrl(raw: string): string {
  const s = raw.trim();
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(s)?.[1]?.toLowerCase() ?? '';
  if (s.startsWith(':')) throw new HttpAnswer(400, `parse ${JSON.stringify(s)}: missing protocol scheme`);
  if (scheme !== 'http' && scheme !== 'https' && scheme !== 'unix' && scheme !== 'unixs') {
    throw new HttpAnswer(400, `URL scheme must be http, https, unix, or unixs: ${s}`);
  }
  const rest = s.slice(scheme.length + 1);
  let host = '';
  let path = rest;
  if (rest.startsWith('//')) {
    const end = rest.slice(2).search(/[/?#]/);
    const authority = end === -1 ? rest.slice(2) : rest.slice(2, 2 + end);
    path = end === -1 ? '' : rest.slice(2 + end);
    host = authority.slice(authority.lastIndexOf('@') + 1);
    const port = /^(?:\[[^\]]*\]|[^:[\]]*)(:.*)?$/.exec(host)?.[1];
    if (port !== undefined && !/^:\d*$/.test(port)) throw new HttpAnswer(400, `parse ${JSON.stringify(s)}: invalid port ${JSON.stringify(port)} after host`);
  }
  path = path.replace(/[?#].*$/s, '');
  if (!splitsHostPort(host)) throw new HttpAnswer(400, `URL address does not have the form "host:port": ${s}`);
  if (path !== '') throw new HttpAnswer(400, `URL must not contain a path: ${s}`);
  return scheme + s.slice(scheme.length);
}

/** Go's `net.SplitHostPort` succeeds: `host:port` or `[v6]:port` (the port may be empty). */
function splitsHostPort(host: string): boolean {
  if (host.startsWith('[')) return /^\[[^\]]*\]:[^:]*$/.test(host);
  const colons = host.split(':').length - 1;
  return colons === 1;
}

/** Go encoding/json's name of a JSON value's kind, for its type errors. */
function goKind(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return 'number';
  if (typeof v === 'string') return 'string';
  return 'object';
}

/** A v3 member as v2 writes it. */
function v2Member(m: ClusterMember): { id: string; name: string; peerURLs: string[]; clientURLs: string[] } {
  return { id: hexId(m.ID), name: m.name ?? '', peerURLs: [...(m.peerURLs ?? [])], clientURLs: [...(m.clientURLs ?? [])] };
}

/** Members by numeric ID, as v2 lists them. */
function sortById(ms: readonly ClusterMember[]): ClusterMember[] {
  return [...ms].sort((a, b) => {
    const x = BigInt(a.ID);
    const y = BigInt(b.ID);
    return x < y ? -1 : x > y ? 1 : 0;
  });
}

function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Native's method check: 405 with `Allow` (comma-joined, no spaces) and Go's `http.Error` text body. */
function allowMethod(req: IncomingMessage, res: ServerResponse, methods: readonly string[]): boolean {
  if (methods.includes(req.method ?? 'GET')) return true;
  writeMethodNotAllowed(res, methods.join(','));
  return false;
}


/** A JSON answer: Go's `json.NewEncoder(w).Encode` ends it with a newline (`newline`), `w.Write(json.Marshal(...))` does not. */
function writeJson(res: ServerResponse, status: number, value: unknown, newline: boolean): void {
  const body = JSON.stringify(value) + (newline ? '\n' : '');
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)) });
  res.end(body);
}

/** Native v2's `{"message": ...}` error (httptypes.HTTPError), no trailing newline. */
function writeError(res: ServerResponse, status: number, message: string): void {
  writeJson(res, status, { message }, false);
}
