import { fromJSON } from '@grpc/proto-loader';
import type { MethodDefinition, Options as LoaderOptions } from '@grpc/proto-loader';
import protobuf from 'protobufjs';

/**
 * The part of etcd's v3 gRPC API the v3 backend uses, as .proto text kept in
 * the source (no .proto file is read at run time), and its method
 * definitions as `@grpc/proto-loader` makes them.
 *
 * Field names and numbers follow etcd 3.4's `etcdserverpb/rpc.proto` and
 * `mvccpb/kv.proto`; the packages are theirs, so the method paths are
 * `/etcdserverpb.KV/Range` and so on. Decoded messages have the shape
 * `rpc-types.ts` declares: field names camelCased by protobufjs
 * (`create_revision` becomes `createRevision`; `ID`, `TTL`, `peerURLs`,
 * `grantedTTL` stay as etcd spells them), enums as their names, bytes as
 * Buffers, unset fields at their defaults (a message field: `null`), and the
 * name of the set member of a oneof (`ResponseOp.response`).
 */

/** etcd's `mvccpb` package: a key-value pair and a watch event. */
export const MVCC_PROTO = `
syntax = "proto3";
package mvccpb;

message KeyValue {
  bytes key = 1;
  int64 create_revision = 2;
  int64 mod_revision = 3;
  int64 version = 4;
  bytes value = 5;
  int64 lease = 6;
}

message Event {
  enum EventType {
    PUT = 0;
    DELETE = 1;
  }
  EventType type = 1;
  KeyValue kv = 2;
  KeyValue prev_kv = 3;
}
`;

