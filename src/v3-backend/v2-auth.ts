import { createHmac, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { posix } from 'node:path';
import { TLSSocket } from 'node:tls';
import type { PeerCertificate } from 'node:tls';
import { compare as bcryptCompare, genSalt, hash as bcryptHash } from 'bcryptjs';
import createDebug from 'debug';
import { InvalidOptionError } from '../errors.js';
import { rawHeader } from '../forwarding/forward-request.js';
import { describe, signalOption } from '../validate-options.js';
import type { KeyValue, RequestOp, WatchResponse } from './rpc-types.js';
import { V2Error, writeMethodNotAllowed } from './v2-error.js';
import type { V3Client, WatchStream } from './v3-client.js';

const debug = createDebug('etcd-v2-proxy:v2-auth');

/** The URL path of v2's auth API. */
const AUTH_PATH = '/v2/auth';

/** bcrypt cost of a new password hash: Go's bcrypt.DefaultCost, what etcd v2 used. */
const BCRYPT_COST = 10;

/** At most this many password verification results are kept. */
const VERIFIED_MAX = 1000;

/**
 * How long a password verification result (success or failure) is reused,
 * in ms. The cache key holds the stored hash, so a new password (a new hash)
 * or a deleted user takes effect at the next request whatever this is.
 */
const VERIFIED_TTL_MS = 5 * 60 * 1000;

/** ms a write through this instance waits for its own watch to show it, before the watched copy is dropped and read again. */
const CATCH_UP_MS = 3000;

/** Compare-and-retry rounds of one auth API write racing with others. */
const WRITE_ATTEMPTS = 10;

/** Largest `/v2/auth` request body read (users and roles are small); a larger one is "Invalid JSON". */
const MAX_BODY_BYTES = 1024 * 1024;

const ROOT = 'root';
const GUEST = 'guest';

/**
 * Options of {@link V2Auth}.
 * @public
 */
export interface V2AuthOptions {
  /** The cluster's v3 client: users, roles and the enabled flag live there. */
  client: V3Client;
  /** v3 key prefix of the v2 tree; the auth data is kept under `<prefix>/auth/`. Default: `/v2`. */
  prefix?: string;
  /** The cluster ID (hex) for the `X-Etcd-Cluster-Id` header of the answers native v2 puts it on; none when it returns undefined. */
  clusterId?: () => string | undefined;
  /**
   * Authenticate a request that has no `Authorization` header by its TLS
   * client certificate: a user named as the certificate's (or one of its
   * issuers') common name, as etcd's `--client-cert-auth` did for v2.
   * Default: false.
   */
  clientCertAuth?: boolean;
  /** Aborting it closes the instance. */
  signal?: AbortSignal;
}

// --- the data, as etcd v2's auth store kept it (Go's nil slices are null) ---

/** A list of strings; null is Go's nil slice (`"roles":null`). */
type StrList = string[] | null;

/**
 * Who asks, as the checks read it: the Basic credentials in the
 * Authorization header, or the client certificate of a TLS connection.
 * node:http's request has it, and so has createProxy's own reader.
 */
export interface AuthCaller {
  readonly rawHeaders: readonly string[];
  readonly socket: object | null;
}

interface RWPermission {
  read: StrList;
  write: StrList;
}

interface Permissions {
  kv: RWPermission;
}

interface User {
  user: string;
  /** bcrypt hash once stored; '' for none. */
  password: string;
  roles: StrList;
  grant: StrList;
  revoke: StrList;
}

interface Role {
  role: string;
  permissions: Permissions;
  /** null: absent (Go's nil pointer). */
  grant: Permissions | null;
  revoke: Permissions | null;
}

const rootRole: Role = { role: ROOT, permissions: { kv: { read: ['/*'], write: ['/*'] } }, grant: null, revoke: null };
const guestRole: Role = { role: GUEST, permissions: { kv: { read: ['/*'], write: ['/*'] } }, grant: null, revoke: null };

/** A stored value and the v3 mod revision of its key. `value` undefined: the key holds something that is not valid JSON of its kind. */
interface Entry<T> {
  value: T | undefined;
  mod: number;
}

/** The whole auth state of the cluster at one revision. */
interface AuthData {
  revision: number;
  enabled: Entry<boolean> | undefined;
  users: Map<string, Entry<User>>;
  roles: Map<string, Entry<Role>>;
}

/** An error v2's auth API answers with `{"message": ...}` and a status. */
class AuthFailure extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** A stored user or role that does not decode: native answers 500 where it reads one. */
class CorruptEntry extends Error {}

/** An answer of the auth API. */
interface Reply {
  status: number;
  body: string;
}

type Write = { put: string; value: string } | { del: string };

/** What an auth API write decided: its answer and the keys it changes (none: nothing to write). */
interface Outcome {
  reply: Reply;
  writes: Write[];
}

/** The v3 keys of the auth data. */
interface AuthKeys {
  base: string;
  end: string;
  enabled: string;
  users: string;
  roles: string;
  act: string;
}

/**
 * The auth data seen by one operation; the keys it read (with their mod
 * revisions, 0 when absent) become the compares of the write it decides, so
 * that a write racing with another proxy's is evaluated again.
 */
class View {
  readonly reads = new Map<string, number>();
  constructor(
    readonly data: AuthData,
    private readonly keys: AuthKeys,
  ) {}

  enabled(): boolean {
    this.reads.set(this.keys.enabled, this.data.enabled?.mod ?? 0);
    return this.data.enabled?.value === true;
  }

  /** The user (root with the root role attached), undefined when absent; throws CorruptEntry. */
  user(name: string): User | undefined {
    const e = this.data.users.get(name);
    this.reads.set(this.keys.users + name, e?.mod ?? 0);
    if (e === undefined) return undefined;
    if (e.value === undefined) throw new CorruptEntry(`user ${name}`);
    const u = cloneUser(e.value);
    if (u.user === ROOT) attachRootRole(u);
    return u;
  }

  /** The role (root is built in), undefined when absent; throws CorruptEntry. */
  role(name: string): Role | undefined {
    if (name === ROOT) return rootRole;
    const e = this.data.roles.get(name);
    this.reads.set(this.keys.roles + name, e?.mod ?? 0);
    if (e === undefined) return undefined;
    if (e.value === undefined) throw new CorruptEntry(`role ${name}`);
    return cloneRole(e.value);
  }

  /** Whether a key holds user `name` (readable or not). */
  hasUser(name: string): boolean {
    const e = this.data.users.get(name);
    this.reads.set(this.keys.users + name, e?.mod ?? 0);
    return e !== undefined;
  }

  /** Whether a key holds role `name` (readable or not; root is not stored). */
  hasRole(name: string): boolean {
    const e = this.data.roles.get(name);
    this.reads.set(this.keys.roles + name, e?.mod ?? 0);
    return e !== undefined;
  }

  /** The stored users, sorted; names starting with `_` left out, as native v2's listing leaves out its hidden nodes. */
  userNames(): string[] {
    return goSort([...this.data.users.keys()].filter(listed));
  }

  /** root and the stored roles, sorted; names starting with `_` left out, as for users. */
  roleNames(): string[] {
    return goSort([...new Set([ROOT, ...[...this.data.roles.keys()].filter(listed)])]);
  }
}

/**
 * etcd v2's authentication and authorization (`/v2/auth/*`, Basic auth on
 * every request, users, roles, the `root` user and role, the `guest` role)
 * kept in the cluster's v3 key space, so that every proxy of a cluster
 * enforces the same users and roles.
 *
 * Storage: under `<prefix>/auth/`: `enabled` (`true`/`false`),
 * `users/<name>` and `roles/<name>` holding the JSON v2 kept under `/2/users`
 * and `/2/roles` (bcrypt hashes, cost 10 as v2). Every write puts the action
 * key `<prefix>/act` = `auth` in the same transaction. Auth API writes
 * compare the mod revisions of every key they read, so two proxies racing
 * never lose an update.
 *
 * Reads: the auth API reads the cluster (linearizable) on every request.
 * The checks of keys, members and stats requests use a copy of the auth data
 * read once and kept current by a v3 watch on `<prefix>/auth/`: with auth
 * disabled a request costs no call to the cluster, and with auth enabled
 * none either. A change made through another proxy reaches the copy as fast
 * as the watch delivers it (as a change reaches a native v2 follower when it
 * applies it); a change made through this instance is in the copy before its
 * answer is sent. When the watch fails, the copy is dropped and read again
 * at the next check.
 *
 * Passwords: a Basic auth password is checked with bcrypt once; the result
 * is kept in memory (at most 1,000 results, each for 5 minutes, keyed by an
 * HMAC-SHA256, under a per-process random key, of the user name, the
 * password and the stored hash): a new password changes the stored hash, so
 * a result about the old one is never used again. Concurrent requests with
 * the same credentials share one bcrypt run.
 * @public
 */
export class V2Auth {
  private readonly client: V3Client;
  private readonly keys: AuthKeys;
  private readonly clusterId: (() => string | undefined) | undefined;
  private readonly clientCertAuth: boolean;
  private readonly signal: AbortSignal | undefined;
  private readonly closer = new AbortController();
  private readonly onAbort = (): void => this.close();
  private closed = false;

  /** The watched copy of the auth data (undefined: not read yet, or dropped). */
  private live: AuthData | undefined;
  private liveStream: WatchStream | undefined;
  private loading: Promise<AuthData> | undefined;
  private waiters: Array<{ revision: number; done: () => void }> = [];

  private readonly verified = new Map<string, { ok: boolean; until: number }>();
  private readonly verifying = new Map<string, Promise<boolean>>();
  private readonly secret = randomBytes(32);

  constructor(options: V2AuthOptions) {
    if (options === null || typeof options !== 'object') {
      throw new InvalidOptionError('options', `expected an object with a client, got ${describe(options)}`);
    }
    const client = options.client as unknown;
    if (client === null || typeof client !== 'object' || typeof (client as V3Client).range !== 'function' || typeof (client as V3Client).txn !== 'function') {
      throw new InvalidOptionError('client', `expected a V3Client, got ${describe(client)}`);
    }
    this.client = options.client;
    const prefix = options.prefix ?? '/v2';
    if (typeof prefix !== 'string' || !/^\/[\x21-\x7e]*[^/]$/.test(prefix)) {
      throw new InvalidOptionError('prefix', `expected a key prefix that starts with "/" and does not end with "/", e.g. "/v2", got ${describe(prefix)}`);
    }
    if (options.clusterId !== undefined && typeof options.clusterId !== 'function') {
      throw new InvalidOptionError('clusterId', `expected a function, got ${describe(options.clusterId)}`);
    }
    if (options.clientCertAuth !== undefined && typeof options.clientCertAuth !== 'boolean') {
      throw new InvalidOptionError('clientCertAuth', `expected a boolean, got ${describe(options.clientCertAuth)}`);
    }
    this.clusterId = options.clusterId;
    this.clientCertAuth = options.clientCertAuth ?? false;
    const base = `${prefix}/auth/`;
    this.keys = {
      base,
      end: `${prefix}/auth0`,
      enabled: `${base}enabled`,
      users: `${base}users/`,
      roles: `${base}roles/`,
      act: `${prefix}/act`,
    };
    this.signal = signalOption(options.signal);
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (this.signal?.aborted) this.close();
  }

  /** True for `/v2/auth` and `/v2/auth/...` paths. */
  handles(path: string): boolean {
    return path === AUTH_PATH || path.startsWith(`${AUTH_PATH}/`);
  }

  /**
   * Serves `/v2/auth/enable` (GET/PUT/DELETE), `/v2/auth/users[/name]` and
   * `/v2/auth/roles[/name]` (GET; with a name also PUT/DELETE) with etcd v2's
   * JSON, status codes and messages; reads the request body itself; never
   * throws. `path` is the request target's path (still %-escaped).
   */
  async serve(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    try {
      await this.serveAuth(req, res, path);
    } catch (err) {
      debug('%s %s failed: %s', req.method, path, (err as Error).stack);
      req.resume();
      if (res.headersSent) res.destroy();
      else this.send(res, { status: 500, body: goJson({ message: 'Internal Server Error' }) }, true);
    }
  }

  /**
   * The check of a `/v2/keys` request (native v2's hasKeyPrefixAccess).
   * Resolves undefined when allowed; otherwise with the error to answer
   * (401 errorCode 110 "Insufficient credentials" as v2; a 500 errorCode 300
   * when the auth data cannot be read). `key` is the v2 key path (as v2, it
   * should be the request's path after `/v2/keys`), `write` true for
   * PUT/POST/DELETE, `recursive` the request's recursive flag. With auth
   * disabled it resolves true without a call to the cluster once the watched
   * copy is there.
   */
  async checkKeys(req: AuthCaller, key: string, write: boolean, recursive: boolean): Promise<V2Error | undefined> {
    let data: AuthData;
    try {
      data = await this.current();
    } catch (err) {
      return new V2Error(300, (err as Error).message, 0);
    }
    if (data.enabled?.value !== true) return undefined;
    let allowed = false;
    try {
      allowed = await this.keyAccess(data, req, key, write, recursive);
    } catch (err) {
      debug('key access check of %s failed: %s', key, (err as Error).stack);
    }
    return allowed ? undefined : new V2Error(110, 'Insufficient credentials', 0);
  }

  /**
   * The root-only check (native v2's hasRootAccess): true when auth is
   * disabled or the request authenticates as a user with the root role;
   * otherwise it has answered 401 `{"message":"Insufficient credentials"}`
   * (500 when the auth data cannot be read) and resolves false. Native v2
   * asks it for `/v2/members` writes (its reads are open to all) and not for
   * `/v2/stats`.
   */
  async checkRoot(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    let data: AuthData;
    try {
      data = await this.current();
    } catch (err) {
      debug('auth data could not be read: %s', (err as Error).message);
      this.send(res, { status: 500, body: goJson({ message: 'Internal Server Error' }) }, false);
      return false;
    }
    let allowed = false;
    try {
      allowed = await this.rootAccess(data, req);
    } catch (err) {
      debug('root access check failed: %s', (err as Error).stack);
    }
    if (!allowed) this.writeNoAuth(res);
    return allowed;
  }

  /** Stops the watch; later checks answer 500. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    this.closer.abort();
    this.dropLive();
    this.verified.clear();
  }

  // --- the auth API ---

  private async serveAuth(req: IncomingMessage, res: ServerResponse, rawPath: string): Promise<void> {
    const decoded = unescapePath(rawPath);
    if (decoded === undefined) {
      req.resume();
      res.shouldKeepAlive = false;
      res.writeHead(400, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close', 'Content-Length': '15' });
      res.end('400 Bad Request');
      return;
    }
    const method = req.method ?? 'GET';
    const clean = goCleanPath(decoded);
    if (clean !== decoded) {
      // Go's ServeMux sends a request for an unclean path to the clean one.
      req.resume();
      const q = (req.url ?? '').indexOf('?');
      const location = escapeGoPath(clean) + (q < 0 ? '' : (req.url ?? '').slice(q));
      const headers: Record<string, string> = { Location: location };
      let body = '';
      if (method === 'GET' || method === 'HEAD') {
        headers['Content-Type'] = 'text/html; charset=utf-8';
        body = `<a href="${htmlEscape(location)}">Moved Permanently</a>.\n\n`;
      }
      headers['Content-Length'] = String(Buffer.byteLength(body));
      res.writeHead(301, headers);
      res.end(body);
      return;
    }
    const sub = decoded.slice(AUTH_PATH.length);
    if (sub === '/enable') {
      await this.serveEnable(req, res, method);
      return;
    }
    for (const kind of ['users', 'roles'] as const) {
      if (sub !== `/${kind}` && !sub.startsWith(`/${kind}/`)) continue;
      let name: string | undefined;
      if (sub !== `/${kind}`) {
        const pieces = cleanPath(sub).split('/');
        if (pieces.length !== 2 && pieces.length !== 3) {
          req.resume();
          this.send(res, authError(400, 'Invalid path'), false);
          return;
        }
        name = pieces[2];
      }
      if (name === undefined) await this.serveList(req, res, method, kind);
      else await this.serveOne(req, res, method, kind, name);
      return;
    }
    req.resume();
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff', 'Content-Length': '19' });
    res.end('404 page not found\n');
  }

  private async serveEnable(req: IncomingMessage, res: ServerResponse, method: string): Promise<void> {
    req.resume();
    if (!allowMethod(res, method, ['GET', 'PUT', 'DELETE'])) return;
    const data = await this.read();
    if (method !== 'GET' && method !== 'HEAD' && !(await this.rootAccess(data, req))) {
      this.writeNoAuth(res);
      return;
    }
    if (method === 'GET') {
      this.send(res, ok({ enabled: data.enabled?.value === true }), true);
      return;
    }
    const enable = method === 'PUT';
    this.send(
      res,
      await this.write(data, (v) => {
        if (enable) {
          if (v.enabled()) throw new AuthFailure(409, 'auth: already enabled');
          if (v.user(ROOT) === undefined) throw new AuthFailure(409, 'auth: No root user available, please create one');
          const writes: Write[] = [];
          if (v.role(GUEST) === undefined) writes.push({ put: this.keys.roles + GUEST, value: goJson(roleJson(guestRole)) });
          writes.push({ put: this.keys.enabled, value: 'true' });
          return { reply: { status: 200, body: '' }, writes };
        }
        if (!v.enabled()) throw new AuthFailure(409, 'auth: already disabled');
        return { reply: { status: 200, body: '' }, writes: [{ put: this.keys.enabled, value: 'false' }] };
      }),
      true,
    );
  }

  private async serveList(req: IncomingMessage, res: ServerResponse, method: string, kind: 'users' | 'roles'): Promise<void> {
    req.resume();
    if (!allowMethod(res, method, ['GET'])) return;
    const data = await this.read();
    if (!(await this.rootAccess(data, req))) {
      this.writeNoAuth(res);
      return;
    }
    const v = new View(data, this.keys);
    this.send(
      res,
      answer(() => {
        if (kind === 'roles') return ok({ roles: v.roleNames().map((n) => roleJson(existing(v.role(n), n))) });
        const users = v.userNames().map((n) => {
          const u = v.user(n);
          if (u === undefined) throw new CorruptEntry(n);
          return userWithRoles(u, v, true);
        });
        return ok({ users: users.length === 0 ? null : users });
      }),
      true,
    );
  }

  private async serveOne(req: IncomingMessage, res: ServerResponse, method: string, kind: 'users' | 'roles', name: string): Promise<void> {
    if (!allowMethod(res, method, ['GET', 'PUT', 'DELETE'])) {
      req.resume();
      return;
    }
    const body = method === 'PUT' ? await readBody(req) : (req.resume(), undefined);
    const data = await this.read();
    if (!(await this.rootAccess(data, req))) {
      this.writeNoAuth(res);
      return;
    }
    let reply: Reply;
    if (kind === 'users') {
      if (method === 'GET') {
        const v = new View(data, this.keys);
        reply = answer(() => {
          const u = v.user(name);
          if (u === undefined) throw new AuthFailure(404, `auth: User ${name} does not exist.`);
          return ok(userWithRoles(u, v, false));
        });
      } else if (method === 'DELETE') {
        reply = await this.write(data, (v) => {
          if (v.enabled() && name === ROOT) throw new AuthFailure(403, 'auth: Cannot delete root user while auth is enabled.');
          if (!v.hasUser(name)) throw new AuthFailure(404, `auth: User ${name} does not exist`);
          return { reply: { status: 200, body: '' }, writes: [{ del: this.keys.users + name }] };
        });
      } else {
        reply = await this.putUser(data, name, body);
      }
    } else if (method === 'GET') {
      const v = new View(data, this.keys);
      reply = answer(() => ok(roleJson(existing(v.role(name), name))));
    } else if (method === 'DELETE') {
      reply = await this.write(data, (v) => {
        if (name === ROOT) throw new AuthFailure(403, `auth: Cannot modify role ${ROOT}: is root role.`);
        if (!v.hasRole(name)) throw new AuthFailure(404, `auth: Role ${name} doesn't exist.`);
        return { reply: { status: 200, body: '' }, writes: [{ del: this.keys.roles + name }] };
      });
    } else {
      reply = await this.putRole(data, name, body);
    }
    this.send(res, reply, true);
  }

  private async putUser(data: AuthData, name: string, body: string | undefined): Promise<Reply> {
    const u = body === undefined ? undefined : decodeUser(firstJson(body));
    if (u === undefined) return authError(400, 'Invalid JSON in request body.');
    if (u.user !== name) return authError(400, 'User JSON name does not match the name in the URL');
    const changeRoles = len(u.grant) !== 0 || len(u.revoke) !== 0;
    if (changeRoles && len(u.roles) !== 0) return authError(400, 'User JSON contains both roles and grant/revoke');
    // v2 hashes the new password before it looks at the stored user; so does this, once for all retries.
    const hashed = u.password === '' ? '' : await hashPassword(u.password);
    const key = this.keys.users + name;
    const create = (v: View): Outcome => {
      const nu = cloneUser(u);
      if (nu.user === ROOT) attachRootRole(nu);
      if (nu.password === '') throw new AuthFailure(400, `auth: Cannot create user ${nu.user} with an empty password`);
      nu.password = hashed;
      if (v.hasUser(name)) throw new AuthFailure(409, `auth: User ${nu.user} already exists.`);
      return { reply: { status: 0, body: goJson(userJson({ ...nu, password: '' })) + '\n' }, writes: [{ put: key, value: goJson(userJson(nu)) }] };
    };
    const update = (v: View): Outcome => {
      const old = v.user(name);
      if (old === undefined) throw new AuthFailure(404, `auth: User ${name} does not exist.`);
      const roles = new Set(old.roles ?? []);
      for (const g of u.grant ?? []) {
        if (roles.has(g)) throw new AuthFailure(409, `auth: Granting duplicate role ${g} for user ${u.user}`);
        roles.add(g);
      }
      for (const r of u.revoke ?? []) {
        if (!roles.has(r)) throw new AuthFailure(409, `auth: Revoking ungranted role ${r} for user ${u.user}`);
        roles.delete(r);
      }
      const nu: User = { user: old.user, password: hashed !== '' ? hashed : old.password, roles: goSort([...roles]), grant: null, revoke: null };
      if (sameUser(old, nu)) throw new AuthFailure(400, 'auth: User not updated. Use grant/revoke/password to update the user.');
      return { reply: { status: 200, body: goJson(userJson({ ...nu, password: '' })) + '\n' }, writes: [{ put: key, value: goJson(userJson(nu)) }] };
    };
    return this.write(data, (v) => {
      if (changeRoles) return update(v);
      if (len(u.roles) !== 0) {
        const out = create(v);
        return { ...out, reply: { ...out.reply, status: 200 } };
      }
      if (v.user(name) !== undefined) return update(v);
      const out = create(v);
      return { ...out, reply: { ...out.reply, status: 201 } };
    });
  }

  private async putRole(data: AuthData, name: string, body: string | undefined): Promise<Reply> {
    const r = body === undefined ? undefined : decodeRole(firstJson(body));
    if (r === undefined) return authError(400, 'Invalid JSON in request body.');
    if (r.role !== name) return authError(400, 'Role JSON name does not match the name in the URL');
    const key = this.keys.roles + name;
    if (permsEmpty(r.grant) && permsEmpty(r.revoke)) {
      return this.write(data, (v) => {
        if (r.role === ROOT) throw new AuthFailure(403, `auth: Cannot modify role ${ROOT}: is root role.`);
        if (v.hasRole(name)) throw new AuthFailure(409, `auth: Role ${r.role} already exists.`);
        const text = goJson(roleJson(r));
        return { reply: { status: 201, body: text + '\n' }, writes: [{ put: key, value: text }] };
      });
    }
    if (!permsEmpty(r.permissions)) return authError(400, 'Role JSON contains both permissions and grant/revoke');
    return this.write(data, (v) => {
      if (r.role === ROOT) throw new AuthFailure(403, `auth: Cannot modify role ${ROOT}: is root role.`);
      const old = v.role(name);
      if (old === undefined) throw new AuthFailure(404, `auth: Role ${name} does not exist.`);
      const granted = r.grant === null ? old.permissions.kv : grantPermissions(old.permissions.kv, r.grant.kv);
      const revoked = r.revoke === null ? granted : revokePermissions(granted, r.revoke.kv);
      const nr: Role = { role: old.role, permissions: { kv: revoked }, grant: null, revoke: null };
      if (goJson(roleJson(old)) === goJson(roleJson(nr))) throw new AuthFailure(400, 'auth: Role not updated. Use grant/revoke to update the role.');
      const text = goJson(roleJson(nr));
      return { reply: { status: 200, body: text + '\n' }, writes: [{ put: key, value: text }] };
    });
  }

  /**
   * Runs an auth API write: `decide` looks at the data and returns the answer
   * and the writes; the writes go in one txn that compares every key
   * `decide` read, with the action key. On a lost race the data is read again
   * and `decide` runs again. A decision to fail (AuthFailure) is the answer.
   */
  private async write(data: AuthData, decide: (v: View) => Outcome): Promise<Reply> {
    for (let attempt = 1; ; attempt++) {
      const v = new View(data, this.keys);
      let outcome: Outcome;
      try {
        outcome = decide(v);
      } catch (err) {
        if (err instanceof AuthFailure) return authError(err.status, err.message);
        throw err;
      }
      if (outcome.writes.length === 0) return outcome.reply;
      const ops: RequestOp[] = outcome.writes.map((w) =>
        'put' in w ? { requestPut: { key: Buffer.from(w.put), value: Buffer.from(w.value) } } : { requestDeleteRange: { key: Buffer.from(w.del) } },
      );
      ops.push({ requestPut: { key: Buffer.from(this.keys.act), value: Buffer.from('auth') } });
      const res = await this.client.txn(
        {
          compare: [...v.reads].map(([key, mod]) => ({ result: 'EQUAL' as const, target: 'MOD' as const, key: Buffer.from(key), modRevision: mod })),
          success: ops,
          failure: [],
        },
        { signal: this.closer.signal },
      );
      if (res.succeeded) {
        await this.caughtUp(res.header.revision);
        return outcome.reply;
      }
      if (attempt >= WRITE_ATTEMPTS) throw new Error(`auth write lost the race ${attempt} times`);
      data = await this.read();
    }
  }

  // --- access checks (etcd v2's hasRootAccess / hasKeyPrefixAccess / hasGuestAccess) ---

  private async rootAccess(data: AuthData, req: AuthCaller): Promise<boolean> {
    if (data.enabled?.value !== true) return true;
    const v = new View(data, this.keys);
    const user = !hasAuthorization(req) && this.clientCertAuth ? this.certUser(v, req) : await this.basicUser(v, req);
    return user !== undefined && (user.roles ?? []).includes(ROOT);
  }

  private async keyAccess(data: AuthData, req: AuthCaller, key: string, write: boolean, recursive: boolean): Promise<boolean> {
    const v = new View(data, this.keys);
    let user: User | undefined;
    if (!hasAuthorization(req)) {
      if (this.clientCertAuth) user = this.certUser(v, req);
      if (user === undefined) {
        const guest = quiet(() => v.role(GUEST));
        return guest !== undefined && hasKeyAccess(guest, key, write);
      }
    } else {
      user = await this.basicUser(v, req);
      if (user === undefined) return false;
    }
    for (const name of user.roles ?? []) {
      const role = quiet(() => v.role(name));
      if (role === undefined) continue;
      if (recursive ? hasRecursiveAccess(role, key, write) : hasKeyAccess(role, key, write)) return true;
    }
    return false;
  }

  /** The user of the request's Basic credentials when the password matches. */
  private async basicUser(v: View, req: AuthCaller): Promise<User | undefined> {
    const creds = parseBasicAuth(rawHeader(req.rawHeaders, 'authorization'));
    if (creds === undefined) return undefined;
    const user = quiet(() => v.user(creds.name));
    if (user === undefined) return undefined;
    return (await this.verify(creds.name, creds.password, user.password)) ? user : undefined;
  }

  /** The user named as the common name of the verified client certificate or one of its issuers (v2's --client-cert-auth). */
  private certUser(v: View, req: AuthCaller): User | undefined {
    const socket = req.socket;
    if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
    const seen = new Set<PeerCertificate>();
    let cert: PeerCertificate | undefined = socket.getPeerCertificate(true);
    while (cert !== undefined && cert !== null && Object.keys(cert).length > 0 && !seen.has(cert)) {
      seen.add(cert);
      const cns = cert.subject?.CN as string | string[] | undefined;
      for (const cn of cns === undefined ? [] : Array.isArray(cns) ? cns : [cns]) {
        const user = quiet(() => v.user(cn));
        if (user !== undefined) return user;
      }
      cert = (cert as { issuerCertificate?: PeerCertificate }).issuerCertificate;
    }
    return undefined;
  }

  /** bcrypt check of `password` against `hash`, its result cached (see the class). */
  private verify(name: string, password: string, hash: string): Promise<boolean> {
    if (hash === '') return Promise.resolve(false);
    const key = createHmac('sha256', this.secret).update(JSON.stringify([name, password, hash])).digest('base64');
    const now = Date.now();
    const hit = this.verified.get(key);
    if (hit !== undefined) {
      if (hit.until > now) return Promise.resolve(hit.ok);
      this.verified.delete(key);
    }
    let pending = this.verifying.get(key);
    if (pending === undefined) {
      pending = bcryptCompare(password, hash)
        .catch(() => false)
        .then((ok) => {
          this.verifying.delete(key);
          if (!this.closed) {
            this.verified.set(key, { ok, until: Date.now() + VERIFIED_TTL_MS });
            while (this.verified.size > VERIFIED_MAX) this.verified.delete(this.verified.keys().next().value!);
          }
          return ok;
        });
      this.verifying.set(key, pending);
    }
    return pending;
  }

  // --- the data: read, watched copy ---

  /** All the auth data, read from the cluster (linearizable). */
  private async read(): Promise<AuthData> {
    const res = await this.client.range(
      { key: Buffer.from(this.keys.base), rangeEnd: Buffer.from(this.keys.end), serializable: false },
      { signal: this.closer.signal },
    );
    const data: AuthData = { revision: res.header.revision, enabled: undefined, users: new Map(), roles: new Map() };
    for (const kv of res.kvs) this.apply(data, kv, false);
    return data;
  }

  /** Puts (or deletes) one key of the auth data in `data`. */
  private apply(data: AuthData, kv: KeyValue, deleted: boolean): void {
    const key = kv.key.toString('utf8');
    const text = kv.value.toString('utf8');
    if (key === this.keys.enabled) {
      data.enabled = deleted ? undefined : { value: text === 'true', mod: kv.modRevision };
    } else if (key.startsWith(this.keys.users)) {
      const name = key.slice(this.keys.users.length);
      if (deleted) data.users.delete(name);
      else data.users.set(name, { value: decodeUser(parseJson(text)), mod: kv.modRevision });
    } else if (key.startsWith(this.keys.roles)) {
      const name = key.slice(this.keys.roles.length);
      if (deleted) data.roles.delete(name);
      else data.roles.set(name, { value: decodeRole(parseJson(text)), mod: kv.modRevision });
    }
  }

  /** The watched copy; read (and its watch started) when there is none. */
  private current(): Promise<AuthData> {
    if (this.closed) return Promise.reject(new Error('the v2 auth is closed'));
    if (this.live !== undefined) return Promise.resolve(this.live);
    this.loading ??= this.startLive().finally(() => (this.loading = undefined));
    return this.loading;
  }

  private async startLive(): Promise<AuthData> {
    const data = await this.read();
    if (this.closed) return data;
    const stream = this.client.openWatchStream({ signal: this.closer.signal });
    this.live = data;
    this.liveStream = stream;
    stream.on('response', (r) => this.onWatch(stream, data, r));
    stream.on('error', (err) => {
      debug('auth watch failed: %s', err.message);
      this.dropLive(stream);
    });
    stream.on('end', () => this.dropLive(stream));
    stream.create({ key: Buffer.from(this.keys.base), rangeEnd: Buffer.from(this.keys.end), startRevision: data.revision + 1, watchId: 1 });
    return data;
  }

  private onWatch(stream: WatchStream, data: AuthData, r: WatchResponse): void {
    if (stream !== this.liveStream) return;
    if (r.canceled || r.compactRevision > 0) {
      debug('auth watch canceled (%s; compacted at %d)', r.cancelReason, r.compactRevision);
      this.dropLive(stream);
      return;
    }
    for (const ev of r.events) {
      // The watch starts after the revision read: every event is new (a txn's events share one revision).
      this.apply(data, ev.kv, ev.type === 'DELETE');
      data.revision = Math.max(data.revision, ev.kv.modRevision);
    }
    if (this.waiters.length > 0) {
      const done = this.waiters.filter((w) => w.revision <= data.revision);
      this.waiters = this.waiters.filter((w) => w.revision > data.revision);
      for (const w of done) w.done();
    }
  }

  /** Forgets the watched copy (the next check reads the data again). */
  private dropLive(stream?: WatchStream): void {
    if (stream !== undefined && stream !== this.liveStream) return;
    this.liveStream?.close();
    this.liveStream = undefined;
    this.live = undefined;
    for (const w of this.waiters.splice(0)) w.done();
  }

  /** Resolves once the watched copy holds revision `revision` (or has been dropped, or not read yet). */
  private async caughtUp(revision: number): Promise<void> {
    // A copy being read right now may predate the write; its watch then brings it.
    if (this.loading !== undefined) await this.loading.catch(() => undefined);
    const live = this.live;
    if (live === undefined || live.revision >= revision) return;
    await new Promise<void>((resolve) => {
      const waiter = {
        revision,
        done: (): void => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        if (this.live === live) this.dropLive();
        resolve();
      }, CATCH_UP_MS);
      timer.unref();
      this.waiters.push(waiter);
    });
  }

  // --- answers ---

  private send(res: ServerResponse, reply: Reply, withClusterId: boolean): void {
    if (res.headersSent || res.destroyed) return;
    const headers: Record<string, string> = { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(reply.body)) };
    const id = withClusterId ? this.clusterId?.() : undefined;
    if (id !== undefined) headers['X-Etcd-Cluster-Id'] = id;
    res.writeHead(reply.status, headers);
    res.end(reply.body);
  }

  /** v2's 401 outside /v2/keys: `{"message":"Insufficient credentials"}`, no WWW-Authenticate. */
  private writeNoAuth(res: ServerResponse): void {
    this.send(res, authError(401, 'Insufficient credentials'), false);
  }

}

