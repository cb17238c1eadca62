import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import createDebug from 'debug';
import type { EventEmitter } from 'eventemitter3';
import type { Endpoint } from './endpoint.js';
import type { EndpointBalancer } from './endpoint-balancer.js';
import { UpstreamError } from './errors.js';
import { sendJsonError } from './json-error.js';
import type { DropReason, V2ProxyHandlerEvents } from './proxy-events.js';
import { isTlsHandshakeFailure } from './tls-options.js';

const debug = createDebug('etcd-v2-proxy:forward');

/**
 * Sends one client request to the cluster and streams the answer back.
 *
 * Retry policy: the request moves on to the next endpoint only when it cannot
 * have reached etcd (no connection was made: refused, unreachable, dial
 * timeout) or when its method is GET or HEAD and nothing was sent to the
 * client yet. A POST, PUT or DELETE whose bytes may have reached a member is
 * never sent again (etcd's proxy re-sends it, which can create a second
 * in-order key for one POST: etcd-io/etcd#3169-style duplicate writes).
 */

/** Timeouts and shared state the forwarder needs; built once per handler. */
export interface ForwardSettings {
  readonly balancer: EndpointBalancer;
  /** ms to establish a TCP connection to an endpoint (etcd `--proxy-dial-timeout`). */
  readonly dialTimeout: number;
  /** ms to write the request once connected (etcd `--proxy-write-timeout`). */
  readonly writeTimeout: number;
  /** ms the upstream may stay silent once the request is written; 0 = no limit (etcd `--proxy-read-timeout`). */
  readonly readTimeout: number;
  /** ms from the request written to the response headers; 0 = no limit. Watches get their headers at once. */
  readonly responseTimeout: number;
  /** `Via` entry this proxy adds, to recognise requests that loop back to it. */
  readonly via: string;
  /** Upstream requests in flight, so that `close()` can abort them. */
  readonly inFlight: Set<ClientRequest>;
  /** The subset of `inFlight` that are long-poll watches (`wait=true`): a graceful stop aborts them at once. */
  readonly watches: Set<ClientRequest>;
  /** Where request outcomes are reported (the handler itself). */
  readonly events: EventEmitter<V2ProxyHandlerEvents>;
  /** Set when the handler stops (drain or close): requests it aborts say nothing against their endpoint. */
  stopping: boolean;
  /** The proxy's own CORS is configured: members' Access-Control-* headers are dropped (the handler sets the proxy's). */
  readonly stripCors: boolean;
}

/** https sockets whose TLS handshake is over: a pooled one is reused ready. */
const secured = new WeakSet<Socket>();

// Hop-by-hop headers (RFC 9110 section 7.6.1) plus Expect, which this proxy
// answers itself (node:http sends the 100 Continue) and so must not pass on.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'trailers',
  'transfer-encoding',
  'upgrade',
]);

const SAFE_METHODS = new Set(['GET', 'HEAD']);

/**
 * Forwards `req` to the endpoints in `endpoints`, in that order, following
 * the retry policy above. `body` is the request body already read (etcd's
 * bodies are small form posts), or `undefined` when the request has none.
 */
