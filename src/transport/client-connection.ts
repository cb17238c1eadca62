import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import createDebug from 'debug';
import type { ClientRequest, ClientResponse } from '../forwarding/forward-request.js';
import { CONTENT_LENGTH, CONTROL, CRLF2, TOKEN, withoutOws } from './http1-syntax.js';
import type { DirectRoute } from '../handler/v2-proxy-handler.js';
import type { Http1Taker } from './v3-client-refusal.js';

const debug = createDebug('etcd-v2-proxy:client');

/**
 * createProxy()'s own HTTP/1.1 server side, for the requests the handler
 * only forwards: a plain GET, HEAD, PUT, POST or DELETE with a well-formed
 * head and no body or a Content-Length one. Why: node:http's server builds
 * a parser, an `IncomingMessage`, a `ServerResponse`, a headers object and
 * stream state per request and per connection; with this reader and
 * writer instead, the proxy spent about 0.7x the CPU per forwarded request
 * and an idle watch about 5 KB less (docs/benchmarks.md, point 8).
 *
 * Everything else, at a request boundary and with its bytes unread, is
 * handed to the listener's node:http (or node:https, after the TLS
 * handshake) server for the rest of the connection:
 * the handler's own paths, metrics, CORS, readonly refusals, a request body
 * over the limit, `Expect`, `Upgrade`, chunked request bodies, HTTP/1.0,
 * malformed or oversized heads. node:http then answers those exactly as it
 * does for an embedded {@link V2ProxyHandler.handle}, by construction.
 */

/** Largest request head read here (node:http's default maxHeaderSize); a larger one is node:http's to refuse (431). */
const MAX_HEAD = 16 * 1024;
/** Bytes of pipelined requests kept while one is answered, before reading pauses. */
const MAX_AHEAD = 64 * 1024;
/** `METHOD origin-form HTTP/1.1`: the only request line read here. */
const REQUEST_LINE = /^(GET|HEAD|PUT|POST|DELETE) (\/[!-~]*) HTTP\/1\.1$/;
const TIMED_OUT = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n';
const BAD_REQUEST = 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n';

/**
 * The timeouts of a listener: its node:http server, read each time they are
 * needed, so that both sides keep the same ones even when they are changed
 * on `proxy.servers[i]` later.
 */
export interface ClientTimeouts {
  /** ms from a head's first byte to its end. */
  readonly headersTimeout: number;
  /** ms from a head's first byte to the end of its body. */
  readonly requestTimeout: number;
  /** ms a connection may stay idle between requests; 0: no limit. */
  readonly keepAliveTimeout: number;
}

/**
 * The connections of one listener read here: what {@link sortConnections}
 * gives the HTTP/1.x ones to. `takes(url)` says whether the listener's own
 * routes leave `url` to the handler (createProxy answers `/metrics` itself).
 */
export class ClientConnections implements Http1Taker {
  private readonly open = new Set<ClientConnection>();
  private sweeper: NodeJS.Timeout | undefined;
  private keepAliveFor = -1;
  private keepAliveLines = '';
  private keepAliveEnd = Buffer.alloc(0);

  constructor(
    readonly route: DirectRoute,
    readonly takes: (url: string) => boolean,
    readonly timeouts: ClientTimeouts,
  ) {}

  take(socket: Socket, firstBytes: Buffer, toServer: (socket: Socket, unread: Buffer | undefined) => void): void {
    const conn = new ClientConnection(this, socket, toServer);
    this.open.add(conn);
    // One unref'd check for every connection's deadline, as node:http's connectionsCheckingInterval.
    this.sweeper ??= setInterval(this.sweep, Math.max(50, Math.min(500, this.timeouts.headersTimeout / 4))).unref();
    conn.receive(firstBytes);
    if (conn.socket !== undefined) socket.resume();
  }

  /** When a connection idle from `now` on is closed; 0: never (a keepAliveTimeout of 0, as node:http reads it). */
  idleDue(now: number): number {
    return this.timeouts.keepAliveTimeout > 0 ? now + this.timeouts.keepAliveTimeout : 0;
  }