// --- helpers: answers ---

function ok(value: unknown): Reply {
  return { status: 200, body: goJson(value) + '\n' };
}

function authError(status: number, message: string): Reply {
  return { status, body: goJson({ message }) };
}

/** Runs a read-only answer: an AuthFailure is its error answer, a corrupt entry a 500. */
function answer(fn: () => Reply): Reply {
  try {
    return fn();
  } catch (err) {
    if (err instanceof AuthFailure) return authError(err.status, err.message);
    throw err;
  }
}

/** A user or role name native v2 lists: its store keeps each as a node, and leaves hidden (`_`) ones out of listings. */
function listed(name: string): boolean {
  return !name.startsWith('_');
}

/** v2's 405: `Allow` and Go's plain-text "Method Not Allowed". */
function allowMethod(res: ServerResponse, method: string, allowed: readonly string[]): boolean {
  if (allowed.includes(method)) return true;
  writeMethodNotAllowed(res, allowed.join(','));
  return false;
}

function existing(role: Role | undefined, name: string): Role {
  if (role === undefined) throw new AuthFailure(404, `auth: Role ${name} does not exist.`);
  return role;
}

/** `{"user", "roles": [role objects]}`; `skipMissing`: a role that does not exist is left out (the list) or fails (one user). */
function userWithRoles(u: User, v: View, skipMissing: boolean): object {
  const roles: object[] = [];
  for (const name of u.roles ?? []) {
    const role = skipMissing ? quiet(() => v.role(name)) : v.role(name);
    if (role === undefined) {
      if (skipMissing) continue;
      throw new AuthFailure(404, `auth: Role ${name} does not exist.`);
    }
    roles.push(roleJson(role));
  }
  return roles.length === 0 ? { user: u.user } : { user: u.user, roles };
}