/** etcd's `etcdserverpb` package, reduced to the services and messages the v3 backend calls. */
export const RPC_PROTO = `
syntax = "proto3";
package etcdserverpb;

service KV {
  rpc Range(RangeRequest) returns (RangeResponse);
  rpc Put(PutRequest) returns (PutResponse);
  rpc DeleteRange(DeleteRangeRequest) returns (DeleteRangeResponse);
  rpc Txn(TxnRequest) returns (TxnResponse);
  rpc Compact(CompactionRequest) returns (CompactionResponse);
}

service Watch {
  rpc Watch(stream WatchRequest) returns (stream WatchResponse);
}

service Lease {
  rpc LeaseGrant(LeaseGrantRequest) returns (LeaseGrantResponse);
  rpc LeaseRevoke(LeaseRevokeRequest) returns (LeaseRevokeResponse);
  rpc LeaseKeepAlive(stream LeaseKeepAliveRequest) returns (stream LeaseKeepAliveResponse);
  rpc LeaseTimeToLive(LeaseTimeToLiveRequest) returns (LeaseTimeToLiveResponse);
}

service Cluster {
  rpc MemberAdd(MemberAddRequest) returns (MemberAddResponse);
  rpc MemberRemove(MemberRemoveRequest) returns (MemberRemoveResponse);
  rpc MemberUpdate(MemberUpdateRequest) returns (MemberUpdateResponse);
  rpc MemberList(MemberListRequest) returns (MemberListResponse);
}

service Maintenance {
  rpc Status(StatusRequest) returns (StatusResponse);
}

service Auth {
  rpc Authenticate(AuthenticateRequest) returns (AuthenticateResponse);
}

message ResponseHeader {
  uint64 cluster_id = 1;
  uint64 member_id = 2;
  int64 revision = 3;
  uint64 raft_term = 4;
}

message RangeRequest {
  enum SortOrder {
    NONE = 0;
    ASCEND = 1;
    DESCEND = 2;
  }
  enum SortTarget {
    KEY = 0;
    VERSION = 1;
    CREATE = 2;
    MOD = 3;
    VALUE = 4;
  }
  bytes key = 1;
  bytes range_end = 2;
  int64 limit = 3;
  int64 revision = 4;
  SortOrder sort_order = 5;
  SortTarget sort_target = 6;
  bool serializable = 7;
  bool keys_only = 8;
  bool count_only = 9;
  int64 min_mod_revision = 10;
  int64 max_mod_revision = 11;
  int64 min_create_revision = 12;
  int64 max_create_revision = 13;
}

message RangeResponse {
  ResponseHeader header = 1;
  repeated mvccpb.KeyValue kvs = 2;
  bool more = 3;
  int64 count = 4;
}

message PutRequest {
  bytes key = 1;
  bytes value = 2;
  int64 lease = 3;
  bool prev_kv = 4;
  bool ignore_value = 5;
  bool ignore_lease = 6;
}

message PutResponse {
  ResponseHeader header = 1;
  mvccpb.KeyValue prev_kv = 2;
}

message DeleteRangeRequest {
  bytes key = 1;
  bytes range_end = 2;
  bool prev_kv = 3;
}

message DeleteRangeResponse {
  ResponseHeader header = 1;
  int64 deleted = 2;
  repeated mvccpb.KeyValue prev_kvs = 3;
}

message RequestOp {
  oneof request {
    RangeRequest request_range = 1;
    PutRequest request_put = 2;
    DeleteRangeRequest request_delete_range = 3;
    TxnRequest request_txn = 4;
  }
}

message ResponseOp {
  oneof response {
    RangeResponse response_range = 1;
    PutResponse response_put = 2;
    DeleteRangeResponse response_delete_range = 3;
    TxnResponse response_txn = 4;
  }
}

message Compare {
  enum CompareResult {
    EQUAL = 0;
    GREATER = 1;
    LESS = 2;
    NOT_EQUAL = 3;
  }
  enum CompareTarget {
    VERSION = 0;
    CREATE = 1;
    MOD = 2;
    VALUE = 3;
    LEASE = 4;
  }
  CompareResult result = 1;
  CompareTarget target = 2;
  bytes key = 3;
  oneof target_union {
    int64 version = 4;
    int64 create_revision = 5;
    int64 mod_revision = 6;
    bytes value = 7;
    int64 lease = 8;
  }
  bytes range_end = 64;
}

message TxnRequest {
  repeated Compare compare = 1;
  repeated RequestOp success = 2;
  repeated RequestOp failure = 3;
}

message TxnResponse {
  ResponseHeader header = 1;
  bool succeeded = 2;
  repeated ResponseOp responses = 3;
}

message CompactionRequest {
  int64 revision = 1;
  bool physical = 2;
}

message CompactionResponse {
  ResponseHeader header = 1;
}

message WatchRequest {
  oneof request_union {
    WatchCreateRequest create_request = 1;
    WatchCancelRequest cancel_request = 2;
    WatchProgressRequest progress_request = 3;
  }
}

message WatchCreateRequest {
  enum FilterType {
    NOPUT = 0;
    NODELETE = 1;
  }
  bytes key = 1;
  bytes range_end = 2;
  int64 start_revision = 3;
  bool progress_notify = 4;
  repeated FilterType filters = 5;
  bool prev_kv = 6;
  int64 watch_id = 7;
  bool fragment = 8;
}

message WatchCancelRequest {
  int64 watch_id = 1;
}

message WatchProgressRequest {
}

message WatchResponse {
  ResponseHeader header = 1;
  int64 watch_id = 2;
  bool created = 3;
  bool canceled = 4;
  int64 compact_revision = 5;
  string cancel_reason = 6;
  bool fragment = 7;
  repeated mvccpb.Event events = 11;
}

message LeaseGrantRequest {
  int64 TTL = 1;
  int64 ID = 2;
}

message LeaseGrantResponse {
  ResponseHeader header = 1;
  int64 ID = 2;
  int64 TTL = 3;
  string error = 4;
}

message LeaseRevokeRequest {
  int64 ID = 1;
}

message LeaseRevokeResponse {
  ResponseHeader header = 1;
}

message LeaseKeepAliveRequest {
  int64 ID = 1;
}

message LeaseKeepAliveResponse {
  ResponseHeader header = 1;
  int64 ID = 2;
  int64 TTL = 3;
}

message LeaseTimeToLiveRequest {
  int64 ID = 1;
  bool keys = 2;
}

message LeaseTimeToLiveResponse {
  ResponseHeader header = 1;
  int64 ID = 2;
  int64 TTL = 3;
  int64 grantedTTL = 4;
  repeated bytes keys = 5;
}

message Member {
  uint64 ID = 1;
  string name = 2;
  repeated string peerURLs = 3;
  repeated string clientURLs = 4;
  bool isLearner = 5;
}

message MemberAddRequest {
  repeated string peerURLs = 1;
  bool isLearner = 2;
}

message MemberAddResponse {
  ResponseHeader header = 1;
  Member member = 2;
  repeated Member members = 3;
}

message MemberRemoveRequest {
  uint64 ID = 1;
}

message MemberRemoveResponse {
  ResponseHeader header = 1;
  repeated Member members = 2;
}

message MemberUpdateRequest {
  uint64 ID = 1;
  repeated string peerURLs = 2;
}

message MemberUpdateResponse {
  ResponseHeader header = 1;
  repeated Member members = 2;
}

message MemberListRequest {
}

message MemberListResponse {
  ResponseHeader header = 1;
  repeated Member members = 2;
}

message StatusRequest {
}

message StatusResponse {
  ResponseHeader header = 1;
  string version = 2;
  int64 dbSize = 3;
  uint64 leader = 4;
  uint64 raftIndex = 5;
  uint64 raftTerm = 6;
  uint64 raftAppliedIndex = 7;
  repeated string errors = 8;
  int64 dbSizeInUse = 9;
  bool isLearner = 10;
}

message AuthenticateRequest {
  string name = 1;
  string password = 2;
}

message AuthenticateResponse {
  ResponseHeader header = 1;
  string token = 2;
}
`;

