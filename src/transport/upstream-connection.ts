import { isIP, connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { ConnectionOptions } from 'node:tls';
import { EtcdProxyError } from '../errors.js';
import { CONTENT_LENGTH, CONTROL, CRLF2, TOKEN, withoutOws } from './http1-syntax.js';

/**
 * The HTTP/1.1 client side of the proxy: keep-alive connections to one
 * endpoint, each carrying one request at a time (or, when asked, a few plain
 * GETs pipelined), and a parser for etcd's answers that hands the body on as
 * it arrives.
 *
 * Why not node:http's client: it builds a `ClientRequest`, an
 * `IncomingMessage`, a headers object and a dozen listeners per request, and
 * in a bare forwarder it cost about 74 ms of CPU per 1,000 requests against
 * 27 ms for the whole server side (docs/benchmarks.md). This proxy writes a
 * request head it already has as a string, and reads back only what it needs:
 * the status, the raw headers and the body's framing (Content-Length,
 * chunked, or until close). The body passes through without being parsed.
 */

/*
 * FRAMING RULES: how the parser below reads a member's answers: as strict as
 * node's own client (llhttp, not lenient), and stricter where an answer
 * could be read two ways. "node:" says what node 20's client does with the
 * same bytes (checked by hand against node 20.20). An answer that breaks a
 * rule fails its request with an UpstreamFramingError: the client gets a 502
 * in etcd's JSON shape when nothing of the answer reached it yet, and its
 * response is cut otherwise; requests pipelined behind it are sent again on
 * a new connection (nothing of their answers was read); the connection is
 * destroyed, never put back in the pool or given another request. What one
 * answer's framing leaves over is never read as another request's answer.
 *
 * Heads (RFC 9112 sections 4, 5):
 *  - Status line `HTTP/1.0` or `HTTP/1.1`, a status 100-999, an optional
 *    reason without control characters; 101 is refused (no upgrade is
 *    forwarded). Header lines: a token, a colon, a value without control
 *    characters but HTAB; no obs-fold, no space before the colon, no bare CR
 *    or LF. node: the same errors.
 *  - A head (status line, header lines, empty line) is at most 64 KiB,
 *    however it arrives: over several reads or in one. Trailer lines count
 *    against the same 64 KiB. node: 16 KiB by default (maxHeaderSize),
 *    "Header overflow"; etcd's heads are a few hundred bytes.
 * Framing (RFC 9112 section 6.3):
 *  - Content-Length: digits only (OWS around them), at most once: two lines,
 *    even equal ones, or a list ("2, 2") are refused. node: "Duplicate
 *    Content-Length", "Invalid character in Content-Length".
 *  - Transfer-Encoding wins over Content-Length; both together are refused.
 *    node: "Content-Length can't be present with Transfer-Encoding".
 *  - Transfer-Encoding must be exactly `chunked`, once, over all its lines.
 *    Any other coding is one this proxy can neither remove nor pass on
 *    (Transfer-Encoding is hop-by-hop), and a final coding other than
 *    chunked makes the body run until the member closes: refused, as are
 *    an empty value, `chunked, chunked` and Transfer-Encoding in an HTTP/1.0
 *    answer (RFC 9112 6.1: faulty framing). node (stricter here than node):
 *    reads `gzip`, `identity` or an empty value until the close, and takes
 *    `gzip, chunked`, `chunked, chunked` and HTTP/1.0 chunked as chunked.
 *  - Chunks: a size of 1-12 hex digits with nothing before it, then only
 *    `;name[=token|"quoted"]` extensions, then CRLF (no spaces or tabs);
 *    chunk data is followed by CRLF; trailer lines are header lines, ended
 *    by an empty line, so that a missing final CRLF shows as the next status
 *    line read as a trailer. node: "Invalid character in chunk size",
 *    "Invalid header token" for the same.
 *  - No body, whatever the headers say, after a HEAD request, a 1xx, 204 or
 *    304 (RFC 9110 6.4.1). A 1xx or 204 that frames one (Transfer-Encoding,
 *    or a Content-Length, other than 0 for a 204; RFC 9110 8.6 and RFC 9112
 *    6.1 forbid them) is refused: its "body" could only be read as the next
 *    answer. node: ignores them, and takes the bytes after a 100 with a
 *    Content-Length as the final answer. A 304 or HEAD answer may state a
 *    length (RFC 9110 8.6): complete at its head; when GETs are pipelined
 *    behind a 304 that states one, they are sent again on another
 *    connection, and this one is closed after the 304.
 *  - Neither a length nor chunked: the body runs until the member closes;
 *    requests pipelined behind it are sent again elsewhere at once.
 * The connection:
 *  - `Connection: close` (or HTTP/1.0 without keep-alive): nothing more is
 *    read on it; requests pipelined behind the answer are sent again.
 *  - Bytes the connection was not waiting for (past the end of an answer
 *    when no pipelined request waits for the next one, after a
 *    `Connection: close` answer too) fail the answer they follow when they
 *    come in the same read as its end (its head is then not passed on, or
 *    its last piece is held back), and close the connection when they come
 *    later (the answer was complete by every rule, and its client has it).
 *    node: "Data after `Connection: close`", "Expected HTTP/" errors on the
 *    request after its response; nothing later is read on the socket.
 *  - A member that answers a request it was not asked yet is not told from
 *    one that answers the next request: no parser can, which is why nothing
 *    is read as the next answer unless the rules above say where it starts.
 */

/** Why a member's answer was refused: it broke one of the framing rules above. */
export class UpstreamFramingError extends EtcdProxyError {
  declare readonly code: 'ERR_ETCD_PROXY_UPSTREAM_FRAMING';

  constructor(message: string) {
    super('ERR_ETCD_PROXY_UPSTREAM_FRAMING', message);
  }
}

/** The message for bytes the connection was not waiting for. */
const UNEXPECTED_BYTES = 'the member sent bytes after its answer that no request on the connection was waiting for';

/** A chunk-size line: 1-12 hex digits, then extensions `;name` or `;name=value` (a token or a quoted string), nothing else. */
const CHUNK_SIZE_LINE =
  /^([0-9A-Fa-f]{1,12})(?:;[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:=(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"(?:[\t !#-[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"))?)*$/;

/**
 * What a connection reports about the one request it carries. Each call names
 * the connection, so that a handler that moved on to another one can tell.
 */
export interface UpstreamHandler {
  /** Connected (TLS handshake done): the request is being written. */
  onUpstreamConnected(conn: UpstreamConnection): void;
  /** The whole request was handed to the kernel. */
  onUpstreamWritten(conn: UpstreamConnection): void;
  /**
   * The response head; its headers are read from `conn` while this runs
   * ({@link UpstreamConnection.headerList}, or {@link UpstreamConnection.rawHead}).
   * `hasBody`: a body follows; `lengthUnknown`: one without a Content-Length
   * (chunked, or until the member closes), such as a watch that answers its
   * head at once and its event much later.
   * To drop the response, call {@link UpstreamConnection.discard} from here.
   */
  onUpstreamHead(conn: UpstreamConnection, status: number, statusText: string, hasBody: boolean, lengthUnknown: boolean): void;
  /** A piece of the body; return false to pause reading until {@link UpstreamConnection.resume}. */
  onUpstreamData(conn: UpstreamConnection, chunk: Buffer): boolean;
  /** The response is complete. */
  onUpstreamEnd(conn: UpstreamConnection): void;
  /** The request failed (or was aborted); the connection is gone. Called at most once per request. */
  onUpstreamError(conn: UpstreamConnection, err: Error): void;
  /**
   * A pipelined request (see {@link UpstreamPool.acquire}) was written behind
   * another one whose connection can no longer carry it (that one was
   * aborted, or its client is slow, or the member said it closes): nothing
   * of its answer has been read; send it again.
   */
  onUpstreamDetached(conn: UpstreamConnection): void;
}

/** The handler of a pipelined request whose own handler left: its answer is read and dropped, to keep the connection in step. */
const DROP: UpstreamHandler = {
  onUpstreamConnected() {},
  onUpstreamWritten() {},
  onUpstreamHead() {},
  onUpstreamData: () => true,
  onUpstreamEnd() {},
  onUpstreamError() {},
  onUpstreamDetached() {},
};

/** A read timeout (`readTimeout`): the member stayed silent that long while a request was in flight. */
export class UpstreamReadTimeout extends Error {
  constructor(readonly ms: number) {
    super(`read timeout after ${ms} ms`);
  }
}

/** Where and how to connect; shared by the connections of one endpoint. */
export interface UpstreamTarget {
  readonly hostname: string;
  readonly port: number;
  /** TLS options for an `https://` endpoint, undefined for `http://`. */
  readonly tls: ConnectionOptions | undefined;
  /** ms an idle connection is kept. */
  readonly idleTimeout: number;
}

/**
 * How long pipelined GETs wait behind an answer whose client is slow to take
 * it before they are sent again on another connection (see
 * {@link UpstreamConnection.pause}).
 */
export const SLOW_CLIENT_MS = 20;

/** Largest response head accepted (etcd's are a few hundred bytes). */
const MAX_HEAD = 64 * 1024;
const CRLF = Buffer.from('\r\n');
const CONNECTION = Symbol('etcd-v2-proxy.upstream-connection');

/** How parsing goes on after a response head. */
const enum Head {
  /** Stop: the request failed or the handler dropped the response. */
  Stop,
  /** Read on (a body, or the real answer after a 1xx). */
  More,
  /** The response had no body: it is complete. */
  Complete,
}

/** Header lines (CRLF between them) as strict as node's parser: a token, a colon, no control character but HTAB. */
const HEADER_LINES = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*(?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*)*$/;
/**
 * The lower-cased name of the header line at `start` (its colon at
 * `colon`) when it matters to this client or the proxy: the framing, the
 * hop-by-hop headers (RFC 9110 7.6.1), Date and Access-Control-*; undefined
 * for any other. Most names are told apart by length and first letter
 * without making a string.
 */
function notableName(block: string, start: number, colon: number): string | undefined {
  const length = colon - start;
  const first = block.charCodeAt(start) | 0x20;
  let name: string;
  switch (length) {
    case 2:
    case 7:
    case 8:
      if (first !== 0x74 /* t */ && first !== 0x75 /* u */) return undefined;
      name = block.slice(start, colon).toLowerCase();
      return name === 'te' || name === 'trailer' || name === 'trailers' || name === 'upgrade' ? name : undefined;
    case 4:
      if (first !== 0x64 /* d */) return undefined;
      name = block.slice(start, colon).toLowerCase();
      return name === 'date' ? name : undefined;
    case 10:
      if (first !== 0x63 /* c */ && first !== 0x6b /* k */) return undefined;
      name = block.slice(start, colon).toLowerCase();
      return name === 'connection' || name === 'keep-alive' ? name : undefined;
    case 14:
      if (first !== 0x63 /* c */) return undefined;
      name = block.slice(start, colon).toLowerCase();
      return name === 'content-length' ? name : undefined;
    case 17:
      if (first === 0x74 /* t */) {
        name = block.slice(start, colon).toLowerCase();
        return name === 'transfer-encoding' ? name : undefined;
      }
      break;
    default:
      break;
  }
  if (first === 0x70 /* p */ && length >= 16 && length <= 19) {
    name = block.slice(start, colon).toLowerCase();
    return name === 'proxy-connection' || name === 'proxy-authenticate' || name === 'proxy-authorization' ? name : undefined;
  }
  if (first === 0x61 /* a */ && length > 15) {
    name = block.slice(start, colon).toLowerCase();
    return name.startsWith('access-control-') ? name : undefined;
  }
  return undefined;
}

/** `HTTP/1.x NNN reason`, status 100-999. */
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?$/;

const enum Read {
  /** Waiting for (the rest of) a response head. */
  Head,
  /** A body of known length: `remaining` bytes to go. */
  Length,
  /** A chunk-size line. */
  ChunkSize,
  /** Chunk data: `remaining` bytes to go. */
  ChunkData,
  /** The CRLF after chunk data: `remaining` bytes to go. */
  ChunkEnd,
  /** Trailer lines after the last chunk, until an empty line. */
  Trailers,
  /** A body that ends when the member closes the connection. */
  UntilClose,
  /** No request in flight. */
  Idle,
}

/** Keep-alive connections to one endpoint. */
export class UpstreamPool {
  private readonly idle: UpstreamConnection[] = [];
  private closed = false;
  /** The latest TLS session, to resume instead of a full handshake. */
  tlsSession: Buffer | undefined = undefined;

  constructor(readonly target: UpstreamTarget) {}

  /** Connections open (idle and busy). */
  open = 0;

  /** The connection the pipelined GETs of this turn of the event loop are written to, corked until the turn ends. */
  private batch: UpstreamConnection | undefined = undefined;
  /** The batch's requests in one write, once the turn's other callbacks have run. */
  private readonly endBatch = (): void => {
    const conn = this.batch;
    this.batch = undefined;
    conn?.socket.uncork();
  };

  /**
   * A connection for one request: an idle one, or a new one being dialled.
   * With `pipeline` over 1 (a plain GET, see ForwardSettings.pipelineReads),
   * the request may instead be written behind the GETs of this same turn of
   * the event loop on their connection, up to `pipeline` requests on it,
   * all in one write.
   */
  acquire(handler: UpstreamHandler, pipeline = 1): UpstreamConnection {
    if (pipeline > 1) {
      const batch = this.batch;
      if (batch !== undefined && batch.takesBehind(pipeline)) {
        batch.behind.push(handler);
        return batch;
      }
    }
    let conn = this.idle.pop();
    // One the member closed in this same turn of the event loop is not handed out.
    while (conn !== undefined && (conn.socket.destroyed || !conn.socket.writable)) {
      conn.idleIndex = -1;
      conn = this.idle.pop();
    }
    conn ??= new UpstreamConnection(this);
    conn.idleIndex = -1;
    conn.begin(handler, pipeline > 1);
    if (pipeline > 1) {
      if (this.batch === undefined) setImmediate(this.endBatch);
      else this.batch.socket.uncork();
      this.batch = conn;
      conn.socket.cork();
    }
    return conn;
  }

  /** @internal */
  putIdle(conn: UpstreamConnection): void {
    if (this.closed) {
      conn.destroy();
      return;
    }
    conn.idleIndex = this.idle.length;
    conn.idleSince = performance.now();
    this.idle.push(conn);
    // One timer per pool closes the connections idle for idleTimeout (give or take a quarter).
    this.sweeper ??= setInterval(this.sweep, Math.max(50, this.target.idleTimeout / 4)).unref();
  }

  private sweeper: NodeJS.Timeout | undefined = undefined;

  private readonly sweep = (): void => {
    const oldest = performance.now() - this.target.idleTimeout;
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const conn = this.idle[i]!;
      if (conn.idleSince <= oldest) conn.destroy();
    }
    if (this.idle.length === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  };

  /** @internal */
  dropIdle(conn: UpstreamConnection): void {
    const i = conn.idleIndex;
    if (i < 0) return;
    const last = this.idle.pop()!;
    if (last !== conn) {
      this.idle[i] = last;
      last.idleIndex = i;
    }
    conn.idleIndex = -1;
  }

  /** Closes the idle connections now, busy ones when their request ends. */
  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const conn of this.idle.splice(0)) {
      conn.idleIndex = -1;
      conn.destroy();
    }
  }
}