// --- helpers: the data ---

function cloneUser(u: User): User {
  return { user: u.user, password: u.password, roles: u.roles && [...u.roles], grant: u.grant && [...u.grant], revoke: u.revoke && [...u.revoke] };
}

function clonePerms(p: Permissions): Permissions {
  return { kv: { read: p.kv.read && [...p.kv.read], write: p.kv.write && [...p.kv.write] } };
}

function cloneRole(r: Role): Role {
  return { role: r.role, permissions: clonePerms(r.permissions), grant: r.grant && clonePerms(r.grant), revoke: r.revoke && clonePerms(r.revoke) };
}

function attachRootRole(u: User): void {
  if (u.roles === null) u.roles = [ROOT];
  else if (!u.roles.includes(ROOT)) u.roles.push(ROOT);
}

function len(list: StrList): number {
  return list === null ? 0 : list.length;
}

function permsEmpty(p: Permissions | null): boolean {
  return p === null || (len(p.kv.read) === 0 && len(p.kv.write) === 0);
}

function sameList(a: StrList, b: StrList): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Go's reflect.DeepEqual of two users (nil and empty lists differ). */
function sameUser(a: User, b: User): boolean {
  return a.user === b.user && a.password === b.password && sameList(a.roles, b.roles) && sameList(a.grant, b.grant) && sameList(a.revoke, b.revoke);
}

