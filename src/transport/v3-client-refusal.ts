import type { Server } from 'node:http';
import { createServer as createHttp2Server } from 'node:http2';
import type { Http2Session, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { Server as TlsServer } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import createDebug from 'debug';
import { GrpcCode, trailersOnly } from '../grpc-forwarding/grpc-status.js';

const debug = createDebug('etcd-v2-proxy:v3');

/**
 * One port for every etcd client: the listener looks at each connection
 * (once per connection, never per request) and gives HTTP/1.x (the v2 API)
 * to node:http or the proxy's own reader, and HTTP/2 (etcd v3 clients
 * speak gRPC: h2c with prior knowledge on http://, ALPN `h2` on https://)
 * to a node:http2 server of its own that is never listened on. What that
 * server does with each gRPC call is the caller's: forward it
 * (grpc-forwarder.ts) or answer it at once with UNIMPLEMENTED
 * ({@link refuseV3Clients}), rather than leave it hanging until its
 * deadline as etcd's proxy does (`context deadline exceeded` after 5 s).
 */

/** What a v3 client is told, as its gRPC status message, when v3 clients are refused. @public */
export const V3_REFUSAL_MESSAGE =
  'etcd-v2-proxy serves the etcd v2 API only; for the v3 API use the cluster client URLs directly or etcd grpc-proxy';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** What is done with each HTTP/2 stream (gRPC call) of a client. */
export type H2StreamHandler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;

/**
 * Makes `server` answer etcd v3 (gRPC) clients at once with UNIMPLEMENTED
 * and {@link V3_REFUSAL_MESSAGE} instead of leaving them to time out.
 * HTTP/1.1 connections are passed to the server's own handling unchanged.
 * `createProxy()` does this on its listeners with `v3Clients: 'refuse'`
 * (by default it forwards them); call it on your own server when you embed
 * the handler. Call it before the server accepts connections.
 *
 * On an https server (v3 clients over TLS) the same is done on each
 * connection once its TLS handshake is over. A gRPC client offers only `h2`
 * in ALPN: give the server `ALPNProtocols: ['http/1.1', 'h2']` (`createProxy`
 * does), or such clients fail the handshake ("no application protocol")
 * before they can be told why.
 * @public
 */
export function refuseV3Clients(server: Server | HttpsServer, message: string = V3_REFUSAL_MESSAGE): void {
  sortConnections(server, refusingStreams(message), undefined);
}

/** A stream handler that answers every call with UNIMPLEMENTED and `message`. */
export function refusingStreams(message: string): H2StreamHandler {
  // Made once: respond() copies what it is given.
  const trailers = trailersOnly(GrpcCode.UNIMPLEMENTED, message);
  return (stream) => {
    stream.on('error', ignore);
    if (!stream.destroyed && !stream.closed) stream.respond(trailers, RESPOND_ENDED);
    // The client may still be sending its request: read and drop it.
    stream.resume();
  };
}

const RESPOND_ENDED = { endStream: true };

function ignore(): void {}

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

/** HTTP/2 settings towards the clients: larger stream windows than HTTP/2's 64 KiB (a Range of many keys is not held to 64 KiB per round trip). */
const CLIENT_SETTINGS = { initialWindowSize: 1 << 20 };

/**
 * Sorts `server`'s connections: HTTP/2 ones to a node:http2 server whose
 * streams go to `onStream`, HTTP/1.x ones to `http1` when set, else to the
 * server's own handling.
 */
export function sortConnections(server: Server | HttpsServer, onStream: H2StreamHandler, http1: Http1Taker | undefined): void {
  // node:https hands decrypted connections to node:http on 'secureConnection'; 'connection' carries the TLS bytes.
  const event = server instanceof TlsServer ? 'secureConnection' : 'connection';
  const httpListeners = server.listeners(event) as Array<(socket: Socket) => void>;
  server.removeAllListeners(event);
  const h2 = createHttp2Server({ settings: CLIENT_SETTINGS });
  h2.on('stream', onStream);
  // HTTP/2 connections are not in node:http's connection list: they are closed here with the others.
  const h2Sessions = new Set<Http2Session>();
  h2.on('session', (session: Http2Session) => {
    h2Sessions.add(session);
    session.once('close', () => h2Sessions.delete(session));
  });
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
  // Connections not handed to node:http are not in its connection list:
  // close them with the idle ones (server.close() does that), or close()
  // would wait for them until their timeout (or, for a v3 client, forever).
  for (const method of ['closeIdleConnections', 'closeAllConnections'] as const) {
    const original = server[method].bind(server);
    server[method] = () => {
      for (const socket of undecided.keys()) socket.destroy();
      // Idle: GOAWAY, calls in flight finish (createProxy's close() ends open streams); all: at once.
      for (const session of h2Sessions) {
        if (method === 'closeIdleConnections') session.close();
        else session.destroy();
      }
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
      debug('HTTP/2 connection from %s', socket.remoteAddress);
      socket.off('error', onError);
      toHttp2(socket, head);
      return;
    }
    socket.off('error', onError);
    if (http1 !== undefined) http1.take(socket, head, toServer);
    else toServer(socket, head);
  }
  function toHttp2(socket: Socket, unread: Buffer | undefined): void {
    // node:http's sockets are half-open: a client's FIN would leave the HTTP/2 session,
    // its streams and their calls to the members open for good (node:http2's own servers are not).
    socket.allowHalfOpen = false;
    if (unread !== undefined) socket.unshift(unread);
    h2.emit('connection', socket);
  }
  function toServer(socket: Socket, unread: Buffer | undefined): void {
    socket.pause();
    if (unread !== undefined) socket.unshift(unread);
    for (const listener of httpListeners) listener.call(server, socket);
    socket.resume();
  }
  server.on(event, (socket: Socket) => {
    // TLS with ALPN h2: HTTP/2 from the first byte.
    if ((socket as TLSSocket).alpnProtocol === 'h2') {
      debug('HTTP/2 (ALPN h2) connection from %s', socket.remoteAddress);
      toHttp2(socket, undefined);
      return;
    }
    const limit = server.headersTimeout || 60000;
    undecided.set(socket, { due: performance.now() + limit, head: undefined });
    socket.on('close', onClose);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('data', onData);
    sweeper ??= setInterval(sweep, Math.min(1000, limit / 4)).unref();
  });
}