/** One connection to an endpoint; carries one request at a time, or pipelined GETs answered in order. */
export class UpstreamConnection {
  readonly socket: Socket & { [CONNECTION]?: UpstreamConnection };
  /** The request whose answer is read now. */
  handler: UpstreamHandler | undefined = undefined;
  /** Pipelined requests written after `handler`'s, oldest first ({@link DROP} for one whose handler left). */
  readonly behind: UpstreamHandler[] = [];
  /** Index in the pool's idle list, -1 when busy. */
  idleIndex = -1;
  connected = false;
  /** Requests this connection carried before the current one. */
  reused = false;
  private began = false;
  private read = Read.Idle;
  /** The current request is HEAD: its answer has no body whatever its headers say. */
  private headRequest = false;
  private reusable = true;
  private remaining = 0;
  /** Bytes of a head or line that arrived split over packets. */
  private partial: Buffer | undefined = undefined;
  /** The requests whose write callback is still to come, in the order they were written. */
  private readonly unwritten: UpstreamHandler[] = [];
  /** The read timeout of the request in flight, 0 when none; the socket's timeout is the idle one otherwise. */
  readTimeout = 0;
  /** `performance.now()` when the connection went back to the pool. */
  idleSince = 0;
  private readonly onWritten = (err?: Error | null): void => {
    const handler = this.unwritten.shift();
    if (!err && handler !== undefined && (handler === this.handler || this.behind.includes(handler))) handler.onUpstreamWritten(this);
  };