function grantPermissions(rw: RWPermission, n: RWPermission): RWPermission {
  const read = new Set(rw.read ?? []);
  for (const r of n.read ?? []) {
    if (read.has(r)) throw new AuthFailure(409, `auth: Granting duplicate read permission ${r}`);
    read.add(r);
  }
  const write = new Set(rw.write ?? []);
  for (const w of n.write ?? []) {
    if (write.has(w)) throw new AuthFailure(409, `auth: Granting duplicate write permission ${w}`);
    write.add(w);
  }
  return { read: goSort([...read]), write: goSort([...write]) };
}

function revokePermissions(rw: RWPermission, n: RWPermission): RWPermission {
  const read = new Set(rw.read ?? []);
  for (const r of n.read ?? []) read.delete(r);
  const write = new Set(rw.write ?? []);
  for (const w of n.write ?? []) write.delete(w);
  return { read: goSort([...read]), write: goSort([...write]) };
}

/** v2's simpleMatch: a pattern ending in '*' matches the keys it prefixes, any other only itself. */
function hasKeyAccess(role: Role, key: string, write: boolean): boolean {
  if (role.role === ROOT) return true;
  const list = (write ? role.permissions.kv.write : role.permissions.kv.read) ?? [];
  return list.some((p) => (p.endsWith('*') ? key.startsWith(p.slice(0, -1)) : p !== '' && key === p));
}

