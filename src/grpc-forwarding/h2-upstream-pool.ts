import { connect, constants } from 'node:http2';
import type { ClientHttp2Session, SecureClientSessionOptions } from 'node:http2';
import createDebug from 'debug';
import type { Endpoint } from '../balancer/endpoint.js';
import { tlsConnectOptions } from '../tls-options.js';
import type { UpstreamTls } from '../tls-options.js';

const debug = createDebug('etcd-v2-proxy:grpc');

/**
 * One HTTP/2 connection (a node:http2 `ClientHttp2Session`) per member,
 * shared by every gRPC call forwarded to that member, as a gRPC client
 * keeps one channel per address. A call waits for the connection once;
 * later calls on it start at once.
 */

/** Told when the member's connection is usable, or could not be made. */
export interface SessionWaiter {
  /** The connection is up: open the call's stream on it now. */
  sessionReady(session: ClientHttp2Session): void;
  /** No connection could be made (refused, dial timeout, TLS refused): the call never reached the member. */
  sessionFailed(err: Error): void;
}

/** Options of {@link H2UpstreamPool}. */
export interface H2UpstreamPoolOptions {
  /** ms a connection may take to be made, TLS included. Default: 1000 (etcd flag `--proxy-dial-timeout`). */
  dialTimeout: number;
  /** ms a connection with no call on it is kept. Default: 30000. */
  idleTimeout: number;
  /** ms between HTTP/2 PINGs on a member's connection while calls are open on it. */
  keepaliveTime: number;
  /** ms a PING may go unanswered before the connection is taken for dead (a partitioned or frozen member keeps its TCP connection open). */
  keepaliveTimeout: number;
  /** TLS towards `https://` members (ALPN `h2` is always offered). */
  tls: UpstreamTls | undefined;
  /** A connection that was up broke (not closed by this pool, nor by a GOAWAY): the member is likely gone. */
  onLost: (endpoint: Endpoint, err: Error) => void;
}

/** HTTP/2 settings towards the members: larger windows than HTTP/2's 64 KiB, so that one stream is not held to 64 KiB per round trip. */
const UPSTREAM_SETTINGS = { initialWindowSize: 1 << 20, enablePush: false };
/** The connection-level receive window: many streams share it. */
const CONNECTION_WINDOW = 16 << 20;

/** The connection to one member. */
class MemberSession {
  readonly session: ClientHttp2Session;
  connected = false;
  /** Closed by the pool (idle, endpoint gone, pool closed), or the member sent GOAWAY: not a failure. */
  leaving = false;
  /** Calls waiting for the connection. */
  waiters: SessionWaiter[] = [];
  /** Calls using it. */
  streams = 0;
  private dialTimer: NodeJS.Timeout | undefined;
  /** The next PING, or the wait for its answer. */
  keepaliveTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly pool: H2UpstreamPool,
    readonly endpoint: Endpoint,
    readonly options: H2UpstreamPoolOptions,
  ) {
    const secure = endpoint.url.startsWith('https:');
    const connectOptions: SecureClientSessionOptions = {
      settings: UPSTREAM_SETTINGS,
      maxSessionMemory: 64,
      ...(secure ? { ...tlsConnectOptions(options.tls), ALPNProtocols: ['h2'] } : {}),
    };
    this.session = connect(endpoint.url, connectOptions);
    const s = this.session as ClientHttp2Session & { [MEMBER]?: MemberSession };
    s[MEMBER] = this;
    s.on('connect', onConnect);
    s.on('error', onError);
    s.on('close', onClose);
    s.on('goaway', onGoaway);
    s.setTimeout(options.idleTimeout, onIdle);
    this.dialTimer = setTimeout(onDialTimeout, options.dialTimeout, this, options.dialTimeout);
    this.dialTimer.unref();
  }

  connectedNow(): void {
    clearTimeout(this.dialTimer);
    this.connected = true;
    this.session.setLocalWindowSize(CONNECTION_WINDOW);
    // Idle connections must not keep the process alive; the listeners do that.
    this.session.unref();
    this.keepaliveTimer = setTimeout(onKeepalive, this.options.keepaliveTime, this);
    this.keepaliveTimer.unref();
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.sessionReady(this.session);
  }

  failed(err: Error): void {
    clearTimeout(this.dialTimer);
    clearTimeout(this.keepaliveTimer);
    this.pool.forget(this);
    const waiters = this.waiters;
    this.waiters = [];
    if (!this.connected) {
      debug('connecting to %s failed: %s', this.endpoint.url, err.message);
      for (const w of waiters) w.sessionFailed(err);
    } else if (!this.leaving) {
      debug('connection to %s lost: %s', this.endpoint.url, err.message);
      this.pool.lost(this.endpoint, err);
    }
    this.leaving = true;
    if (!this.session.destroyed) this.session.destroy();
  }

  /**
   * Closes it: at once, or once its calls are over (`graceful`). A graceful
   * close waits for them with the session still open, not closing: node
   * sends no PING on a closing session, and the keepalive must still find
   * out a member that stops answering under an open watch.
   */
  close(graceful: boolean): void {
    this.leaving = true;
    this.pool.forget(this);
    if (!graceful || !this.connected) this.failed(new Error('the proxy closed the connection'));
    else if (this.streams === 0) this.session.close();
  }
}

const MEMBER = Symbol('member');

function memberOf(session: ClientHttp2Session): MemberSession {
  return (session as ClientHttp2Session & { [MEMBER]: MemberSession })[MEMBER];
}

function onConnect(this: ClientHttp2Session): void {
  memberOf(this).connectedNow();
}

function onError(this: ClientHttp2Session, err: Error): void {
  memberOf(this).failed(err);
}

