import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidOptionError } from '../errors.js';
import type { ClientResponse } from '../forwarding/forward-request.js';
import { describe } from '../validate-options.js';

/**
 * The proxy's CORS answer, with etcd's `--cors` meaning: a list of allowed
 * origins, `*` for any. Built once per handler; per request it costs a Set
 * look-up and three `setHeader` calls.
 */

// etcd's values (embed/serve.go addCORSHeader).
const ALLOW_METHODS = 'POST, GET, OPTIONS, PUT, DELETE';
const ALLOW_HEADERS = 'accept, content-type, authorization';

/** A checked `cors` option. */
export interface CorsPolicy {
  /** The allowed origins as configured (normalized), `['*']` for any. */
  readonly origins: readonly string[];
  /** Sets the proxy's CORS headers on `res` for `req`'s Origin (nothing when that origin is not allowed). */
  apply(req: IncomingMessage, res: ServerResponse): void;
  /**
   * Only when the headers do not depend on the request (`*`): makes every
   * head written to `res` (createProxy's own writer, which has no
   * `setHeader`) end with them, a member's head passed on as received
   * included; the member's own Access-Control-* lines are dropped by the
   * forwarder (`stripCors`), so each is sent once.
   */
  readonly addTo?: (res: ClientResponse) => void;
}

/**
 * Checks a `cors` option: `undefined` (no CORS of the proxy's own: the
 * members' headers pass through), `"*"`, or origins as a comma-separated
 * string or an array (`scheme://host[:port]`).
 * @throws {@link InvalidOptionError} naming `cors` and the bad entry.
 */
export function corsOption(value: unknown): CorsPolicy | undefined {
  if (value === undefined) return undefined;
  let entries: unknown[];
  if (typeof value === 'string') entries = value.split(',');
  else if (Array.isArray(value)) entries = value.flatMap((v: unknown) => (typeof v === 'string' ? v.split(',') : [v]));
  else throw new InvalidOptionError('cors', `expected "*" or a comma-separated list of origins (scheme://host[:port]), got ${describe(value)}`);
  const origins = new Set<string>();
  for (const entry of entries) {
    if (typeof entry !== 'string') throw new InvalidOptionError('cors', `expected origins as strings, got ${describe(entry)}`);
    const e = entry.trim();
    if (e === '*') {
      origins.add('*');
      continue;
    }
    origins.add(originOf(e));
  }
  if (origins.size === 0) throw new InvalidOptionError('cors', 'expected "*" or at least one origin');
  if (origins.has('*')) return anyOrigin;
  return specificOrigins(origins);
}

function originOf(entry: string): string {
  const problem = `${JSON.stringify(entry)} is not an origin: expected "*" or scheme://host[:port] (e.g. https://app.example.com)`;
  let u: URL;
  try {
    u = new URL(entry);
  } catch {
    throw new InvalidOptionError('cors', problem);
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.username !== '' || u.password !== '') throw new InvalidOptionError('cors', problem);
  if (u.search !== '' || u.hash !== '' || !/^[a-z]+:\/\/[^/]+\/?$/i.test(entry)) throw new InvalidOptionError('cors', problem);
  // `URL.origin` is what browsers send: lower-case, default port left out.
  return u.origin;
}

/** The same three headers as a header list, for {@link CorsPolicy.addTo}. */
const ANY_ORIGIN_HEADERS: readonly string[] = ['Access-Control-Allow-Methods', ALLOW_METHODS, 'Access-Control-Allow-Origin', '*', 'Access-Control-Allow-Headers', ALLOW_HEADERS];

/** The same as header lines, for a head passed on as received. */
const ANY_ORIGIN_LINES = Buffer.from(ANY_ORIGIN_HEADERS.map((v, i) => (i % 2 === 0 ? `${v}: ` : `${v}\r\n`)).join(''), 'latin1');

/** `writeHead` of a writer given to `addTo`: its class's own, with the three headers added. */
function writeHeadWithCors(this: ClientResponse, status: number, statusText: string | undefined, headers: string[]): unknown {
  return (Object.getPrototypeOf(this) as ClientResponse).writeHead.call(this, status, statusText, headers.concat(ANY_ORIGIN_HEADERS));
}

/** `writeRawHead` of a writer given to `addTo`: the member's lines (without its own Access-Control-* ones), then the three. */
function writeRawHeadWithCors(this: ClientResponse, lines: Buffer, status: number, lengthUnknown: boolean, hasDate: boolean): unknown {
  const own = (Object.getPrototypeOf(this) as ClientResponse).writeRawHead!;
  return own.call(this, Buffer.concat([lines, ANY_ORIGIN_LINES]), status, lengthUnknown, hasDate);
}

const anyOrigin: CorsPolicy = {
  origins: ['*'],
  apply(_req, res) {
    res.setHeader('Access-Control-Allow-Methods', ALLOW_METHODS);
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Allow-Headers', ALLOW_HEADERS);
  },
  addTo(res) {
    res.writeHead = writeHeadWithCors;
    if (res.writeRawHead !== undefined) res.writeRawHead = writeRawHeadWithCors;
  },
};

function specificOrigins(allowed: ReadonlySet<string>): CorsPolicy {
  return {
    origins: [...allowed],
    apply(req, res) {
      // The answer depends on Origin: caches must keep one per origin.
      res.setHeader('Vary', 'Origin');
      const origin = req.headers.origin;
      if (origin === undefined || !allowed.has(origin)) return;
      res.setHeader('Access-Control-Allow-Methods', ALLOW_METHODS);
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Allow-Headers', ALLOW_HEADERS);
    },
  };
}

/** A CORS preflight: OPTIONS with Origin and Access-Control-Request-Method. */
export function isPreflight(req: IncomingMessage): boolean {
  return req.method === 'OPTIONS' && req.headers.origin !== undefined && req.headers['access-control-request-method'] !== undefined;
}