  constructor(readonly pool: UpstreamPool) {
    const { hostname, port, tls } = pool.target;
    let socket: PoolSocket;
    if (tls === undefined) {
      socket = netConnect({ host: hostname, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 1000 });
      socket.on('connect', onSocketConnect);
    } else {
      socket = tlsConnect({
        host: hostname,
        port,
        ...(isIP(hostname) === 0 ? { servername: hostname } : {}),
        ...(pool.tlsSession === undefined ? {} : { session: pool.tlsSession }),
        ...tls,
      });
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 1000);
      socket.on('secureConnect', onSocketConnect);
      socket.on('session', onTlsSession);
    }
    this.socket = socket;
    socket[CONNECTION] = this;
    pool.open++;
    socket.on('data', onSocketData);
    socket.on('end', onSocketEnd);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    socket.on('timeout', onSocketTimeout);
  }

  /** @internal Whether a pipelined GET may be written behind the ones on this connection, `max` requests at most. */
  takesBehind(max: number): boolean {
    return this.pipelined && this.handler !== undefined && this.reusable && this.behind.length + 1 < max && !this.socket.destroyed;
  }

  /** The current request may have pipelined GETs behind it. */
  private pipelined = false;

  /** @internal */
  begin(handler: UpstreamHandler, pipelined: boolean): void {
    this.pipelined = pipelined;
    this.reused = this.began;
    this.began = true;
    this.handler = handler;
    this.read = Read.Head;
    this.reusable = true;
    this.partial = undefined;
  }

  /**
   * Writes the request of `handler` (by default the connection's current
   * one): `head` is the request line and headers, ending with an empty line;
   * `body` the body's chunks, if any.
   */
  send(method: string, head: string | Buffer, body: readonly Buffer[] | undefined, handler = this.handler): void {
    const { socket } = this;
    if (handler === undefined) return;
    if (handler === this.handler) this.headRequest = method === 'HEAD';
    if (this.connected) handler.onUpstreamConnected(this);
    if (handler !== this.handler && !this.behind.includes(handler)) return;
    this.unwritten.push(handler);
    if (body === undefined || body.length === 0) socket.write(head, 'latin1', this.onWritten);
    else {
      socket.cork();
      socket.write(head, 'latin1');
      for (let i = 0; i < body.length - 1; i++) socket.write(body[i]!);
      socket.write(body[body.length - 1]!, this.onWritten);
      socket.uncork();
    }
  }

  /**
   * Pauses reading the body (the client's socket holds more than its
   * high-water mark); the read timeout waits too. Requests pipelined behind
   * this answer are handed back if it has not ended {@link SLOW_CLIENT_MS}
   * after its first pause: a client that takes its answer in a moment (a
   * 16 KiB value always fills node's 16 KiB buffer, then drains at once)
   * holds them up no longer than that, one that does not read at all no
   * longer than that either.
   */
  pause(): void {
    this.socket.pause();
    if (this.readTimeout > 0) this.socket.setTimeout(0);
    if (this.behind.length > 0 && this.slowTimer === undefined) {
      this.slowAnswer = this.answers;
      this.slowTimer = setTimeout(this.onSlowClient, SLOW_CLIENT_MS).unref();
    }
  }

  /** Resumes reading after {@link UpstreamConnection.pause}. */
  resume(): void {
    if (this.readTimeout > 0) this.socket.setTimeout(this.readTimeout);
    this.socket.resume();
  }

  /** Answers completed on this connection; tells {@link onSlowClient} whether the paused one is still being read. */
  private answers = 0;
  /** `answers` when the slow-client timer was armed. */
  private slowAnswer = 0;
  private slowTimer: NodeJS.Timeout | undefined = undefined;
  private readonly onSlowClient = (): void => {
    this.slowTimer = undefined;
    if (this.handler === undefined || this.behind.length === 0) return;
    if (this.answers === this.slowAnswer) this.detach();
    // A later answer paused while the timer ran: it gets its own grace.
    else if (this.socket.isPaused()) this.pause();
  };

  /** Closes the socket and takes the connection out of the pool at once (its 'close' event comes later). */
  destroy(): void {
    this.pool.dropIdle(this);
    this.socket.destroy();
    if (this.slowTimer !== undefined) {
      clearTimeout(this.slowTimer);
      this.slowTimer = undefined;
    }
  }

  /**
   * Drops the current response without a word to its handler. When
   * pipelined requests wait behind it and its end can be told (a length or
   * chunks), it is read to its end and dropped, and their answers follow on
   * this connection (the member answered them already); otherwise the
   * connection is closed and they are sent again.
   */
  discard(): void {
    if (this.reusable && !this.onlyDropsBehind()) {
      this.handler = DROP;
      return;
    }
    this.handler = undefined;
    this.read = Read.Idle;
    this.destroy();
    this.detach();
  }

  /**
   * Hands the requests written behind the current one back to their
   * handlers, to be sent again: this connection will carry no answer after
   * the current one.
   */
  private detach(): void {
    if (this.behind.length === 0) return;
    this.reusable = false;
    for (const handler of this.behind.splice(0)) handler.onUpstreamDetached(this);
  }

  /** Limits how long the member may stay silent during this request (0: no limit). */
  setReadTimeout(ms: number): void {
    this.readTimeout = ms;
    this.socket.setTimeout(ms);
  }

  /**
   * Ends the request `handler` made, if it is still this connection's: the
   * connection is closed and `handler` gets `err`. When it is the answer
   * being read, the requests pipelined behind it are sent again if the
   * member is not at fault (the client left, the proxy is closing), and get
   * `err` too if it is (`memberAtFault`: a deadline passed), so that they
   * move on to the next endpoint rather than wait for the same member again.
   */
  abort(handler: UpstreamHandler, err: Error, memberAtFault = false): void {
    if (this.handler === handler) {
      if (!memberAtFault) this.detach();
      this.fail(err);
      return;
    }
    // A pipelined request: its answer will still come, and is dropped.
    const i = this.behind.indexOf(handler);
    if (i < 0) return;
    this.behind[i] = DROP;
    handler.onUpstreamError(this, err);
    if (this.handler === DROP && this.onlyDropsBehind()) this.fail(err);
  }

  /** No request behind the current answer waits for its own (each left, see {@link DROP}). */
  private onlyDropsBehind(): boolean {
    for (const h of this.behind) if (h !== DROP) return false;
    return true;
  }

  /** @internal The connection failed: its request, and every one behind it, get `err`. */
  fail(err: Error): void {
    const handler = this.handler;
    this.handler = undefined;
    this.read = Read.Idle;
    this.destroy();
    handler?.onUpstreamError(this, err);
    for (const h of this.behind.splice(0)) h.onUpstreamError(this, err);
  }

  /** The member broke the framing rules (see the framing rules at the top of this file): the answer being read fails, the requests pipelined behind it are sent again on another connection, and this one is closed. */
  private violation(message: string): void {
    this.detach();
    this.fail(new UpstreamFramingError(message));
  }

  /** More answers are due on this connection: requests pipelined behind the one being read, on a connection the member keeps open. */
  private awaitsMore(): boolean {
    return this.reusable && this.behind.length > 0;
  }

  /** @internal Feeds bytes from the member to the parser, by the framing rules at the top of this file. */
  parse(chunk: Buffer): void {
    let buf = chunk;
    while (buf.length > 0) {
      const handler = this.handler;
      if (handler === undefined) {
        // Bytes nobody asked for (after a response ended, or on an idle connection): not reusable.
        this.destroy();
        return;
      }
      switch (this.read) {
        case Read.Head: {
          buf = this.joined(buf);
          const end = buf.indexOf(CRLF2);
          if (end < 0) {
            this.keep(buf, `the member's response head is over ${MAX_HEAD} bytes`);
            return;
          }
          // However it arrived: in pieces (keep() counts them) or in one read.
          if (end + 4 > MAX_HEAD) {
            this.violation(`the member's response head is over ${MAX_HEAD} bytes`);
            return;
          }
          const head = buf.toString('latin1', 0, end);
          const bytes = buf;
          buf = buf.subarray(end + 4);
          const next = this.onHead(head, bytes, handler, buf.length);
          if (next === Head.Stop) return;
          if (next === Head.Complete) {
            if (!this.finish(buf.length > 0)) return;
          }
          break;
        }
        case Read.Length:
        case Read.ChunkData: {
          const n = Math.min(this.remaining, buf.length);
          // The body ends in this read and more bytes follow that no request waits for: its last piece is not passed on.
          if (this.read === Read.Length && n === this.remaining && n < buf.length && !this.awaitsMore()) {
            this.violation(UNEXPECTED_BYTES);
            return;
          }
          const data = n === buf.length ? buf : buf.subarray(0, n);
          buf = n === buf.length ? EMPTY : buf.subarray(n);
          this.remaining -= n;
          const more = handler.onUpstreamData(this, data);
          if (this.handler !== handler) return;
          if (!more) this.pause();
          if (this.remaining === 0) {
            if (this.read === Read.Length) {
              if (!this.finish(buf.length > 0)) return;
              break;
            }
            this.read = Read.ChunkEnd;
            this.remaining = 2;
          }
          break;
        }
        case Read.ChunkEnd: {
          // The CRLF that ends chunk data: `remaining` is 2 before the CR, 1 before the LF.
          if (buf[0] !== (this.remaining === 2 ? 0x0d : 0x0a)) {
            this.violation('the member sent chunk data not followed by CRLF (longer than its chunk size)');
            return;
          }
          buf = buf.subarray(1);
          if (--this.remaining === 0) this.read = Read.ChunkSize;
          break;
        }
        case Read.ChunkSize:
        case Read.Trailers: {
          buf = this.joined(buf);
          const end = buf.indexOf(CRLF);
          if (end < 0) {
            this.keep(buf, 'a chunk-size or trailer line of the member is too long');
            return;
          }
          const line = buf.toString('latin1', 0, end);
          buf = buf.subarray(end + 2);
          if (this.read === Read.Trailers) {
            if (line.length === 0) {
              if (!this.finish(buf.length > 0)) return;
              break;
            }
            // A trailer line is a header line (a missing final CRLF shows here: the next status line is not one).
            this.trailerBytes += end + 2;
            if (this.trailerBytes > MAX_HEAD) {
              this.violation(`the member's trailers are over ${MAX_HEAD} bytes`);
              return;
            }
            if (!HEADER_LINES.test(line)) {
              this.violation(`the member sent a malformed trailer line ${JSON.stringify(line.slice(0, 60))}`);
              return;
            }
            break;
          }
          const size = CHUNK_SIZE_LINE.exec(line);
          if (size === null) {
            this.violation(`the member sent a bad chunk size ${JSON.stringify(line.slice(0, 40))}`);
            return;
          }
          const length = parseInt(size[1]!, 16);
          if (length === 0) {
            this.read = Read.Trailers;
            this.trailerBytes = 0;
          } else {
            this.read = Read.ChunkData;
            this.remaining = length;
          }
          break;
        }
        case Read.UntilClose: {
          const more = handler.onUpstreamData(this, buf);
          if (this.handler === handler && !more) this.pause();
          return;
        }
        case Read.Idle:
          this.destroy();
          return;
      }
    }
  }

  /** Bytes of trailer lines read so far (they count against MAX_HEAD, as llhttp counts them with the head). */
  private trailerBytes = 0;

  /** `buf` behind the bytes kept from earlier reads (a head or line split over packets). */
  private joined(buf: Buffer): Buffer {
    if (this.partial === undefined) return buf;
    const all = Buffer.concat([this.partial, buf]);
    this.partial = undefined;
    return all;
  }

  /** Keeps an unfinished head or line for the next read; fails the request, saying `tooLong`, past MAX_HEAD bytes. */
  private keep(buf: Buffer, tooLong: string): void {
    if (buf.length > MAX_HEAD) this.violation(tooLong);
    else this.partial = buf;
  }

  /** Fails the answer for breaking a framing rule; for {@link onHead}'s returns. */
  private refused(message: string): Head {
    this.violation(message);
    return Head.Stop;
  }

  /**
   * Parses a response head (`bytes` holds it as received, `head` the same
   * as latin1 text without the empty line; `rest` bytes followed it in
   * this read) and hands it to the handler, unless it breaks one of the
   * framing rules (top of this file); says how parsing goes on. The header
   * lines are checked with one pattern and searched with another for the
   * few names that matter here, so that an ordinary answer is never split
   * into strings: {@link headerList} does that for a caller that needs it.
   */
  private onHead(head: string, bytes: Buffer, handler: UpstreamHandler, rest: number): Head {
    const lineEnd = head.indexOf('\r\n');
    const statusLine = lineEnd < 0 ? head : head.slice(0, lineEnd);
    const match = STATUS_LINE.exec(statusLine);
    if (match === null) return this.refused(`the member answered something that is not an HTTP/1.x status line: ${JSON.stringify(statusLine.slice(0, 60))}`);
    const status = Number(match[2]);
    if (status === 101) return this.refused('the member switched protocols (101), which this proxy does not forward');
    const block = lineEnd < 0 ? '' : head.slice(lineEnd + 2);
    // As strict as node's own parser, so that what reaches a client is valid.
    if (block !== '' && !HEADER_LINES.test(block)) {
      return this.refused(`the member sent a malformed header line ${JSON.stringify(firstMalformedLine(block).slice(0, 60))}`);
    }
    const http10 = match[1] === '0';
    let contentLength = -1;
    let codings: string | undefined;
    let close = http10;
    // Raw bytes go to the client only for an HTTP/1.1 status line with a reason and no header to drop.
    let passable = !http10 && match[3] !== undefined && match[3] !== '';
    this.headHasDate = false;
    this.headHasCors = false;
    this.corsLines.length = 0;
    const blockAt = lineEnd + 2;
    for (let start = 0; start < block.length; ) {
      const lineEnd = block.indexOf('\r\n', start);
      const end = lineEnd < 0 ? block.length : lineEnd;
      const colon = block.indexOf(':', start);
      const name = notableName(block, start, colon);
      const lineStart = start;
      start = end + 2;
      if (name === undefined) continue;
      const value = withoutOws(block, colon + 1, end);
      if (name === 'content-length') {
        if (contentLength >= 0) return this.refused('the member sent Content-Length twice');
        if (!CONTENT_LENGTH.test(value)) return this.refused(`the member sent a bad Content-Length ${JSON.stringify(value.slice(0, 40))}`);
        contentLength = Number(value);
      } else if (name === 'date') this.headHasDate = true;
      else if (name.startsWith('access-control-')) {
        this.headHasCors = true;
        this.corsLines.push(blockAt + lineStart, blockAt + start);
      }
      else {
        // A hop-by-hop header: never passed on.
        passable = false;
        if (name === 'transfer-encoding') codings = codings === undefined ? value : `${codings}, ${value}`;
        else if (name === 'connection') {
          const v = value.toLowerCase();
          if (v.includes('close')) close = true;
          else if (http10 && v.includes('keep-alive')) close = false;
        }
      }
    }
    const chunked = codings !== undefined;
    if (chunked) {
      if (codings!.toLowerCase() !== 'chunked') return this.refused(`the member sent Transfer-Encoding ${JSON.stringify(codings!.slice(0, 40))}; only chunked, once, can be read and removed`);
      if (contentLength >= 0) return this.refused('the member sent both Transfer-Encoding and Content-Length');
      if (http10) return this.refused('the member sent Transfer-Encoding in an HTTP/1.0 answer');
    }
    if (status < 200) {
      // An interim answer: the real one follows. This proxy never sends Expect.
      if (chunked || contentLength >= 0) return this.refused(`the member framed a body in an interim ${status} answer`);
      return Head.More;
    }
    if (status === 204 && (chunked || contentLength > 0)) return this.refused('the member framed a body in a 204 answer');
    if (close) this.reusable = false;
    const bodyless = this.headRequest || status === 204 || status === 304;
    const hasBody = !bodyless && (chunked || contentLength !== 0);
    // A body that ends when the member closes: nothing can follow it.
    if (hasBody && !chunked && contentLength < 0) this.reusable = false;
    // A 304 that states its representation's length: its body would be a pipelined request's answer.
    if (bodyless && (chunked || contentLength > 0) && this.behind.length > 0) this.reusable = false;
    // No answer can follow this one on the connection: the requests behind it go elsewhere at once.
    if (!this.reusable) this.detach();
    // Bytes past this answer in this same read, with no answer due after it: refused before the client sees anything.
    if (rest > 0 && !this.awaitsMore() && (!hasBody || (!chunked && contentLength > 0 && rest > contentLength))) {
      return this.refused(UNEXPECTED_BYTES);
    }
    this.headBlock = block;
    // The status line and header lines, each with its CRLF (a head without header lines is its status line alone).
    this.rawHead = passable ? bytes.subarray(0, head.length + 2) : undefined;
    handler.onUpstreamHead(this, status, match[3] ?? '', hasBody, hasBody && contentLength < 0);
    this.headBlock = '';
    this.rawHead = undefined;
    // The handler left (or, through discard(), left its answer to DROP to be read to its end).
    if (this.handler !== handler && this.handler !== DROP) return Head.Stop;
    if (!hasBody) return Head.Complete;
    if (chunked) this.read = Read.ChunkSize;
    else if (contentLength > 0) {
      this.read = Read.Length;
      this.remaining = contentLength;
    } else {
      this.read = Read.UntilClose;
      this.reusable = false;
    }
    return Head.More;
  }

  /**
   * During {@link UpstreamHandler.onUpstreamHead}: the status line and
   * header lines exactly as the member sent them (each line with its CRLF,
   * without the empty line), when they can go to a client unchanged: an
   * HTTP/1.1 status line with a reason phrase and no hop-by-hop header.
   * Undefined otherwise; then use {@link headerList}.
   */
  rawHead: Buffer | undefined = undefined;
  /** During onUpstreamHead: the member sent a Date header. */
  headHasDate = false;
  /** During onUpstreamHead: the member sent an Access-Control-* header. */
  headHasCors = false;

  /**
   * During onUpstreamHead: {@link rawHead} without its Access-Control-*
   * lines (for a proxy that sends CORS headers of its own), or undefined
   * when the head cannot go to a client unchanged.
   */
  rawHeadWithoutCors(): Buffer | undefined {
    const raw = this.rawHead;
    if (raw === undefined || !this.headHasCors) return raw;
    const cuts = this.corsLines;
    const parts: Buffer[] = [];
    let at = 0;
    for (let i = 0; i < cuts.length; i += 2) {
      if (cuts[i]! > at) parts.push(raw.subarray(at, cuts[i]));
      at = cuts[i + 1]!;
    }
    if (at < raw.length) parts.push(raw.subarray(at));
    return Buffer.concat(parts);
  }

  /** During onUpstreamHead: where each Access-Control-* line of the head starts and ends (with its CRLF), in pairs; found while the head is parsed. */
  private readonly corsLines: number[] = [];
  /** The header lines of the head being reported, as text. */
  private headBlock = '';

  /** During onUpstreamHead: the response headers, names and values alternating, as received. */
  headerList(): string[] {
    const out: string[] = [];
    const block = this.headBlock;
    if (block === '') return out;
    for (const line of block.split('\r\n')) {
      const colon = line.indexOf(':');
      out.push(line.slice(0, colon), withoutOws(line, colon + 1));
    }
    return out;
  }

  /**
   * The response is complete: the next pipelined request's answer is read
   * next, or the connection goes back to the pool (when reusable); then the
   * handler hears it. `extra`: bytes follow in this read, which only a
   * pipelined request's answer may be (otherwise the answer fails: see the
   * framing rules at the top of this file). True when another answer is due.
   */
  private finish(extra: boolean): boolean {
    if (extra && !this.awaitsMore()) {
      this.violation(UNEXPECTED_BYTES);
      return false;
    }
    const handler = this.handler;
    this.answers++;
    if (!this.reusable) this.detach();
    let next = this.behind.shift();
    if (next === DROP && this.onlyDropsBehind()) {
      // Answers nobody waits for: a member that never sent them would hold the connection for good.
      this.reusable = false;
      this.behind.length = 0;
      next = undefined;
    }
    if (next !== undefined) {
      this.handler = next;
      this.read = Read.Head;
      // A pause was for the client of the answer that just ended (its last bytes filled that client's
      // buffer); the next answer has a client of its own, and nobody else would resume reading.
      if (this.socket.isPaused()) this.resume();
      handler?.onUpstreamEnd(this);
      return this.handler === next;
    }
    this.handler = undefined;
    this.read = Read.Idle;
    if (this.readTimeout > 0) this.setReadTimeout(0);
    if (this.reusable) {
      this.socket.resume();
      this.pool.putIdle(this);
    } else this.destroy();
    handler?.onUpstreamEnd(this);
    return false;
  }

  /** @internal The member closed its side. */
  ended(): void {
    if (this.read === Read.UntilClose && this.handler !== undefined) {
      this.reusable = false;
      this.finish(false);
      return;
    }
    if (this.handler !== undefined) {
      this.fail(new Error(this.read === Read.Head ? 'the member closed the connection without answering' : 'the member closed the response before its end'));
    } else this.destroy();
  }
}

