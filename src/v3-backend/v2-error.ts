/**
 * v2's errors, as etcd 3.4 answers them on `/v2/keys` (etcdserver/api/v2error):
 * the same numeric codes, messages and HTTP statuses, and the same JSON
 * (`cause` left out when empty, as Go's `omitempty`).
 */
import { EtcdProxyError } from '../errors.js';
import type { ServerResponse } from 'node:http';
import type { ClientResponse } from '../forwarding/forward-request.js';

/** v2's message of each error code. */
const MESSAGES: ReadonlyMap<number, string> = new Map([
  [100, 'Key not found'],
  [101, 'Compare failed'],
  [102, 'Not a file'],
  [103, 'Reached the max number of peers in the cluster'],
  [104, 'Not a directory'],
  [105, 'Key already exists'],
  [106, 'The prefix of given key is a keyword in etcd'],
  [107, 'Root is read only'],
  [108, 'Directory not empty'],
  [109, 'Peer address has existed'],
  [110, 'The request requires user authentication'],
  [200, 'Value is Required in POST form'],
  [201, 'PrevValue is Required in POST form'],
  [202, 'The given TTL in POST form is not a number'],
  [203, 'The given index in POST form is not a number'],
  [204, 'Value or TTL is required in POST form'],
  [205, 'The given timeout in POST form is not a number'],
  [206, 'Name is required in POST form'],
  [207, 'Index or value is required'],
  [208, 'Index and value cannot both be specified'],
  [209, 'Invalid field'],
  [210, 'Invalid POST form'],
  [211, 'Value provided on refresh'],
  [212, 'A TTL must be provided on refresh'],
  [300, 'Raft Internal Error'],
  [301, 'During Leader Election'],
  [400, 'watcher is cleared due to etcd recovery'],
  [401, 'The event in requested index is outdated and cleared'],
  [402, 'Standby Internal Error'],
  [403, 'Invalid active size'],
  [404, 'Standby remove delay'],
  [500, 'Client Internal Error'],
]);

/**
 * v2's HTTP status of each code; every other code is 400 (so 104 "Not a
 * directory" and 107 "Root is read only" are 400, as etcd answers them).
 */
const STATUSES: ReadonlyMap<number, number> = new Map([
  [100, 404],
  [101, 412],
  [102, 403],
  [105, 412],
  [108, 403],
  [110, 401],
  [300, 500],
  [301, 500],
]);

/**
 * The JSON body of a v2 error.
 * @public
 */
export interface V2ErrorJson {
  /** v2's error code, e.g. 100. */
  errorCode: number;
  /** v2's text for the code, e.g. `Key not found`. */
  message: string;
  /** What it is about, e.g. the key; left out when empty. */
  cause?: string;
  /** The v2 index the error was decided at. */
  index: number;
}

/**
 * A v2 error: `errorCode`, `message` and `cause` as etcd's v2 API gives them,
 * `index` the v2 index (etcd index) it was decided at, `status` the HTTP
 * status v2 answers it with. `JSON.stringify(err)` is v2's body.
 * @public
 */
export class V2Error extends EtcdProxyError {
  /** Always `ERR_ETCD_PROXY_V2`. */
  declare readonly code: 'ERR_ETCD_PROXY_V2';
  /** v2's error code (100 "Key not found", 101 "Compare failed"...). */
  readonly errorCode: number;
  /** What the error is about (a key, `[old != new]`...); '' when none. */
  override readonly cause: string;
  /** The v2 index when the error was decided (the `X-Etcd-Index` of the answer). */
  readonly index: number;
  /** The HTTP status v2 answers with. */
  readonly status: number;

  /** `message` comes from the code, as v2's table has it (an unknown code has an empty message). */
  constructor(errorCode: number, cause: string, index: number) {
    super('ERR_ETCD_PROXY_V2', MESSAGES.get(errorCode) ?? '');
    this.errorCode = errorCode;
    this.cause = cause;
    this.index = index;
    this.status = STATUSES.get(errorCode) ?? 400;
  }

  /** v2's JSON body (`cause` left out when empty). */
  toJSON(): V2ErrorJson {
    return this.cause === ''
      ? { errorCode: this.errorCode, message: this.message, index: this.index }
      : { errorCode: this.errorCode, message: this.message, cause: this.cause, index: this.index };
  }
}

/** Answers `e` as v2 does on /v2/keys: its status, JSON body and X-Etcd-Index, and X-Etcd-Cluster-Id when `clusterIdHex` is known. */
export function writeV2Error(res: Pick<ClientResponse, 'writeHead' | 'end'>, e: V2Error, clusterIdHex: string | undefined): void {
  const body = `${JSON.stringify(e)}\n`;
  const headers = ['Content-Type', 'application/json', 'X-Etcd-Index', String(e.index), 'Content-Length', String(Buffer.byteLength(body))];
  if (clusterIdHex !== undefined) headers.push('X-Etcd-Cluster-Id', clusterIdHex);
  res.writeHead(e.status, undefined, headers);
  res.end(body);
}

/** Go's 405 as etcd's v2 handlers write it: plain-text "Method Not Allowed", with `Allow` when given. */
export function writeMethodNotAllowed(res: ServerResponse, allow: string | undefined): void {
  const body = 'Method Not Allowed\n';
  if (allow !== undefined) res.setHeader('Allow', allow);
  res.writeHead(405, {
    'Content-Type': 'text/plain; charset=utf-8',
    'X-Content-Type-Options': 'nosniff',
    'Content-Length': String(Buffer.byteLength(body)),
  });
  res.end(body);
}