/** One gRPC method: its path (`/etcdserverpb.KV/Range`) and its codec. */
export interface EtcdMethod {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  /** Encodes a request object (camelCase fields, as `rpc-types.ts`). */
  readonly serialize: (value: object) => Buffer;
  /** Decodes a response into a plain object (as `rpc-types.ts`). */
  readonly deserialize: (bytes: Buffer) => unknown;
}

/** The methods the v3 backend calls, by service and method name as etcd names them. */
export interface EtcdMethods {
  readonly KV: { readonly Range: EtcdMethod; readonly Put: EtcdMethod; readonly DeleteRange: EtcdMethod; readonly Txn: EtcdMethod; readonly Compact: EtcdMethod };
  readonly Watch: { readonly Watch: EtcdMethod };
  readonly Lease: { readonly LeaseGrant: EtcdMethod; readonly LeaseRevoke: EtcdMethod; readonly LeaseKeepAlive: EtcdMethod; readonly LeaseTimeToLive: EtcdMethod };
  readonly Cluster: { readonly MemberAdd: EtcdMethod; readonly MemberRemove: EtcdMethod; readonly MemberUpdate: EtcdMethod; readonly MemberList: EtcdMethod };
  readonly Maintenance: { readonly Status: EtcdMethod };
  readonly Auth: { readonly Authenticate: EtcdMethod };
}

const SERVICES: { readonly [S in keyof EtcdMethods]: readonly (keyof EtcdMethods[S])[] } = {
  KV: ['Range', 'Put', 'DeleteRange', 'Txn', 'Compact'],
  Watch: ['Watch'],
  Lease: ['LeaseGrant', 'LeaseRevoke', 'LeaseKeepAlive', 'LeaseTimeToLive'],
  Cluster: ['MemberAdd', 'MemberRemove', 'MemberUpdate', 'MemberList'],
  Maintenance: ['Status'],
  Auth: ['Authenticate'],
};

/**
 * How 64-bit integers are decoded, per service: revisions and lease IDs
 * (KV, Watch, Lease) stay below 2^53 in this backend and are numbers;
 * member and cluster IDs (Cluster, Maintenance, Auth) do not, and are
 * decimal strings.
 */
const LONGS_AS: { readonly [S in keyof EtcdMethods]: typeof Number | typeof String } = {
  KV: Number,
  Watch: Number,
  Lease: Number,
  Cluster: String,
  Maintenance: String,
  Auth: String,
};

let loaded: EtcdMethods | undefined;

/**
 * The etcd methods, loaded on first use (parsed once, then made into method
 * definitions twice: numbers for KV/Watch/Lease, strings for the rest).
 */
export function etcdMethods(): EtcdMethods {
  if (loaded !== undefined) return loaded;
  const root = new protobuf.Root();
  // keepCase false: protobufjs camelCases snake_case names (create_revision ->
  // createRevision) and leaves names without '_' (ID, TTL, peerURLs) as they are.
  protobuf.parse(MVCC_PROTO, root, { keepCase: false });
  protobuf.parse(RPC_PROTO, root, { keepCase: false });
  const json = root.toJSON();
  const common: LoaderOptions = { enums: String, bytes: Buffer, defaults: true, oneofs: true };
  const byLongs = new Map<typeof Number | typeof String, ReturnType<typeof fromJSON>>();
  const out: Record<string, Record<string, EtcdMethod>> = {};
  for (const service of Object.keys(SERVICES) as (keyof EtcdMethods)[]) {
    const longs = LONGS_AS[service];
    let pkg = byLongs.get(longs);
    if (pkg === undefined) {
      pkg = fromJSON(json, { ...common, longs });
      byLongs.set(longs, pkg);
    }
    const definition = pkg[`etcdserverpb.${service}`] as Record<string, MethodDefinition<object, unknown>> | undefined;
    if (definition === undefined) throw new Error(`etcd-proto: service etcdserverpb.${service} is missing`);
    const methods: Record<string, EtcdMethod> = {};
    for (const name of SERVICES[service] as readonly string[]) {
      const m = definition[name];
      if (m === undefined) throw new Error(`etcd-proto: method etcdserverpb.${service}/${name} is missing`);
      methods[name] = {
        path: m.path,
        requestStream: m.requestStream,
        responseStream: m.responseStream,
        serialize: m.requestSerialize,
        deserialize: m.responseDeserialize,
      };
    }
    out[service] = methods;
  }
  loaded = out as unknown as EtcdMethods;
  return loaded;
}
