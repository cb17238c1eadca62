import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import createDebug from 'debug';
import type { EndpointBalancer } from './endpoint-balancer.js';
import { InvalidOptionError } from './errors.js';
import { forwardRequest } from './forward-request.js';
import type { ForwardSettings } from './forward-request.js';
import { sendJsonError } from './json-error.js';
import { describe, durationOption, positiveIntegerOption, signalOption } from './validate-options.js';

const debug = createDebug('etcd-v2-proxy:handler');

/**
 * `readwrite` forwards every request (etcd `--proxy on`); `readonly` forwards
 * GET and HEAD and answers every other method with 501 (etcd `--proxy readonly`).
 * @public
 */
export type ProxyMode = 'readwrite' | 'readonly';

/**
 * Options of {@link V2ProxyHandler}.
 * @public
 */
export interface V2ProxyHandlerOptions {
  /** Where requests go. */
  balancer: EndpointBalancer;
  /** etcd flag: `--proxy on` (`readwrite`) or `--proxy readonly`. Default: `readwrite`. */
  mode?: ProxyMode;
  /** ms to connect to an endpoint before trying the next. etcd flag: `--proxy-dial-timeout`. Default: 1000. */
  dialTimeout?: number;
  /** ms to write a request to an endpoint once connected; 0 = no limit. etcd flag: `--proxy-write-timeout`. Default: 5000. */
  writeTimeout?: number;
  /**
   * ms an endpoint may stay silent once the request is written; 0 = no limit,
   * so that long-poll watches can wait. etcd flag: `--proxy-read-timeout`. Default: 0.
   */
  readTimeout?: number;
  /**
   * Largest request body forwarded, in bytes; a larger one gets 413 and is not
   * forwarded. Default: 10 MiB, the most etcd's v2 API itself reads from a form.
   */
  maxBodyBytes?: number;
  /** Aborting it closes the handler, as {@link V2ProxyHandler.close} does. */
  signal?: AbortSignal;
}

/** The path etcd's proxy answers itself with the endpoints it uses. */
const CONFIG_PATH = '/v2/config/local/proxy';

/**
 * The etcd v2 proxy as a plain `(req, res)` function: give {@link V2ProxyHandler.handle}
 * to `http.createServer`, mount it in Express (`app.use(handler.handle)`), or
 * call it from Koa with `ctx.respond = false`.
 *
 * It answers `GET /v2/config/local/proxy` itself and forwards everything else
 * to the cluster (see `forward-request.ts` for the retry policy).
 * @public
 */
export class V2ProxyHandler {
  /** The mode requests are served in. */
  readonly mode: ProxyMode;
  /** Largest request body forwarded, in bytes. */
  readonly maxBodyBytes: number;
  /** The `(req, res)` function. Bound: pass it around freely. */
  readonly handle: (req: IncomingMessage, res: ServerResponse) => void;
  private readonly balancer: EndpointBalancer;
  private readonly settings: ForwardSettings;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.close();

  constructor(options: V2ProxyHandlerOptions) {
    if (options === null || typeof options !== 'object') {
      throw new InvalidOptionError('options', `expected an object with a balancer, got ${describe(options)}`);
    }
    const { balancer, mode = 'readwrite' } = options;
    if (balancer === null || typeof balancer !== 'object' || typeof balancer.order !== 'function') {
      throw new InvalidOptionError('balancer', `expected an EndpointBalancer, got ${describe(balancer)}`);
    }
    if (mode !== 'readwrite' && mode !== 'readonly') {
      throw new InvalidOptionError('mode', `expected "readwrite" or "readonly", got ${describe(mode)}`);
    }
    this.mode = mode;
    this.balancer = balancer;
    this.maxBodyBytes = positiveIntegerOption('maxBodyBytes', options.maxBodyBytes, 10 * 1024 * 1024);
    this.settings = {
      balancer,
      dialTimeout: durationOption('dialTimeout', options.dialTimeout, 1000, 1),
      writeTimeout: durationOption('writeTimeout', options.writeTimeout, 5000),
      readTimeout: durationOption('readTimeout', options.readTimeout, 0),
      inFlight: new Set<ClientRequest>(),
      closed: false,
    };
    this.signal = signalOption(options.signal);
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (this.signal?.aborted) this.close();
    this.handle = (req, res) => this.serve(req, res);
  }

  /** Number of upstream requests in flight (watches included). */
  get inFlight(): number {
    return this.settings.inFlight.size;
  }

  /**
   * Aborts every upstream request in flight (open watches included) and
   * answers later requests with 503. Does not own any listener: closing the
   * server is the caller's job (`createProxy()` does both). Idempotent.
   */
  close(): void {
    if (this.settings.closed) return;
    this.settings.closed = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    for (const up of this.settings.inFlight) up.destroy();
    this.settings.inFlight.clear();
  }

  private serve(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    if (url.startsWith(CONFIG_PATH) && (url.length === CONFIG_PATH.length || url[CONFIG_PATH.length] === '?')) {
      this.serveConfig(req, res);
      return;
    }
    const method = req.method ?? 'GET';
    if (this.mode === 'readonly' && method !== 'GET' && method !== 'HEAD') {
      res.writeHead(501, { 'Content-Length': '0' });
      res.end();
      req.resume();
      return;
    }
    if (this.settings.closed) {
      sendJsonError(res, 503, 'httpproxy: proxy is shutting down');
      req.resume();
      return;
    }
    const length = req.headers['content-length'];
    if (length === '0') this.forward(req, res, [], 0);
    else if (length === undefined && req.headers['transfer-encoding'] === undefined) this.forward(req, res, undefined, 0);
    else this.readBody(req, res);
  }

  private forward(req: IncomingMessage, res: ServerResponse, body: Buffer[] | undefined, length: number): void {
    const endpoints = this.balancer.order();
    if (endpoints.length === 0) {
      debug('zero endpoints currently available for %s %s', req.method, req.url);
      sendJsonError(res, 503, 'httpproxy: zero endpoints currently available');
      return;
    }
    forwardRequest(req, res, body, length, endpoints, this.settings);
  }

  /**
   * Reads the body as the chunks that arrived (no copy, no parsing) so that a
   * request that could not reach any member can be sent to the next one. The
   * chunks are dropped with the request.
   */
  private readBody(req: IncomingMessage, res: ServerResponse): void {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > this.maxBodyBytes) {
      this.refuseLargeBody(req, res);
      return;
    }
    const chunks: Buffer[] = [];
    let length = 0;
    const onData = (chunk: Buffer): void => {
      length += chunk.length;
      if (length > this.maxBodyBytes) {
        req.off('data', onData);
        req.off('end', onEnd);
        this.refuseLargeBody(req, res);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => this.forward(req, res, chunks, length);
    req.on('data', onData);
    req.once('end', onEnd);
  }

  private refuseLargeBody(req: IncomingMessage, res: ServerResponse): void {
    debug('refused %s %s: body over %d bytes', req.method, req.url, this.maxBodyBytes);
    // Close the connection after answering rather than reading the rest.
    sendJsonError(res, 413, `httpproxy: request body larger than ${this.maxBodyBytes} bytes`, { Connection: 'close' });
    res.once('finish', () => req.destroy());
  }

  private serveConfig(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('Method Not Allowed\n');
      return;
    }
    const body = `${JSON.stringify({ endpoints: this.balancer.available.map((e) => e.url) })}\n`;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}