/** v2's prefixMatch: only patterns ending in '*' grant a recursive request. */
function hasRecursiveAccess(role: Role, key: string, write: boolean): boolean {
  if (role.role === ROOT) return true;
  const list = (write ? role.permissions.kv.write : role.permissions.kv.read) ?? [];
  return list.some((p) => p.endsWith('*') && key.startsWith(p.slice(0, -1)));
}

/** Go's sort.Strings: byte order of the UTF-8 encoding. */
function goSort(list: string[]): string[] {
  return list.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

/** `fn()`, or undefined when it throws (a corrupt entry counts as none, as v2's checks skip what they cannot read). */
function quiet<T>(fn: () => T | undefined): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

async function hashPassword(password: string): Promise<string> {
  // Go's bcrypt writes "$2a$"; bcryptjs "$2b$" (the same algorithm): keep v2's spelling.
  const salt = (await genSalt(BCRYPT_COST)).replace(/^\$2b\$/, '$2a$');
  return bcryptHash(password, salt);
}

// --- helpers: JSON as Go's encoding/json reads and writes it ---

/** The JSON objects of a user and a role, in Go's field order with its omitempty rules. */
function userJson(u: User): object {
  const out: Record<string, unknown> = { user: u.user };
  if (u.password !== '') out.password = u.password;
  out.roles = u.roles;
  if (len(u.grant) !== 0) out.grant = u.grant;
  if (len(u.revoke) !== 0) out.revoke = u.revoke;
  return out;
}

function permsJson(p: Permissions): object {
  return { kv: { read: p.kv.read, write: p.kv.write } };
}

function roleJson(r: Role): object {
  const out: Record<string, unknown> = { role: r.role, permissions: permsJson(r.permissions) };
  if (r.grant !== null) out.grant = permsJson(r.grant);
  if (r.revoke !== null) out.revoke = permsJson(r.revoke);
  return out;
}

/** JSON as Go's encoder writes it: <, >, &, U+2028/9 and control characters as \u escapes. */
function goJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return goString(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `[${value.map(goJson).join(',')}]`;
  const parts: string[] = [];
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (v !== undefined) parts.push(`${goString(k)}:${goJson(v)}`);
  }
  return `{${parts.join(',')}}`;
}