export function forwardRequest(
  req: IncomingMessage,
  res: ServerResponse,
  body: Buffer[] | undefined,
  bodyLength: number,
  endpoints: readonly Endpoint[],
  settings: ForwardSettings,
  arrived: number,
): void {
  const method = req.method ?? 'GET';
  const { events } = settings;
  const headers = upstreamRequestHeaders(req.rawHeaders, req.socket.remoteAddress, body === undefined ? -1 : bodyLength, settings.via);
  const retryable = SAFE_METHODS.has(method);
  const watch = req.url !== undefined && req.url.includes('wait=true');
  let clientGone = false;
  let current: ClientRequest | undefined;
  let currentEndpoint: Endpoint | undefined;

  const onClientClose = (): void => {
    if (res.writableFinished) return;
    clientGone = true;
    current?.destroy();
    if (events.listenerCount('clientAborted') > 0) {
      events.emit('clientAborted', { method, url: req.url ?? '', endpoint: currentEndpoint?.url, durationMs: performance.now() - arrived });
    }
  };
  res.once('close', onClientClose);

  const attempt = (index: number): void => {
    const endpoint = endpoints[index]!;
    let connected = false;
    let responded = false;
    let finished = false;
    let failed = false;
    let timer: NodeJS.Timeout | undefined;

    const up = endpoint.request({ method, path: req.url, headers, setHost: false });
    current = up;
    currentEndpoint = endpoint;
    settings.inFlight.add(up);
    if (watch) settings.watches.add(up);

    const fail = (err: UpstreamError): void => {
      up.destroy(err);
    };
    const done = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      settings.inFlight.delete(up);
      if (watch) settings.watches.delete(up);
      endpoint.release();
    };

    up.once('socket', (socket: Socket) => {
      // Over https nothing of the request is sent before the TLS handshake is done: that is when it counts as connected.
      const tls = socket instanceof TLSSocket;
      if (tls ? secured.has(socket) : !socket.connecting) {
        onConnected();
        return;
      }
      timer = setTimeout(
        () => fail(new UpstreamError(endpoint.url, 'connect', `dial timeout after ${settings.dialTimeout} ms`, { timeout: true })),
        settings.dialTimeout,
      );
      if (tls) {
        socket.once('secureConnect', () => {
          secured.add(socket);
          onConnected();
        });
      } else socket.once('connect', onConnected);
    });

    function onConnected(): void {
      connected = true;
      clearTimeout(timer);
      if (up.writableFinished) onWritten();
      else {
        if (settings.writeTimeout > 0) {
          timer = setTimeout(
            () => fail(new UpstreamError(endpoint.url, 'request', `write timeout after ${settings.writeTimeout} ms`, { timeout: true })),
            settings.writeTimeout,
          );
        }
        up.once('finish', onWritten);
      }
      if (settings.readTimeout > 0) {
        up.setTimeout(settings.readTimeout, () =>
          fail(
            new UpstreamError(endpoint.url, responded ? 'response' : 'request', `read timeout after ${settings.readTimeout} ms`, {
              timeout: true,
            }),
          ),
        );
      }
    }

    function onWritten(): void {
      clearTimeout(timer);
      // Written to a live connection: only a GET or HEAD may still be sent elsewhere.
      if (!retryable) body = undefined;
      if (settings.responseTimeout > 0 && !responded) {
        timer = setTimeout(
          () =>
            fail(
              new UpstreamError(endpoint.url, 'request', `no response headers within ${settings.responseTimeout} ms`, { timeout: true }),
            ),
          settings.responseTimeout,
        );
      }
    }

    up.once('response', (upRes: IncomingMessage) => {
      responded = true;
      clearTimeout(timer);
      const status = upRes.statusCode ?? 502;
      // A member that is stopping or lost its leader answers a read with 5xx
      // ("server stopped", "request timed out"): a GET or HEAD may still go
      // to another member, as nothing has reached the client yet.
      if (retryable && status >= 500 && status <= 504 && index + 1 < endpoints.length) {
        upRes.resume();
        onError(new UpstreamError(endpoint.url, 'request', `answered ${status}`));
        return;
      }
      if (endpoint.state === 'down') settings.balancer.reportAnswer(endpoint);
      if (events.listenerCount('forwarded') > 0) {
        events.emit('forwarded', {
          method,
          url: req.url ?? '',
          endpoint: endpoint.url,
          status,
          durationMs: performance.now() - arrived,
          attempts: index + 1,
          watch,
        });
      }
      res.writeHead(status, upRes.statusMessage, downstreamResponseHeaders(upRes.rawHeaders, settings.stripCors));
      // A watch (`?wait=true`) answers with headers at once and the event much
      // later, without a Content-Length: pass the headers on now.
      if (rawHeader(upRes.rawHeaders, 'content-length') === undefined) res.flushHeaders();
      upRes.once('error', onError);
      upRes.once('close', () => {
        if (!upRes.complete) onError(new UpstreamError(endpoint.url, 'response', 'the member closed the response before its end'));
      });
      upRes.once('end', done);
      upRes.pipe(res);
    });

    up.on('error', onError);

    function onError(err: Error): void {
      if (failed) return;
      failed = true;
      done();
      if (clientGone || settings.stopping) {
        debug('%s %s to %s aborted: %s', method, req.url, endpoint.url, clientGone ? 'client went away' : 'proxy closing');
        if (!clientGone) res.destroy();
        return;
      }
      // A TLS alert from the member (it refused this proxy's certificate) comes before it read any request.
      const phase = !connected || (!responded && isTlsHandshakeFailure(err)) ? 'connect' : responded ? 'response' : 'request';
      const failure =
        err instanceof UpstreamError ? err : new UpstreamError(endpoint.url, phase, endpoint.describeFailure(err), { cause: err });
      settings.balancer.reportFailure(endpoint, failure);
      debug('%s %s to %s failed (%s): %s', method, req.url, endpoint.url, failure.phase, failure.message);
      if (res.headersSent) {
        dropped('failed-response', 0, failure);
        res.destroy();
        return;
      }
      const mayRetry = failure.phase === 'connect' || (retryable && failure.phase === 'request');
      if (mayRetry && index + 1 < endpoints.length) {
        if (events.listenerCount('retried') > 0) {
          events.emit('retried', { method, url: req.url ?? '', from: endpoint.url, to: endpoints[index + 1]!.url, error: failure });
        }
        attempt(index + 1);
        return;
      }
      if (!mayRetry) {
        dropped(failure.timeout ? 'timeout' : 'failed-sending', failure.timeout ? 504 : 502, failure);
        sendJsonError(
          res,
          failure.timeout ? 504 : 502,
          `httpproxy: ${method} to ${endpoint.url} failed after it may have reached etcd (${failure.message}); not re-sent to another endpoint`,
        );
        return;
      }
      dropped('failed-sending', 502, failure);
      sendJsonError(res, 502, `httpproxy: unable to get response from ${index + 1} endpoint(s)`);
    }

    up.once('close', done);

    if (body !== undefined) for (const chunk of body) up.write(chunk);
    up.end();
  };

  function dropped(reason: DropReason, status: number, error: UpstreamError): void {
    if (events.listenerCount('dropped') > 0) events.emit('dropped', { method, url: req.url ?? '', reason, status, error });
  }

  attempt(0);
}