const EMPTY = Buffer.alloc(0);

/** The first of `block`'s lines that is not a valid header line (for the error message). */
function firstMalformedLine(block: string): string {
  for (const line of block.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0 || !TOKEN.test(line.slice(0, colon)) || CONTROL.test(line.slice(colon + 1))) return line;
  }
  return block;
}

type PoolSocket = Socket & { [CONNECTION]?: UpstreamConnection };

function onSocketConnect(this: PoolSocket): void {
  const conn = this[CONNECTION];
  if (conn === undefined) return;
  conn.connected = true;
  conn.handler?.onUpstreamConnected(conn);
  for (const handler of conn.behind) handler.onUpstreamConnected(conn);
}

function onTlsSession(this: PoolSocket, session: Buffer): void {
  const conn = this[CONNECTION];
  if (conn !== undefined) conn.pool.tlsSession = session;
}

function onSocketData(this: PoolSocket, chunk: Buffer): void {
  const conn = this[CONNECTION];
  if (conn === undefined) this.destroy();
  else conn.parse(chunk);
}

function onSocketEnd(this: PoolSocket): void {
  this[CONNECTION]?.ended();
}

function onSocketError(this: PoolSocket, err: Error): void {
  const conn = this[CONNECTION];
  if (conn?.handler !== undefined) conn.fail(err);
}

function onSocketClose(this: PoolSocket): void {
  const conn = this[CONNECTION];
  if (conn === undefined) return;
  conn.pool.open--;
  conn.pool.dropIdle(conn);
  if (conn.handler !== undefined) conn.fail(new Error(conn.connected ? 'the member closed the connection' : 'the connection closed before it was established'));
}

function onSocketTimeout(this: PoolSocket): void {
  // Only a request with a read timeout sets the socket's timeout.
  const conn = this[CONNECTION];
  if (conn?.handler !== undefined && conn.readTimeout > 0) conn.fail(new UpstreamReadTimeout(conn.readTimeout));
}