function goString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || ch === '<' || ch === '>' || ch === '&' || c === 0x2028 || c === 0x2029) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else if (c >= 0xd800 && c <= 0xdfff) out += '\ufffd';
    else out += ch;
  }
  return `${out}"`;
}

const INVALID = Symbol('invalid JSON');
type Parsed = unknown;

function parseJson(text: string): Parsed {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return INVALID;
  }
}

/** The first JSON value of `text`, as Go's json.Decoder.Decode reads it (what follows is not looked at); INVALID if none. */
function firstJson(text: string): Parsed {
  let i = 0;
  while (i < text.length && ' \t\r\n'.includes(text[i]!)) i++;
  if (i === text.length) return INVALID;
  const start = i;
  const first = text[i]!;
  if (first === '{' || first === '[') {
    let depth = 0;
    let inString = false;
    for (; i < text.length; i++) {
      const ch = text[i]!;
      if (inString) {
        if (ch === '\\') i++;
        else if (ch === '"') inString = false;
      } else if (ch === '"') inString = true;
      else if (ch === '{' || ch === '[') depth++;
      else if (ch === '}' || ch === ']') {
        depth--;
        if (depth === 0) return parseJson(text.slice(start, i + 1));
      }
    }
    return INVALID;
  }
  if (first === '"') {
    for (i++; i < text.length; i++) {
      if (text[i] === '\\') i++;
      else if (text[i] === '"') return parseJson(text.slice(start, i + 1));
    }
    return INVALID;
  }
  const m = /^(?:true|false|null|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(text.slice(start));
  return m === null ? INVALID : parseJson(m[0]);
}

/** The value of field `name` in a JSON object as Go matches it: the exact key, else one equal but for case. */
function fields(obj: Record<string, unknown>, names: readonly string[]): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [k, v] of Object.entries(obj)) {
    const name = names.find((n) => n === k) ?? names.find((n) => n.toLowerCase() === k.toLowerCase());
    if (name !== undefined) out.set(name, v);
  }
  return out;
}

