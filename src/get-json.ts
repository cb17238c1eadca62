import { request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';

/** Options of {@link getJson}. */
export interface GetJsonOptions {
  /** ms to establish the TCP connection. */
  dialTimeout: number;
  /** ms for the whole exchange, connection included. */
  timeout: number;
  /** Aborts the request. */
  signal?: AbortSignal | undefined;
  /** Largest body read, in bytes. Default: 1 MiB. */
  maxBytes?: number;
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
  const { dialTimeout, timeout, signal, maxBytes = 1024 * 1024 } = options;
  return new Promise((resolve, reject) => {
    const send = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = send(url, { method: 'GET', agent: false, headers: { Accept: 'application/json' }, signal });
    let connectTimer: NodeJS.Timeout | undefined;
    const totalTimer = setTimeout(() => req.destroy(new Error(`no answer within ${timeout} ms`)), timeout);
    totalTimer.unref();
    const settle = (): void => {
      clearTimeout(totalTimer);
      clearTimeout(connectTimer);
    };
    req.once('socket', (socket) => {
      if (!socket.connecting) return;
      connectTimer = setTimeout(() => req.destroy(new Error(`dial timeout after ${dialTimeout} ms`)), dialTimeout);
      connectTimer.unref();
      socket.once('connect', () => clearTimeout(connectTimer));
    });
    req.once('error', (err) => {
      settle();
      reject(err);
    });
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      let length = 0;
      res.on('data', (chunk: Buffer) => {
        length += chunk.length;
        if (length > maxBytes) req.destroy(new Error(`response larger than ${maxBytes} bytes`));
        else chunks.push(chunk);
      });
      res.once('error', (err) => {
        settle();
        reject(err);
      });
      res.once('end', () => {
        settle();
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text });
      });
    });
    req.end();
  });
}