/**
 * The client's headers minus hop-by-hop ones (and those named in its
 * Connection header), with the client's address appended to X-Forwarded-For
 * and Content-Length set to the body read (`bodyLength` -1: no body).
 */
export function upstreamRequestHeaders(
  raw: readonly string[],
  clientAddress: string | undefined,
  bodyLength: number,
  via?: string,
): string[] {
  const named = connectionTokens(raw);
  const out: string[] = [];
  let forwardedFor: string | undefined;
  let viaChain: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || lower === 'expect' || lower === 'content-length') continue;
    if (named !== undefined && named.has(lower)) continue;
    if (lower === 'x-forwarded-for') {
      forwardedFor = forwardedFor === undefined ? raw[i + 1]! : `${forwardedFor}, ${raw[i + 1]!}`;
      continue;
    }
    if (lower === 'via' && via !== undefined) {
      viaChain = viaChain === undefined ? raw[i + 1]! : `${viaChain}, ${raw[i + 1]!}`;
      continue;
    }
    out.push(name, raw[i + 1]!);
  }
  if (clientAddress !== undefined) {
    out.push('X-Forwarded-For', forwardedFor === undefined ? clientAddress : `${forwardedFor}, ${clientAddress}`);
  } else if (forwardedFor !== undefined) {
    out.push('X-Forwarded-For', forwardedFor);
  }
  if (via !== undefined) out.push('Via', viaChain === undefined ? via : `${viaChain}, ${via}`);
  if (bodyLength >= 0) out.push('Content-Length', String(bodyLength));
  return out;
}

/**
 * The member's response headers minus hop-by-hop ones, and minus its
 * Access-Control-* headers when `stripCors` (the proxy sends its own).
 */
export function downstreamResponseHeaders(raw: readonly string[], stripCors = false): string[] {
  const named = connectionTokens(raw);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || (named !== undefined && named.has(lower))) continue;
    if (stripCors && lower.startsWith('access-control-')) continue;
    out.push(name, raw[i + 1]!);
  }
  return out;
}

/**
 * The first value of header `lowerName` (lower-case) in a raw header list.
 * Reading `req.headers` instead would build a whole object per message.
 */
export function rawHeader(raw: readonly string[], lowerName: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === lowerName.length && name.toLowerCase() === lowerName) return raw[i + 1];
  }
  return undefined;
}

/** Header names listed in Connection headers (RFC 9110 7.6.1), lower-cased; undefined when none. */
function connectionTokens(raw: readonly string[]): Set<string> | undefined {
  let tokens: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length !== 10 || raw[i]!.toLowerCase() !== 'connection') continue;
    for (const token of raw[i + 1]!.split(',')) {
      const t = token.trim().toLowerCase();
      if (t === '' || t === 'close' || t === 'keep-alive') continue;
      (tokens ??= new Set()).add(t);
    }
  }
  return tokens;
}
