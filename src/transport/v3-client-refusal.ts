import type { Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { Server as TlsServer } from 'node:tls';
import createDebug from 'debug';

const debug = createDebug('etcd-v2-proxy:v3');

/**
 * etcd v3 clients speak gRPC: HTTP/2 without TLS ("h2c"), which starts with
 * the connection preface `PRI * HTTP/2.0`. etcd's proxy leaves them hanging
 * until their deadline (`Error: context deadline exceeded` after 5 s). Here
 * the listener looks at the first bytes of each connection (once per
 * connection, never per request) and answers every gRPC call on an h2c
 * connection at once with status UNIMPLEMENTED and a message saying why.
 */

/** What a v3 client is told, as its gRPC status message. @public */
export const V3_REFUSAL_MESSAGE =
  'etcd-v2-proxy serves the etcd v2 API only; for the v3 API use the cluster client URLs directly or etcd grpc-proxy';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_DATA = 0x0;
const FRAME_HEADERS = 0x1;
const FRAME_RST_STREAM = 0x3;
const FRAME_SETTINGS = 0x4;
const FRAME_PING = 0x6;
const FRAME_GOAWAY = 0x7;
const FRAME_CONTINUATION = 0x9;
const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const GRPC_UNIMPLEMENTED = '12';

/**
 * Makes `server` answer etcd v3 (gRPC) clients at once with UNIMPLEMENTED
 * and {@link V3_REFUSAL_MESSAGE} instead of leaving them to time out.
 * HTTP/1.1 connections are passed to the server's own handling unchanged.
 * `createProxy()` does this on its listeners; call it on your own server when
 * you embed the handler. Call it before the server accepts connections.
 *
 * On an https server (v3 clients over TLS) the same is done on each
 * connection once its TLS handshake is over. A gRPC client offers only `h2`
 * in ALPN: give the server `ALPNProtocols: ['http/1.1', 'h2']` (`createProxy`
 * does), or such clients fail the handshake ("no application protocol")
 * before they can be told why.
 * @public
 */
export function refuseV3Clients(server: Server | HttpsServer, message: string = V3_REFUSAL_MESSAGE): void {
  sortConnections(server, message, undefined);
}

/**
 * Who takes a connection once its first bytes say HTTP/1.x, instead of the
 * server's own listeners (createProxy's own reader, client-connection.ts).
 */
export interface Http1Taker {
  /**
   * `firstBytes` were read from `socket` (paused); `toServer` gives a
   * connection, with bytes to read first, to the server's own handling.
   */
  take(socket: Socket, firstBytes: Buffer, toServer: (socket: Socket, unread: Buffer | undefined) => void): void;
  /** The server's closeIdleConnections() was called. */
  closeIdle(): void;
  /** The server's closeAllConnections() was called. */
  closeAll(): void;
}

/** {@link refuseV3Clients}, with the HTTP/1.x connections given to `http1` when set. */
export function sortConnections(server: Server | HttpsServer, message: string, http1: Http1Taker | undefined): void {
  // node:https hands decrypted connections to node:http on 'secureConnection'; 'connection' carries the TLS bytes.
  const event = server instanceof TlsServer ? 'secureConnection' : 'connection';
  const httpListeners = server.listeners(event) as Array<(socket: Socket) => void>;
  server.removeAllListeners(event);
  const grpcMessage = percentEncode(message);
  // A connection is "undecided" until its first bytes say HTTP/1.x or h2c.
  // Its state lives here, and its listeners are shared by all connections:
  // an idle watch holds nothing of this code once its connection is decided.
  const undecided = new Map<Socket, { due: number; head: Buffer | undefined }>();
  // A connection that sends nothing is dropped like one that never finishes
  // its headers (server.headersTimeout, read per connection), by one unref'd
  // sweep that runs while any is undecided.
  let sweeper: NodeJS.Timeout | undefined;
  const sweep = (): void => {
    const now = performance.now();
    for (const [socket, state] of undecided) if (state.due <= now) socket.destroy();
    if (undecided.size === 0) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  };
  // h2c connections being refused: node:http does not know them either.
  const refusing = new Set<Socket>();
  // Connections not handed to node:http are not in its connection list:
  // close them with the idle ones (server.close() does that), or close()
  // would wait for them until their timeout (or, for a v3 client, forever).
  for (const method of ['closeIdleConnections', 'closeAllConnections'] as const) {
    const original = server[method].bind(server);
    server[method] = () => {
      for (const socket of undecided.keys()) socket.destroy();
      for (const socket of refusing) socket.destroy();
      if (method === 'closeIdleConnections') http1?.closeIdle();
      else http1?.closeAll();
      original();
    };
  }
  function onClose(this: Socket): void {
    undecided.delete(this);
  }
  // The server is allowHalfOpen: a client that leaves before sending a byte (a port probe) must be let go.
  function onEnd(this: Socket): void {
    this.destroy();
  }
  // node:http's own error listener is not on the socket yet: without this one, a client
  // that resets the connection before its first byte would crash the process.
  function onError(this: Socket, err: Error): void {
    debug('connection from %s failed before its first request: %s', this.remoteAddress, err.message);
    this.destroy();
  }
  function onData(this: Socket, chunk: Buffer): void {
    const socket = this;
    const state = undecided.get(socket);
    if (state === undefined) return;
    const head = state.head === undefined ? chunk : Buffer.concat([state.head, chunk]);
    const n = Math.min(head.length, PREFACE.length);
    const looksH2 = head.subarray(0, n).equals(PREFACE.subarray(0, n));
    // Undecided until the bytes differ from the preface or all of it is here.
    if (looksH2 && head.length < PREFACE.length) {
      state.head = head;
      return;
    }
    undecided.delete(socket);
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.off('close', onClose);
    socket.pause();
    if (looksH2) {
      debug('h2c connection from %s: answering gRPC calls with UNIMPLEMENTED', socket.remoteAddress);
      refusing.add(socket);
      socket.once('close', () => refusing.delete(socket));
      new GrpcRefusal(socket, grpcMessage).receive(head.subarray(PREFACE.length));
      socket.off('error', onError);
      socket.resume();
      return;
    }
    socket.off('error', onError);
    if (http1 !== undefined) http1.take(socket, head, toServer);
    else toServer(socket, head);
  }
  function toServer(socket: Socket, unread: Buffer | undefined): void {
    socket.pause();
    if (unread !== undefined) socket.unshift(unread);
    for (const listener of httpListeners) listener.call(server, socket);
    socket.resume();
  }
  server.on(event, (socket: Socket) => {
    const limit = server.headersTimeout || 60000;
    undecided.set(socket, { due: performance.now() + limit, head: undefined });
    socket.on('close', onClose);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('data', onData);
    sweeper ??= setInterval(sweep, Math.min(1000, limit / 4)).unref();
  });
}

/** The server side of an h2c connection that answers every stream with a trailers-only gRPC error. */
class GrpcRefusal {
  private buffered: Buffer = Buffer.alloc(0);

  constructor(
    private readonly socket: Socket,
    private readonly grpcMessage: string,
  ) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('end', () => socket.end());
    // Our SETTINGS (empty: defaults are fine) must be the first frame we send.
    socket.write(frame(FRAME_SETTINGS, 0, 0, Buffer.alloc(0)));
  }

  receive(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    while (this.buffered.length >= 9) {
      const length = this.buffered.readUIntBE(0, 3);
      if (this.buffered.length < 9 + length) return;
      const type = this.buffered[3]!;
      const flags = this.buffered[4]!;
      const stream = this.buffered.readUInt32BE(5) & 0x7fffffff;
      const payload = this.buffered.subarray(9, 9 + length);
      this.buffered = this.buffered.subarray(9 + length);
      this.onFrame(type, flags, stream, payload);
    }
  }

  private onFrame(type: number, flags: number, stream: number, payload: Buffer): void {
    switch (type) {
      case FRAME_SETTINGS:
        if ((flags & FLAG_ACK) === 0) this.socket.write(frame(FRAME_SETTINGS, FLAG_ACK, 0, Buffer.alloc(0)));
        break;
      case FRAME_PING:
        if ((flags & FLAG_ACK) === 0) this.socket.write(frame(FRAME_PING, FLAG_ACK, 0, payload));
        break;
      case FRAME_HEADERS:
      case FRAME_CONTINUATION:
        // Answer once the request's header block is complete.
        if ((flags & FLAG_END_HEADERS) !== 0 && stream !== 0) this.refuse(stream, (flags & FLAG_END_STREAM) !== 0);
        break;
      case FRAME_GOAWAY:
        this.socket.end();
        break;
      case FRAME_DATA:
      default:
        break;
    }
  }

  private refuse(stream: number, clientDone: boolean): void {
    const block = Buffer.concat([
      Buffer.from([0x88]), // :status 200 (HPACK static table entry 8)
      literal('content-type', 'application/grpc'),
      literal('grpc-status', GRPC_UNIMPLEMENTED),
      literal('grpc-message', this.grpcMessage),
    ]);
    this.socket.write(frame(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, stream, block));
    // The client may still be sending its request body: tell it to stop.
    if (!clientDone) this.socket.write(frame(FRAME_RST_STREAM, 0, stream, Buffer.from([0, 0, 0, 0])));
  }
}

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(stream, 5);
  return Buffer.concat([header, payload]);
}

/** HPACK "literal header field without indexing, new name", no Huffman coding. */
function literal(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)]);
}

function hpackString(text: string): Buffer {
  const bytes = Buffer.from(text, 'latin1');
  return Buffer.concat([hpackInteger(bytes.length, 7), bytes]);
}

function hpackInteger(value: number, prefixBits: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([value]);
  const out = [max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return Buffer.from(out);
}

/** gRPC's percent-encoding of grpc-message: printable ASCII but '%' as is, the rest as %XX of UTF-8. */
function percentEncode(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