  /** What a kept-alive answer says of the connection, as node:http says it; built again only when the timeout changes. */
  keepAliveHeaders(): string {
    const ms = this.timeouts.keepAliveTimeout;
    if (ms !== this.keepAliveFor) {
      this.keepAliveFor = ms;
      this.keepAliveLines = ms >= 1000 ? `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(ms / 1000)}\r\n` : 'Connection: keep-alive\r\n';
      this.keepAliveEnd = Buffer.from(`${this.keepAliveLines}\r\n`, 'latin1');
    }
    return this.keepAliveLines;
  }

  /** {@link keepAliveHeaders} and the empty line that ends a head, as bytes. */
  keepAliveHeadEnd(): Buffer {
    this.keepAliveHeaders();
    return this.keepAliveEnd;
  }

  /** @internal */
  forget(conn: ClientConnection): void {
    this.open.delete(conn);
    if (this.open.size === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  closeIdle(): void {
    for (const conn of this.open) if (conn.idle) conn.socket?.destroy();
  }

  closeAll(): void {
    for (const conn of this.open) conn.socket?.destroy();
  }

  private readonly sweep = (): void => {
    const now = performance.now();
    for (const conn of this.open) if (conn.dueAt !== 0 && conn.dueAt <= now) conn.timedOut();
  };
}

const enum State {
  /** Between requests: reading a head. */
  Head,
  /** Reading a body of known length. */
  Body,
  /** The request is forwarded; its answer is being written. */
  Answering,
  /** The last answer is written (or a 400/408): the socket ends once it is flushed; nothing more is read. */
  Closing,
}

/** The property under which a socket points back to its connection. */
const CONNECTION = Symbol('etcd-v2-proxy.client-connection');
type Carrier = Socket & { [CONNECTION]?: ClientConnection };

/** One client connection: requests read one at a time, each answered before the next is read. */
class ClientConnection {
  /** undefined once the connection was handed to node:http or closed. */
  socket: Carrier | undefined;
  state = State.Head;
  /** Bytes read and not yet used: (part of) the next request. */
  unread: Buffer | undefined = undefined;
  /** performance.now() past which the connection times out; 0: none. */
  dueAt = 0;
  /** When the current head's first byte arrived. */
  headStarted = 0;
  /** Close the connection once the current answer is written. */
  closeAfter = false;
  request: ParsedRequest | undefined = undefined;
  reply: ClientReply | undefined = undefined;
  body: Buffer[] | undefined = undefined;
  /** Body bytes still to read. */
  remaining = 0;

  constructor(
    readonly owner: ClientConnections,
    socket: Socket,
    readonly toServer: (socket: Socket, unread: Buffer | undefined) => void,
  ) {
    this.socket = socket;
    (socket as Carrier)[CONNECTION] = this;
    socket.on('data', onSocketData);
    socket.on('end', onSocketEnd);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    socket.on('drain', onSocketDrain);
    this.dueAt = owner.idleDue(performance.now());
  }

  /** Between requests with nothing read of the next one, or closing. */
  get idle(): boolean {
    return (this.state === State.Head && this.unread === undefined) || this.state === State.Closing;
  }

  receive(chunk: Buffer): void {
    if (this.state === State.Closing) return;
    if (this.state === State.Body) this.readBody(chunk);
    else {
      this.unread = this.unread === undefined ? chunk : Buffer.concat([this.unread, chunk]);
      if (this.state === State.Head) this.readHead();
    }
    // Pipelined requests wait while one is answered: keep at most MAX_AHEAD of them.
    if (this.state === State.Answering && this.unread !== undefined && this.unread.length > MAX_AHEAD) this.socket?.pause();
  }

  timedOut(): void {
    const socket = this.socket;
    if (socket === undefined) return;
    if (this.state === State.Head && this.unread === undefined) {
      debug('closing a connection idle for %d ms', this.owner.timeouts.keepAliveTimeout);
      socket.destroy();
      return;
    }
    debug('%s from %s timed out', this.state === State.Body ? 'a request body' : 'a request head', socket.remoteAddress);
    this.refuse(TIMED_OUT);
  }

  /** Answers `answer` (400 or 408, as node:http would) and ends the connection. */
  refuse(answer: string): void {
    const socket = this.socket;
    if (socket === undefined) return;
    this.state = State.Closing;
    this.unread = undefined;
    this.body = undefined;
    this.dueAt = 0;
    socket.write(answer, 'latin1');
    socket.destroySoon();
  }

  /** Parses the head in `unread`, if it is all there; anything this reader does not take goes to node:http. */
  readHead(): void {
    const buf = this.unread;
    if (buf === undefined || this.socket === undefined) return;
    if (this.headStarted === 0) {
      this.headStarted = performance.now();
      this.dueAt = this.headStarted + this.owner.timeouts.headersTimeout;
    }
    const end = buf.indexOf(CRLF2);
    if (end < 0) {
      // node:http refuses a bare LF at once (400); so does it a head over its limit (431).
      if (buf.length > MAX_HEAD || hasBareLf(buf)) this.handOver();
      return;
    }
    if (end > MAX_HEAD) {
      this.handOver();
      return;
    }
    const request = parseHead(buf.toString('latin1', 0, end), this.socket);
    if (request === undefined || !this.owner.takes(request.url) || !this.owner.route.onlyForwards(request.method, request.url, request.via, request.length)) {
      this.handOver();
      return;
    }
    if (request.plain) request.head = buf.subarray(0, end + 2);
    this.unread = end + 4 < buf.length ? buf.subarray(end + 4) : undefined;
    if (request.close) this.closeAfter = true;
    this.request = request;
    this.reply = new ClientReply(this, request.method === 'HEAD');
    if (request.length > 0) {
      this.state = State.Body;
      this.body = [];
      this.remaining = request.length;
      this.dueAt = this.headStarted + this.owner.timeouts.requestTimeout;
      const rest = this.unread;
      this.unread = undefined;
      if (rest !== undefined) this.readBody(rest);
      return;
    }
    this.forward(request.hasLength ? [] : undefined);
  }

  readBody(chunk: Buffer): void {
    const body = this.body!;
    if (chunk.length <= this.remaining) {
      body.push(chunk);
      this.remaining -= chunk.length;
    } else {
      body.push(chunk.subarray(0, this.remaining));
      this.unread = chunk.subarray(this.remaining);
      this.remaining = 0;
    }
    if (this.remaining === 0) this.forward(body);
  }

  forward(body: Buffer[] | undefined): void {
    this.state = State.Answering;
    this.dueAt = 0;
    this.body = undefined;
    const request = this.request!;
    this.owner.route.forward(request, this.reply!, body, request.length, performance.now());
  }

  /** The current answer is written: on to the next request, or the end of the connection. */
  answered(): void {
    const socket = this.socket;
    this.state = State.Head;
    this.request = undefined;
    this.reply = undefined;
    this.headStarted = 0;
    if (socket === undefined) return;
    if (this.closeAfter) {
      // Still listed until the socket is gone: close() finds it even if the client never reads its end.
      this.state = State.Closing;
      this.unread = undefined;
      this.dueAt = 0;
      socket.destroySoon();
      return;
    }
    if (this.unread === undefined) {
      this.dueAt = this.owner.idleDue(performance.now());
      return;
    }
    // A pipelined request: read it once the answer's caller has returned.
    this.dueAt = 0;
    process.nextTick(resumeReading, this);
  }

  /** Gives the connection, with its unread bytes, to node:http (at a request boundary only): this reader lets go of it. */
  handOver(): void {
    const socket = this.socket!;
    const unread = this.unread;
    this.unread = undefined;
    this.socket = undefined;
    this.dueAt = 0;
    socket[CONNECTION] = undefined;
    socket.off('data', onSocketData);
    socket.off('end', onSocketEnd);
    socket.off('error', onSocketError);
    socket.off('close', onSocketClose);
    socket.off('drain', onSocketDrain);
    this.owner.forget(this);
    this.toServer(socket, unread);
  }

  closed(): void {
    const reply = this.reply;
    this.reply = undefined;
    if (reply !== undefined && !reply.writableFinished) reply.clientClosed();
  }
}

function resumeReading(conn: ClientConnection): void {
  if (conn.socket === undefined || conn.state !== State.Head) return;
  conn.readHead();
  // Read on only while fewer than MAX_AHEAD bytes of pipelined requests wait.
  const { socket, unread } = conn;
  const state = conn.state as State; // readHead() may have moved it on
  if (socket !== undefined && (state !== State.Answering || unread === undefined || unread.length <= MAX_AHEAD)) socket.resume();
}

/** A body piece up to this size is copied behind a head passed through, so that both go in one write. */
const ONE_COPY = 16 * 1024;

let dateSecond = 0;
let dateText = '';

/** The current time as an HTTP Date, computed once per second. */
function httpDate(): string {
  const second = Math.floor(Date.now() / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(second * 1000).toUTCString();
  }
  return dateText;
}

/** An LF not preceded by CR. */
function hasBareLf(buf: Buffer): boolean {
  for (let i = buf.indexOf(10); i >= 0; i = buf.indexOf(10, i + 1)) if (i === 0 || buf[i - 1] !== 13) return true;
  return false;
}

// The socket's listeners, shared by all connections: `this` is the socket.

function onSocketData(this: Carrier, chunk: Buffer): void {
  this[CONNECTION]?.receive(chunk);
}

/** The client sent FIN: as node:http does (httpAllowHalfOpen off), the connection ends, an answer in progress with it. */
function onSocketEnd(this: Carrier): void {
  const conn = this[CONNECTION];
  if (conn === undefined) return;
  conn.closeAfter = true;
  if (conn.state === State.Answering || conn.state === State.Closing) {
    this.end();
    return;
  }
  // A request cut short: node:http answers 400; between requests it just closes.
  if (conn.state === State.Body || conn.unread !== undefined) conn.refuse(BAD_REQUEST);
  else this.destroy();
}

function onSocketError(this: Carrier, err: Error): void {
  debug('client connection from %s failed: %s', this.remoteAddress, err.message);
  this.destroy();
}

function onSocketClose(this: Carrier): void {
  const conn = this[CONNECTION];
  if (conn === undefined) return;
  conn.socket = undefined;
  this[CONNECTION] = undefined;
  conn.owner.forget(conn);
  conn.closed();
}

function onSocketDrain(this: Carrier): void {
  this[CONNECTION]?.reply?.drained();
}

/** A request head as this reader takes it; `undefined` from {@link parseHead}: node:http's to read. */
class ParsedRequest implements ClientRequest {
  constructor(
    readonly method: string,
    readonly url: string,
    readonly rawHeaders: string[],
    readonly socket: Socket,
    /** The Via header, if any (to recognise a request that looped back). */
    readonly via: string | undefined,
    /** Content-Length, 0 when none. */
    readonly length: number,
    readonly hasLength: boolean,
    /** The client asked for `Connection: close`. */
    readonly close: boolean,
    /** No header the forwarder drops or merges: the head can go upstream as received, plus the forwarder's lines. */
    readonly plain: boolean,
  ) {}

  /** The request line and header lines as received, when `plain` (set by the reader, which has the bytes). */
  head: Buffer | undefined = undefined;
}

/**
 * The request line and headers in `head` (latin1, without the final empty
 * line), or undefined for anything but a plain request this reader takes:
 * a malformed line, obs-fold, no Host, more than one Host (node:http lets
 * it through and the handler answers 400, RFC 9112 section 3.2), more than
 * one Content-Length, or Transfer-Encoding, Expect or Upgrade. What it
 * takes, it takes exactly as llhttp parses it (the same method, target,
 * header names and values): test/transport/request-head-property.test.ts.
 */
export function parseHead(head: string, socket: Socket): ParsedRequest | undefined {
  let lineEnd = head.indexOf('\r\n');
  const line = REQUEST_LINE.exec(lineEnd < 0 ? head : head.slice(0, lineEnd));
  if (line === null) return undefined;
  const raw: string[] = [];
  let host = false;
  let via: string | undefined;
  let length = -1;
  let close = false;
  let plain = true;
  while (lineEnd >= 0) {
    const start = lineEnd + 2;
    lineEnd = head.indexOf('\r\n', start);
    const field = lineEnd < 0 ? head.slice(start) : head.slice(start, lineEnd);
    const colon = field.indexOf(':');
    if (colon <= 0) return undefined;
    const name = field.slice(0, colon);
    if (!TOKEN.test(name)) return undefined;
    const value = withoutOws(field, colon + 1);
    if (CONTROL.test(value)) return undefined;
    // `plain`: no header the forwarder drops (hop-by-hop) or merges (Via, X-Forwarded-For).
    switch (name.length) {
      case 2:
        if (name.toLowerCase() === 'te') plain = false;
        break;
      case 3:
        if (name.toLowerCase() === 'via') {
          via = via === undefined ? value : `${via}, ${value}`;
          plain = false;
        }
        break;
      case 4:
        if (name.toLowerCase() === 'host') {
          if (host) return undefined;
          host = true;
        }
        break;
      case 6:
        if (name.toLowerCase() === 'expect') return undefined;
        break;
      case 7: {
        const lower = name.toLowerCase();
        if (lower === 'upgrade') return undefined;
        if (lower === 'trailer') plain = false;
        break;
      }
      case 8:
        if (name.toLowerCase() === 'trailers') plain = false;
        break;
      case 10: {
        const lower = name.toLowerCase();
        if (lower === 'connection') {
          plain = false;
          const tokens = value.toLowerCase();
          if (tokens.includes('upgrade')) return undefined;
          if (/(?:^|,)\s*close\s*(?:,|$)/.test(tokens)) close = true;
        } else if (lower === 'keep-alive') plain = false;
        break;
      }
      case 14:
        if (name.toLowerCase() === 'content-length') {
          if (length >= 0 || !CONTENT_LENGTH.test(value)) return undefined;
          length = Number(value);
        }
        break;
      case 15:
        if (name.toLowerCase() === 'x-forwarded-for') plain = false;
        break;
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') return undefined;
        break;
      default:
        if (name.length > 6 && name.slice(0, 6).toLowerCase() === 'proxy-') plain = false;
        break;
    }
    raw.push(name, value);
  }
  if (!host) return undefined;
  return new ParsedRequest(line[1]!, line[2]!, raw, socket, via, Math.max(0, length), length >= 0, close, plain);
}

/** Ends the cork a chunk's write held (see ClientReply.write), unless end() did. */
function releaseCork(reply: ClientReply): void {
  const socket = reply.corked;
  reply.corked = undefined;
  socket?.uncork();
}

/** The answer to one request, written straight to the connection: status line, headers, then the body as it comes. */
class ClientReply implements ClientResponse {
  headersSent = false;
  statusCode = 200;
  destroyed = false;
  writableFinished = false;
  /** The head built by writeHead, until it is written. */
  private head: string | undefined = undefined;
  /** The member's status and header lines given to writeRawHead, until they are written... */
  private rawLines: Buffer | undefined = undefined;
  /** ...and what follows them, up to the empty line. */
  private rawEnd: Buffer | undefined = undefined;
  private chunked = false;
  private bodyless: boolean;
  private onClose: (() => void) | undefined = undefined;
  private onDrain: (() => void) | undefined = undefined;

  constructor(
    private readonly conn: ClientConnection,
    headRequest: boolean,
  ) {
    this.bodyless = headRequest;
  }

  writeHead(status: number, statusText: string | undefined, headers: string[]): this {
    this.statusCode = status;
    let head = `HTTP/1.1 ${status} ${statusText ?? STATUS_CODES[status] ?? 'Unknown'}\r\n`;
    let length = false;
    let date = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      const value = headers[i + 1]!;
      if (name.length === 14 && name.toLowerCase() === 'content-length') length = true;
      else if (name.length === 4 && name.toLowerCase() === 'date') date = true;
      else if (name.length === 10 && name.toLowerCase() === 'connection') {
        if (value.toLowerCase() === 'close') this.conn.closeAfter = true;
        continue;
      }
      head += `${name}: ${value}\r\n`;
    }
    if (status === 204 || status === 304 || status < 200) this.bodyless = true;
    this.chunked = !length && !this.bodyless;
    this.head = head + this.headEnd(date);
    this.headersSent = true;
    return this;
  }

  /** The member's lines go out as they came, followed by what {@link headEnd} adds. */
  writeRawHead(lines: Buffer, status: number, lengthUnknown: boolean, hasDate: boolean): this {
    this.statusCode = status;
    if (status === 204 || status === 304 || status < 200) this.bodyless = true;
    this.chunked = lengthUnknown && !this.bodyless;
    this.rawLines = lines;
    this.rawEnd = hasDate && !this.chunked && !this.conn.closeAfter ? this.conn.owner.keepAliveHeadEnd() : Buffer.from(this.headEnd(hasDate), 'latin1');
    this.headersSent = true;
    return this;
  }

  /**
   * The lines this writer adds after the headers, and the empty line: a
   * Date when there is none (the members' answers carry theirs; the proxy's
   * own 502, 503 and 504 get one, as node:http gives them), the chunked
   * framing, and what the connection does next.
   */
  private headEnd(hasDate: boolean): string {
    const date = hasDate ? '' : `Date: ${httpDate()}\r\n`;
    const framing = this.chunked ? 'Transfer-Encoding: chunked\r\n' : '';
    return `${date}${framing}${this.conn.closeAfter ? 'Connection: close\r\n' : this.conn.owner.keepAliveHeaders()}\r\n`;
  }

  /** The head not written yet, if any, which is then taken. */
  private takeHead(): string | Buffer | undefined {
    const head = this.head;
    if (head !== undefined) {
      this.head = undefined;
      return head;
    }
    const lines = this.rawLines;
    if (lines === undefined) return undefined;
    this.rawLines = undefined;
    return Buffer.concat([lines, this.rawEnd!]);
  }

  flushHeaders(): void {
    const socket = this.conn.socket;
    if (socket === undefined || !socket.writable) return;
    const head = this.takeHead();
    if (head !== undefined) socket.write(head, 'latin1');
  }

  write(chunk: Buffer): boolean {
    const socket = this.conn.socket;
    if (socket === undefined || !socket.writable) return true;
    if (this.bodyless || chunk.length === 0) {
      this.flushHeaders();
      return !socket.writableNeedDrain;
    }
    if (!this.chunked) {
      const lines = this.rawLines;
      if (lines !== undefined && chunk.length <= ONE_COPY) {
        // The member's lines, the end of the head and the body in one buffer: one write.
        this.rawLines = undefined;
        const end = this.rawEnd!;
        const all = Buffer.allocUnsafe(lines.length + end.length + chunk.length);
        lines.copy(all, 0);
        end.copy(all, lines.length);
        chunk.copy(all, lines.length + end.length);
        return socket.write(all);
      }
      const head = this.takeHead();
      if (head === undefined) return socket.write(chunk);
      socket.cork();
      socket.write(head, 'latin1');
      const ok = socket.write(chunk);
      socket.uncork();
      return ok;
    }
    const head = this.takeHead();
    // Held until this turn ends (or end()): a member sends a watch's event and the end of its answer in one
    // packet, and they reach the client in one write instead of two.
    if (this.corked === undefined) {
      this.corked = socket;
      socket.cork();
      process.nextTick(releaseCork, this);
    }
    if (head !== undefined) socket.write(head, 'latin1');
    socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
    socket.write(chunk);
    return socket.write('\r\n', 'latin1');
  }

  /** @internal The socket a chunk's write holds corked until {@link releaseCork} or end(). */
  corked: Socket | undefined = undefined;

  end(body?: string): this {
    if (this.writableFinished) return this;
    const socket = this.conn.socket;
    this.writableFinished = true;
    if (socket !== undefined && socket.writable) {
      const bytes = body === undefined || body === '' || this.bodyless ? undefined : Buffer.from(body);
      const head = this.takeHead();
      socket.cork();
      if (head !== undefined) socket.write(head, 'latin1');
      if (bytes !== undefined && this.chunked) socket.write(`${bytes.length.toString(16)}\r\n`, 'latin1');
      if (bytes !== undefined) socket.write(bytes);
      if (this.chunked) socket.write(bytes !== undefined ? '\r\n0\r\n\r\n' : '0\r\n\r\n', 'latin1');
      socket.uncork();
    }
    releaseCork(this);
    this.conn.answered();
    return this;
  }

  destroy(): this {
    this.conn.socket?.destroy();
    return this;
  }

  on(_event: 'close', listener: () => void): this {
    this.onClose = listener;
    return this;
  }

  once(_event: 'drain', listener: () => void): this {
    this.onDrain = listener;
    return this;
  }

  /** @internal The connection closed before this answer was finished. */
  clientClosed(): void {
    this.destroyed = true;
    this.onClose?.call(this);
  }

  /** @internal The connection can take more. */
  drained(): void {
    const listener = this.onDrain;
    this.onDrain = undefined;
    listener?.call(this);
  }
}
