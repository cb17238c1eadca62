import { request as httpRequest } from 'node:http';
import type { ClientRequest, IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import type { LookupFunction } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { explainTlsFailure, tlsConnectOptions } from '../tls-options.js';
import type { UpstreamTls } from '../tls-options.js';

/** Options of {@link getJson}. */
export interface GetJsonOptions {
  /** ms to establish the TCP connection. */
  dialTimeout: number;
  /** ms for the whole exchange, connection included; 0: no bound (long-polling watches). */
  timeout: number;
  /** Aborts the request. */
  signal?: AbortSignal | undefined;
  /** Largest body read, in bytes. Default: 1 MiB. */
  maxBytes?: number;
  /**
   * An `http://host:port` forward proxy to send the request through: an
   * absolute-form request for an http:// URL, a CONNECT tunnel for https://.
   */
  proxy?: URL | undefined;
  /** Resolves host names (default: the system's `dns.lookup`). */
  lookup?: LookupFunction | undefined;
  /** Certificates for an https:// URL; a TLS failure is explained in the error's message. */
  tls?: UpstreamTls | undefined;
}

/** What {@link getJson} got: the status, headers and the parsed body (`undefined` when it is not JSON). */
export interface JsonResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: unknown;
  text: string;
}

/**
 * One `GET` on its own connection (no pooling: control-plane requests such
 * as `/members` are rare), bounded by a dial timeout and a total timeout.
 * Rejects with an Error whose message says which bound was hit.
 */
export function getJson(url: string, options: GetJsonOptions): Promise<JsonResponse> {
  const { dialTimeout, timeout, signal, maxBytes = 1024 * 1024, proxy, lookup, tls } = options;
  const tlsOptions = tlsConnectOptions(tls);
  return new Promise((resolve, reject) => {
    let settled = false;
    let current: ClientRequest | undefined;
    let connectTimer: NodeJS.Timeout | undefined;
    let totalTimer: NodeJS.Timeout | undefined;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(totalTimer);
      clearTimeout(connectTimer);
      current?.destroy();
      reject(err);
    };
    // A TLS failure says which certificate was wrong; the error keeps its code.
    const failTls = (err: Error): void => {
      const explained = explainTlsFailure(err, tls);
      fail(explained === err.message ? err : Object.assign(new Error(explained, { cause: err }), { code: (err as NodeJS.ErrnoException).code }));
    };
    if (timeout > 0) {
      totalTimer = setTimeout(() => fail(new Error(`no answer within ${timeout} ms`)), timeout);
      totalTimer.unref();
    }
    const watchDial = (req: ClientRequest): void => {
      req.once('socket', (socket) => {
        if (!socket.connecting) return;
        connectTimer = setTimeout(() => fail(new Error(`dial timeout after ${dialTimeout} ms`)), dialTimeout);
        connectTimer.unref();
        socket.once('connect', () => clearTimeout(connectTimer));
      });
    };
    const onResponse = (res: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      let length = 0;
      res.on('data', (chunk: Buffer) => {
        length += chunk.length;
        if (length > maxBytes) fail(new Error(`response larger than ${maxBytes} bytes`));
        else chunks.push(chunk);
      });
      res.on('error', fail);
      res.once('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(totalTimer);
        clearTimeout(connectTimer);
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text });
      });
    };
    const headers = { Accept: 'application/json' };
    const target = new URL(url);

    if (proxy === undefined || target.protocol === 'http:') {
      const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
      const req =
        proxy === undefined
          ? send(url, { method: 'GET', agent: false, headers, signal, lookup, ...tlsOptions })
          : // An absolute-form request to the forward proxy.
            httpRequest({
              host: proxy.hostname.replace(/^\[|\]$/g, ''),
              port: proxy.port === '' ? 80 : Number(proxy.port),
              method: 'GET',
              path: url,
              agent: false,
              headers: { ...headers, Host: target.host },
              signal,
              lookup,
            });
      current = req;
      watchDial(req);
      req.on('error', failTls);
      req.once('response', onResponse);
      req.end();
      return;
    }

    // https through the proxy: CONNECT host:port, then TLS inside the tunnel.
    const authority = `${target.hostname}:${target.port === '' ? 443 : target.port}`;
    const tunnel = httpRequest({
      host: proxy.hostname.replace(/^\[|\]$/g, ''),
      port: proxy.port === '' ? 80 : Number(proxy.port),
      method: 'CONNECT',
      path: authority,
      agent: false,
      headers: { Host: authority },
      signal,
      lookup,
    });
    current = tunnel;
    watchDial(tunnel);
    tunnel.on('error', fail);
    tunnel.once('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        fail(new Error(`proxy ${proxy.origin} answered CONNECT ${authority} with ${res.statusCode}`));
        return;
      }
      // The certificate is checked against `host` (servername || host); SNI carries
      // host names only (RFC 6066: node warns, DEP0123, when given an IP address).
      const host = target.hostname.replace(/^\[|\]$/g, '');
      const req = httpsRequest(url, {
        method: 'GET',
        // No `agent` (not even false, which makes a new Agent that ignores
        // createConnection and dials the target directly): the request must
        // use the tunnel's socket.
        headers,
        signal,
        createConnection: () => tlsConnect({ socket, host, ...(isIP(host) === 0 ? { servername: host } : {}), ...tlsOptions }),
      });
      current = req;
      req.on('error', failTls);
      req.once('response', onResponse);
      req.end();
    });
    tunnel.end();
  });
}