function onClose(this: ClientHttp2Session): void {
  const m = memberOf(this);
  m.failed(new Error(m.connected ? 'the member closed the connection' : 'the member closed the connection before HTTP/2 was set up'));
}

function onGoaway(this: ClientHttp2Session, code: number): void {
  const m = memberOf(this);
  // The member is going away (graceful stop, or too many streams): calls on it finish, new ones get a new connection.
  debug('%s sent GOAWAY (code %d)', m.endpoint.url, code);
  m.leaving = code === constants.NGHTTP2_NO_ERROR;
  m.pool.forget(m);
  // Node closes the session after this event, and sends no PING on a closing session: one last PING now, so that a
  // member that stops answering while its calls finish is still found out.
  if (m.connected && m.streams > 0 && !this.destroyed && !this.closed) {
    clearTimeout(m.keepaliveTimer);
    ping(m);
  }
}

function onIdle(this: ClientHttp2Session): void {
  const m = memberOf(this);
  // Waiting calls count in `streams` too.
  if (m.streams === 0) m.close(true);
}

/**
 * Keepalive: while calls are open on the connection, a PING every
 * `keepaliveTime`; no answer within `keepaliveTimeout` and the connection is
 * dead: destroyed, so that its calls end with UNAVAILABLE, and reported as
 * lost (the balancer marks the member down). Without it a member cut off
 * by the network, or stopped, keeps its TCP connection open and its calls
 * (a watch has no deadline) wait forever. No PING on a connection with no
 * call: etcd counts those against the client (gRPC's keepalive policy,
 * `PermitWithoutStream` false) and closes the connection.
 */
function onKeepalive(m: MemberSession): void {
  const { session } = m;
  // Closing (after a GOAWAY): node sends no more PINGs on it; the one sent with the GOAWAY is the last.
  if (session.destroyed || session.closed) return;
  if (m.streams === 0) {
    m.keepaliveTimer = setTimeout(onKeepalive, m.options.keepaliveTime, m);
    m.keepaliveTimer.unref();
    return;
  }
  ping(m);
}

/** One PING, and the wait for its answer. */
function ping(m: MemberSession): void {
  const { session } = m;
  const sent = session.ping((err) => {
    if (err !== null || session.destroyed) return;
    clearTimeout(m.keepaliveTimer);
    m.keepaliveTimer = setTimeout(onKeepalive, m.options.keepaliveTime, m);
    m.keepaliveTimer.unref();
  });
  m.keepaliveTimer = sent ? setTimeout(onPingTimeout, m.options.keepaliveTimeout, m) : setTimeout(onKeepalive, m.options.keepaliveTime, m);
  m.keepaliveTimer.unref();
}

function onPingTimeout(m: MemberSession): void {
  const ms = m.options.keepaliveTimeout;
  m.failed(Object.assign(new Error(`no answer to an HTTP/2 PING within ${ms} ms`), { code: 'ETIMEDOUT' }));
}

function onDialTimeout(m: MemberSession, ms: number): void {
  if (m.connected) return;
  m.failed(Object.assign(new Error(`dial timeout: no HTTP/2 connection within ${ms} ms`), { code: 'ETIMEDOUT' }));
}

/**
 * The members' HTTP/2 connections. Calls ask for their member's with
 * {@link H2UpstreamPool.acquire} and say when they are over with
 * {@link H2UpstreamPool.release}.
 */
export class H2UpstreamPool {
  private readonly byEndpoint = new Map<Endpoint, MemberSession>();
  private closed = false;

  constructor(private readonly options: H2UpstreamPoolOptions) {}

  /**
   * Hands `waiter` the member's connection: at once when it is up, else once
   * it is made (or could not be). Pair a ready session with {@link H2UpstreamPool.release}.
   */
  acquire(endpoint: Endpoint, waiter: SessionWaiter): void {
    if (this.closed) {
      waiter.sessionFailed(new Error('the proxy is closing'));
      return;
    }
    let m = this.byEndpoint.get(endpoint);
    if (m === undefined) {
      m = new MemberSession(this, endpoint, this.options);
      this.byEndpoint.set(endpoint, m);
    }
    m.streams++;
    if (m.connected) waiter.sessionReady(m.session);
    else m.waiters.push(waiter);
  }

  /** A call that got `session` from {@link H2UpstreamPool.acquire} is over. */
  release(session: ClientHttp2Session): void {
    const m = memberOf(session);
    m.streams--;
    // Closed gracefully while calls were open: the last one is over.
    if (m.leaving && m.streams === 0 && !session.closed && !session.destroyed) session.close();
  }

  /**
   * A call that waits for `endpoint`'s connection is over (its client
   * cancelled): it no longer waits, nor counts as a call on the connection,
   * which may then go idle. No-op when it is not waiting.
   */
  withdraw(endpoint: Endpoint, waiter: SessionWaiter): void {
    const m = this.byEndpoint.get(endpoint);
    const i = m === undefined ? -1 : m.waiters.indexOf(waiter);
    if (i === -1) return;
    m!.waiters.splice(i, 1);
    m!.streams--;
  }

  /** Closes the connections of members no longer in `endpoints`, once their calls are over. */
  retain(endpoints: readonly Endpoint[]): void {
    for (const [endpoint, m] of this.byEndpoint) if (!endpoints.includes(endpoint)) m.close(true);
  }

  /** Closes every connection at once (the calls on them are ended by the forwarder first). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of [...this.byEndpoint.values()]) m.close(false);
  }

  /** @internal */
  forget(m: MemberSession): void {
    if (this.byEndpoint.get(m.endpoint) === m) this.byEndpoint.delete(m.endpoint);
  }

  /** @internal */
  lost(endpoint: Endpoint, err: Error): void {
    if (!this.closed) this.options.onLost(endpoint, err);
  }
}