class TypeMismatch extends Error {}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function strField(v: unknown, current: string): string {
  if (v === null) return current;
  if (typeof v !== 'string') throw new TypeMismatch();
  return v;
}

function listField(v: unknown, current: StrList): StrList {
  if (v === null) return null;
  if (v === undefined) return current;
  if (!Array.isArray(v)) throw new TypeMismatch();
  return v.map((x) => {
    if (x === null) return '';
    if (typeof x !== 'string') throw new TypeMismatch();
    return x;
  });
}

function decodeRW(v: unknown, into: RWPermission): RWPermission {
  if (v === null) return into;
  if (!isObject(v)) throw new TypeMismatch();
  const f = fields(v, ['read', 'write']);
  return { read: f.has('read') ? listField(f.get('read'), into.read) : into.read, write: f.has('write') ? listField(f.get('write'), into.write) : into.write };
}

function decodePerms(v: unknown, into: Permissions): Permissions {
  if (v === null) return into;
  if (!isObject(v)) throw new TypeMismatch();
  const f = fields(v, ['kv']);
  return { kv: f.has('kv') ? decodeRW(f.get('kv'), into.kv) : into.kv };
}

function emptyPerms(): Permissions {
  return { kv: { read: null, write: null } };
}

/** A User from JSON as Go decodes one (null: the zero user); undefined when Go would fail. */
function decodeUser(v: Parsed): User | undefined {
  const u: User = { user: '', password: '', roles: null, grant: null, revoke: null };
  if (v === null) return u;
  if (!isObject(v)) return undefined;
  try {
    const f = fields(v, ['user', 'password', 'roles', 'grant', 'revoke']);
    if (f.has('user')) u.user = strField(f.get('user'), u.user);
    if (f.has('password')) u.password = strField(f.get('password'), u.password);
    if (f.has('roles')) u.roles = listField(f.get('roles'), u.roles);
    if (f.has('grant')) u.grant = listField(f.get('grant'), u.grant);
    if (f.has('revoke')) u.revoke = listField(f.get('revoke'), u.revoke);
    return u;
  } catch {
    return undefined;
  }
}

