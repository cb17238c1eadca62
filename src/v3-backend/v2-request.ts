/**
 * A `/v2/keys` request read the way etcd's v2 API reads it (etcd 3.4,
 * `v2http.parseKeyRequest`): the form is the query string plus, for PUT and
 * POST with a form body, the body's fields (the body's first); flags take
 * Go's `strconv.ParseBool` spellings; numbers are unsigned decimals; each bad
 * field is the v2 error etcd answers (203 for an index, 202 for a TTL, 209 for
 * a flag, 201 for an empty `prevValue`, 211/212 for refresh, 210 for a form
 * that does not parse).
 */
import { KeyLayout } from './key-layout.js';
import { V2Error } from './v2-error.js';

/** The path prefix of the v2 keys API. */
export const KEYS_PREFIX = '/v2/keys';

/** A parsed `/v2/keys` request. */
export interface V2KeysRequest {
  readonly method: string;
  /** The key, cleaned as etcd cleans it (`/a/../b/` is `/b`; the root is `/`). */
  readonly path: string;
  /** The decoded request path after `/v2/keys`, not cleaned: what v2 auth checks permissions against, as native v2 does. */
  readonly authPath: string;
  /** `value`: its first value, '' when not given (as Go's FormValue). */
  readonly value: string;
  readonly dir: boolean;
  /** `prevValue`; undefined when not given (an empty one is refused). */
  readonly prevValue: string | undefined;
  /** `prevIndex`; 0 when not given. */
  readonly prevIndex: number;
  /** `prevExist`; undefined when not given. */
  readonly prevExist: boolean | undefined;
  readonly wait: boolean;
  /** `waitIndex`; 0 when not given. */
  readonly waitIndex: number;
  readonly recursive: boolean;
  readonly sorted: boolean;
  readonly quorum: boolean;
  readonly stream: boolean;
  readonly noValueOnSuccess: boolean;
  /** `ttl` in seconds; undefined when not given or empty (the node is then permanent). */
  readonly ttl: number | undefined;
  readonly refresh: boolean;
}

/** Go's strconv.ParseBool. */
function parseBool(text: string): boolean | undefined {
  switch (text) {
    case '1': case 't': case 'T': case 'true': case 'TRUE': case 'True':
      return true;
    case '0': case 'f': case 'F': case 'false': case 'FALSE': case 'False':
      return false;
    default:
      return undefined;
  }
}

const UINT64_MAX = 18446744073709551615n;

/** Go's strconv.ParseUint(text, 10, 64), as a number (indexes and TTLs past 2^53 are refused as etcd refuses overflow). */
function parseUint(text: string): number | undefined {
  if (!/^[0-9]+$/.test(text)) return undefined;
  if (text.length > 15) {
    const big = BigInt(text);
    if (big > UINT64_MAX || big > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  }
  return Number(text);
}

/** Go's url.QueryUnescape: `+` is a space, `%XX` a byte; anything else after `%` is an error naming it. */
function unescape(part: string): string {
  if (!part.includes('%') && !part.includes('+')) return part;
  const bad = /%(?![0-9A-Fa-f]{2})(.{0,2})/s.exec(part);
  if (bad !== null) throw new V2Error(210, `invalid URL escape "%${bad[1]}"`, 0);
  return Buffer.from(part.replaceAll('+', ' ').replace(/%([0-9A-Fa-f]{2})/g, (_m, hex: string) => String.fromCharCode(Number.parseInt(hex, 16))), 'latin1').toString('utf8');
}

/** Appends the fields of a query string or form body to `form`, in order (Go's url.ParseQuery). */
export function parseForm(text: string, form: Map<string, string[]>): void {
  if (text === '') return;
  for (const pair of text.split('&')) {
    if (pair === '') continue;
    if (pair.includes(';')) throw new V2Error(210, 'invalid semicolon separator in query', 0);
    const eq = pair.indexOf('=');
    const key = unescape(eq < 0 ? pair : pair.slice(0, eq));
    const value = eq < 0 ? '' : unescape(pair.slice(eq + 1));
    const values = form.get(key);
    if (values === undefined) form.set(key, [value]);
    else values.push(value);
  }
}

/**
 * Reads a `/v2/keys` request. `target` is the request target as received
 * (`/v2/keys/a%20b?recursive=true`), `body` the form body of a PUT or POST
 * with `Content-Type: application/x-www-form-urlencoded` (else undefined).
 * @throws V2Error as etcd answers a malformed request.
 */
export function parseKeysRequest(method: string, target: string, body: string | undefined): V2KeysRequest {
  const q = target.indexOf('?');
  const rawPath = q < 0 ? target : target.slice(0, q);
  const form = new Map<string, string[]>();
  // Go: body fields first, then the query's (FormValue takes the first).
  if (body !== undefined) parseForm(body, form);
  if (q >= 0) parseForm(target.slice(q + 1), form);
  let decoded: string;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    throw new V2Error(210, `invalid URL escape in path "${rawPath}"`, 0);
  }
  if (!decoded.startsWith(KEYS_PREFIX)) throw new V2Error(210, 'incorrect key prefix', 0);
  const first = (name: string): string | undefined => form.get(name)?.[0];
  const uint = (name: string, code: number): number => {
    const text = first(name);
    if (text === undefined) return 0;
    const n = parseUint(text);
    if (n === undefined) throw new V2Error(code, `invalid value for "${name}"`, 0);
    return n;
  };
  const flag = (name: string, quoted = true): boolean => {
    const text = first(name);
    if (text === undefined) return false;
    const b = parseBool(text);
    if (b === undefined) throw new V2Error(209, quoted ? `invalid value for "${name}"` : `invalid value for ${name}`, 0);
    return b;
  };
  const prevIndex = uint('prevIndex', 203);
  const waitIndex = uint('waitIndex', 203);
  const recursive = flag('recursive');
  const sorted = flag('sorted');
  const waitFlag = flag('wait');
  const dir = flag('dir');
  const quorum = flag('quorum');
  const stream = flag('stream');
  if (waitFlag && method !== 'GET') throw new V2Error(209, '"wait" can only be used with GET requests', 0);
  // etcd makes a quorum GET a linearizable read before it looks at `wait`: no watch.
  const wait = waitFlag && !quorum;
  const prevValue = first('prevValue');
  if (prevValue === '') throw new V2Error(201, '"prevValue" cannot be empty', 0);
  const noValueOnSuccess = flag('noValueOnSuccess');
  let ttl: number | undefined;
  const ttlText = first('ttl');
  if (ttlText !== undefined && ttlText !== '') {
    ttl = parseUint(ttlText);
    if (ttl === undefined) throw new V2Error(202, 'invalid value for "ttl"', 0);
  }
  const prevExist = form.has('prevExist') ? flag('prevExist', false) : undefined;
  const refresh = form.has('refresh') ? flag('refresh', false) : false;
  if (refresh) {
    if ((first('value') ?? '') !== '') throw new V2Error(211, 'A value was provided on a refresh', 0);
    if (ttl === undefined) throw new V2Error(212, 'No TTL value set', 0);
  }
  return {
    method,
    path: KeyLayout.normalize(decoded.slice(KEYS_PREFIX.length)),
    authPath: decoded.slice(KEYS_PREFIX.length),
    value: first('value') ?? '',
    dir,
    prevValue,
    prevIndex,
    prevExist,
    wait,
    waitIndex,
    recursive,
    sorted,
    quorum,
    stream,
    noValueOnSuccess,
    ttl,
    refresh,
  };
}
