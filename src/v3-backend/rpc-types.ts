/**
 * The etcd v3 messages the v3 backend sends and reads, as `@grpc/proto-loader`
 * decodes them from `etcd-proto.ts` (camelCase fields, 64-bit integers as
 * numbers, enums as their names, bytes as Buffers, unset fields at their
 * defaults). Only the fields the backend uses are declared.
 *
 * Revisions and lease IDs written by this backend stay below 2^53, so numbers
 * hold them exactly; member and cluster IDs do not, and are strings
 * (`ClusterMember`, `StatusResponse`).
 */

/** Most operations in one list (compare, success or failure) of a Txn a member takes: etcd's `--max-txn-ops` default. */
export const MAX_TXN_OPS = 128;

export interface ResponseHeader {
  /** Set only on the admin services (strings there): the KV side does not read it. */
  clusterId: number | string;
  memberId: number | string;
  revision: number;
  raftTerm: number;
}

export interface KeyValue {
  key: Buffer;
  createRevision: number;
  modRevision: number;
  version: number;
  value: Buffer;
  lease: number;
}

export type SortOrder = 'NONE' | 'ASCEND' | 'DESCEND';
export type SortTarget = 'KEY' | 'VERSION' | 'CREATE' | 'MOD' | 'VALUE';

export interface RangeRequest {
  key: Buffer;
  /** End of the range, exclusive; `\0` = every key from `key` on. */
  rangeEnd?: Buffer;
  limit?: number;
  /** Read as of this revision (0: the latest). */
  revision?: number;
  sortOrder?: SortOrder;
  sortTarget?: SortTarget;
  /** true: the member answers from its own state without asking the leader (v2's default read). */
  serializable?: boolean;
  keysOnly?: boolean;
  countOnly?: boolean;
}

export interface RangeResponse {
  header: ResponseHeader;
  kvs: KeyValue[];
  more: boolean;
  count: number;
}

export interface PutRequest {
  key: Buffer;
  value?: Buffer;
  lease?: number;
  prevKv?: boolean;
  ignoreValue?: boolean;
  ignoreLease?: boolean;
}

export interface PutResponse {
  header: ResponseHeader;
  prevKv: KeyValue | null;
}

export interface DeleteRangeRequest {
  key: Buffer;
  rangeEnd?: Buffer;
  prevKv?: boolean;
}

export interface DeleteRangeResponse {
  header: ResponseHeader;
  deleted: number;
  prevKvs: KeyValue[];
}

export type CompareResult = 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL';
export type CompareTarget = 'VERSION' | 'CREATE' | 'MOD' | 'VALUE' | 'LEASE';

export interface Compare {
  result: CompareResult;
  target: CompareTarget;
  key: Buffer;
  rangeEnd?: Buffer;
  /** The one of these that `target` names. */
  version?: number;
  createRevision?: number;
  modRevision?: number;
  value?: Buffer;
  lease?: number;
}

export interface RequestOp {
  requestRange?: RangeRequest;
  requestPut?: PutRequest;
  requestDeleteRange?: DeleteRangeRequest;
  requestTxn?: TxnRequest;
}

export interface ResponseOp {
  responseRange?: RangeResponse | null;
  responsePut?: PutResponse | null;
  responseDeleteRange?: DeleteRangeResponse | null;
  responseTxn?: TxnResponse | null;
  /** Which one is set (proto-loader's `oneofs`). */
  response?: 'responseRange' | 'responsePut' | 'responseDeleteRange' | 'responseTxn';
}

export interface TxnRequest {
  compare: Compare[];
  success: RequestOp[];
  failure: RequestOp[];
}

export interface TxnResponse {
  header: ResponseHeader;
  succeeded: boolean;
  responses: ResponseOp[];
}

export interface LeaseGrantResponse {
  header: ResponseHeader;
  /** The lease ID granted. */
  ID: number;
  /** Seconds. */
  TTL: number;
  error: string;
}

export interface LeaseTimeToLiveResponse {
  header: ResponseHeader;
  ID: number;
  /** Seconds left; -1 when the lease has expired or does not exist. */
  TTL: number;
  grantedTTL: number;
  keys: Buffer[];
}

export type EventType = 'PUT' | 'DELETE';

export interface WatchEvent {
  type: EventType;
  kv: KeyValue;
  /** With `prevKv` in the create request: the key before this event. */
  prevKv: KeyValue | null;
}

export interface WatchCreateRequest {
  key: Buffer;
  rangeEnd?: Buffer;
  startRevision?: number;
  progressNotify?: boolean;
  prevKv?: boolean;
  /** Chosen by the client (etcd 3.4+); 0: the member picks. */
  watchId?: number;
  fragment?: boolean;
}

export interface WatchResponse {
  header: ResponseHeader;
  watchId: number;
  created: boolean;
  canceled: boolean;
  /** Set when the requested start revision was compacted: the oldest revision still available. */
  compactRevision: number;
  cancelReason: string;
  fragment: boolean;
  events: WatchEvent[];
}

/** A member as v3's Cluster API lists it (IDs as decimal strings: they exceed 2^53). */
export interface ClusterMember {
  ID: string;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

export interface MemberListResponse {
  header: ResponseHeader;
  members: ClusterMember[];
}

export interface StatusResponse {
  header: ResponseHeader;
  version: string;
  dbSize: string;
  /** Member ID of the leader, as a decimal string; "0" when there is none. */
  leader: string;
  raftIndex: string;
  raftTerm: string;
  raftAppliedIndex: string;
  errors: string[];
  dbSizeInUse: string;
  isLearner: boolean;
}