/** A Role from JSON as Go decodes one; undefined when Go would fail. */
function decodeRole(v: Parsed): Role | undefined {
  const r: Role = { role: '', permissions: emptyPerms(), grant: null, revoke: null };
  if (v === null) return r;
  if (!isObject(v)) return undefined;
  try {
    const f = fields(v, ['role', 'permissions', 'grant', 'revoke']);
    if (f.has('role')) r.role = strField(f.get('role'), r.role);
    if (f.has('permissions')) r.permissions = decodePerms(f.get('permissions'), r.permissions);
    if (f.has('grant')) r.grant = f.get('grant') === null ? null : decodePerms(f.get('grant'), emptyPerms());
    if (f.has('revoke')) r.revoke = f.get('revoke') === null ? null : decodePerms(f.get('revoke'), emptyPerms());
    return r;
  } catch {
    return undefined;
  }
}

// --- helpers: HTTP ---

function hasAuthorization(req: AuthCaller): boolean {
  const h = rawHeader(req.rawHeaders, 'authorization');
  return h !== undefined && h !== '';
}

/** Go's Request.BasicAuth: "Basic " (any case), standard base64 with padding, user and password split at the first ':'. */
function parseBasicAuth(header: string | undefined): { name: string; password: string } | undefined {
  if (header === undefined || header.length < 6 || header.slice(0, 6).toLowerCase() !== 'basic ') return undefined;
  const b64 = header.slice(6).replace(/[\r\n]/g, '');
  if (b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) return undefined;
  const text = Buffer.from(b64, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) return undefined;
  return { name: text.slice(0, colon), password: text.slice(colon + 1) };
}

/** Go's path.Clean of an absolute path (no trailing slash but for "/"). */
function cleanPath(p: string): string {
  const n = posix.normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/** Go's ServeMux cleanPath: path.Clean, keeping a trailing slash. */
function goCleanPath(p: string): string {
  const n = cleanPath(p);
  return p.endsWith('/') && n !== '/' ? `${n}/` : n;
}

/** A path escaped as Go's url.URL.String() writes one (unreserved characters and $&+,/:;=@ kept). */
function escapeGoPath(p: string): string {
  let out = '';
  for (const byte of Buffer.from(p)) {
    const ch = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-_.~$&+,/:;=@]/.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Go's html.EscapeString. */
function htmlEscape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&#34;', "'": '&#39;' })[c]!);
}

/** %XX escapes decoded as Go's URL parser does; undefined for a malformed escape (Go's server answers 400). */
function unescapePath(raw: string): string | undefined {
  if (!raw.includes('%')) return raw;
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    if (ch === '%') {
      const hex = raw.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) return undefined;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      for (const b of Buffer.from(ch)) bytes.push(b);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** The request body (undefined past MAX_BODY_BYTES: the rest is read and dropped). */
function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.once('end', () => resolve(size > MAX_BODY_BYTES ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.once('error', () => resolve(undefined));
    req.once('close', () => resolve(size > MAX_BODY_BYTES || !req.complete ? undefined : Buffer.concat(chunks).toString('utf8')));
  });
}
