import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import createDebug from 'debug';
import type { Endpoint, EndpointBalancer } from './endpoint-balancer.js';
import { UpstreamError } from './errors.js';
import { sendJsonError } from './json-error.js';

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
  /** Upstream requests in flight, so that `close()` can abort them. */
  readonly inFlight: Set<ClientRequest>;
  /** Set by the handler's `close()`: aborted requests then say nothing against their endpoint. */
  closed: boolean;
}

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
): void {
  const method = req.method ?? 'GET';
  const headers = upstreamRequestHeaders(req.rawHeaders, req.socket.remoteAddress, body === undefined ? -1 : bodyLength);
  const retryable = SAFE_METHODS.has(method);
  let clientGone = false;
  let current: ClientRequest | undefined;

  const onClientClose = (): void => {
    if (res.writableFinished) return;
    clientGone = true;
    current?.destroy();
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
    settings.inFlight.add(up);

    const fail = (err: UpstreamError): void => {
      up.destroy(err);
    };
    const done = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      settings.inFlight.delete(up);
      endpoint.release();
    };

    up.once('socket', (socket: Socket) => {
      if (!socket.connecting) {
        onConnected();
        return;
      }
      timer = setTimeout(
        () => fail(new UpstreamError(endpoint.url, 'connect', `dial timeout after ${settings.dialTimeout} ms`, { timeout: true })),
        settings.dialTimeout,
      );
      socket.once('connect', onConnected);
    });

    function onConnected(): void {
      connected = true;
      clearTimeout(timer);
      if (settings.writeTimeout > 0 && !up.writableFinished) {
        timer = setTimeout(
          () => fail(new UpstreamError(endpoint.url, 'request', `write timeout after ${settings.writeTimeout} ms`, { timeout: true })),
          settings.writeTimeout,
        );
        up.once('finish', () => clearTimeout(timer));
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

    up.once('response', (upRes: IncomingMessage) => {
      responded = true;
      const status = upRes.statusCode ?? 502;
      res.writeHead(status, upRes.statusMessage, downstreamResponseHeaders(upRes.rawHeaders));
      // A watch (`?wait=true`) answers with headers at once and the event much
      // later, without a Content-Length: pass the headers on now.
      if (upRes.headers['content-length'] === undefined) res.flushHeaders();
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
      if (clientGone || settings.closed) {
        debug('%s %s to %s aborted: %s', method, req.url, endpoint.url, clientGone ? 'client went away' : 'proxy closing');
        if (!clientGone) res.destroy();
        return;
      }
      const phase = !connected ? 'connect' : responded ? 'response' : 'request';
      const failure =
        err instanceof UpstreamError ? err : new UpstreamError(endpoint.url, phase, err.message, { cause: err });
      settings.balancer.reportFailure(endpoint, failure);
      debug('%s %s to %s failed (%s): %s', method, req.url, endpoint.url, failure.phase, failure.message);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const mayRetry = failure.phase === 'connect' || (retryable && failure.phase === 'request');
      if (mayRetry && index + 1 < endpoints.length) {
        attempt(index + 1);
        return;
      }
      if (!mayRetry) {
        sendJsonError(
          res,
          failure.timeout ? 504 : 502,
          `httpproxy: ${method} to ${endpoint.url} failed after it may have reached etcd (${failure.message}); not re-sent to another endpoint`,
        );
        return;
      }
      sendJsonError(res, 502, `httpproxy: unable to get response from ${index + 1} endpoint(s)`);
    }

    up.once('close', done);

    if (body !== undefined) for (const chunk of body) up.write(chunk);
    up.end();
  };

  attempt(0);
}

/**
 * The client's headers minus hop-by-hop ones (and those named in its
 * Connection header), with the client's address appended to X-Forwarded-For
 * and Content-Length set to the body read (`bodyLength` -1: no body).
 */
export function upstreamRequestHeaders(raw: readonly string[], clientAddress: string | undefined, bodyLength: number): string[] {
  const named = connectionTokens(raw);
  const out: string[] = [];
  let forwardedFor: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || lower === 'expect' || lower === 'content-length') continue;
    if (named !== undefined && named.has(lower)) continue;
    if (lower === 'x-forwarded-for') {
      forwardedFor = forwardedFor === undefined ? raw[i + 1]! : `${forwardedFor}, ${raw[i + 1]!}`;
      continue;
    }
    out.push(name, raw[i + 1]!);
  }
  if (clientAddress !== undefined) {
    out.push('X-Forwarded-For', forwardedFor === undefined ? clientAddress : `${forwardedFor}, ${clientAddress}`);
  } else if (forwardedFor !== undefined) {
    out.push('X-Forwarded-For', forwardedFor);
  }
  if (bodyLength >= 0) out.push('Content-Length', String(bodyLength));
  return out;
}

/** The member's response headers minus hop-by-hop ones. */
export function downstreamResponseHeaders(raw: readonly string[]): string[] {
  const named = connectionTokens(raw);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || (named !== undefined && named.has(lower))) continue;
    out.push(name, raw[i + 1]!);
  }
  return out;
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
