/**
 * Where each etcd v3 gRPC call goes, read from the method its `:path` names
 * (`/etcdserverpb.KV/Put`): nothing of the message is decoded.
 *
 * - `leader`: writes and the cluster's administration (KV Put, DeleteRange,
 *   Txn, Compact; Lease grants and revokes; Cluster, Auth, Maintenance; the
 *   lock and election services): to the leader when the balancer knows it,
 *   as v2 writes go.
 * - `read`: KV Range and the other reads: spread like v2 reads.
 * - `stream`: Watch, LeaseKeepAlive and the other streams: spread, and a
 *   stream stays on its member for its life (it is one HTTP/2 stream there).
 */

/** How a call is routed; see the file's comment. */
export type GrpcRouteKind = 'leader' | 'read' | 'stream';

/** The gRPC call types, as go-grpc-prometheus labels them (`grpc_type`). */
export type GrpcCallType = 'unary' | 'server_stream' | 'client_stream' | 'bidi_stream';

/** What the forwarder needs to know of a call's method. */
export interface GrpcRoute {
  /** The service, e.g. `etcdserverpb.KV`; `unknown` for a path that is not an etcd method. */
  readonly service: string;
  /** The method, e.g. `Put`; `unknown` for a path that is not an etcd method. */
  readonly method: string;
  readonly kind: GrpcRouteKind;
  readonly type: GrpcCallType;
  /** True when the call changes the cluster's data or configuration (refused by a `readonly` proxy). */
  readonly mutates: boolean;
  /** True when a member without a leader cannot answer it (not sent to a `degraded` member). */
  readonly quorum: boolean;
  /** True for Maintenance/MoveLeader: once it succeeds, the leader the balancer knows is out of date. */
  readonly movesLeader: boolean;
}

type Entry = [method: string, kind: GrpcRouteKind, type: GrpcCallType, mutates: boolean];

const L = 'leader';
const R = 'read';
const S = 'stream';

/** etcd 3.4-3.6's services (api/etcdserverpb/rpc.proto, v3lock, v3election) and gRPC health. */
const SERVICES: Record<string, Entry[]> = {
  'etcdserverpb.KV': [
    ['Range', R, 'unary', false],
    ['Put', L, 'unary', true],
    ['DeleteRange', L, 'unary', true],
    ['Txn', L, 'unary', true],
    ['Compact', L, 'unary', true],
  ],
  'etcdserverpb.Watch': [['Watch', S, 'bidi_stream', false]],
  'etcdserverpb.Lease': [
    ['LeaseGrant', L, 'unary', true],
    ['LeaseRevoke', L, 'unary', true],
    ['LeaseKeepAlive', S, 'bidi_stream', true],
    ['LeaseTimeToLive', R, 'unary', false],
    ['LeaseLeases', R, 'unary', false],
  ],
  'etcdserverpb.Cluster': [
    ['MemberAdd', L, 'unary', true],
    ['MemberRemove', L, 'unary', true],
    ['MemberUpdate', L, 'unary', true],
    ['MemberList', L, 'unary', false],
    ['MemberPromote', L, 'unary', true],
  ],
  'etcdserverpb.Maintenance': [
    ['Alarm', L, 'unary', true],
    ['Status', L, 'unary', false],
    ['Defragment', L, 'unary', true],
    ['Hash', L, 'unary', false],
    ['HashKV', L, 'unary', false],
    ['Snapshot', L, 'server_stream', false],
    ['MoveLeader', L, 'unary', true],
    ['Downgrade', L, 'unary', true],
  ],
  'etcdserverpb.Auth': [
    ['AuthEnable', L, 'unary', true],
    ['AuthDisable', L, 'unary', true],
    ['AuthStatus', L, 'unary', false],
    ['Authenticate', L, 'unary', false],
    ['UserAdd', L, 'unary', true],
    ['UserGet', L, 'unary', false],
    ['UserList', L, 'unary', false],
    ['UserDelete', L, 'unary', true],
    ['UserChangePassword', L, 'unary', true],
    ['UserGrantRole', L, 'unary', true],
    ['UserRevokeRole', L, 'unary', true],
    ['RoleAdd', L, 'unary', true],
    ['RoleGet', L, 'unary', false],
    ['RoleList', L, 'unary', false],
    ['RoleDelete', L, 'unary', true],
    ['RoleGrantPermission', L, 'unary', true],
    ['RoleRevokePermission', L, 'unary', true],
  ],
  'v3lockpb.Lock': [
    ['Lock', L, 'unary', true],
    ['Unlock', L, 'unary', true],
  ],
  'v3electionpb.Election': [
    ['Campaign', L, 'unary', true],
    ['Proclaim', L, 'unary', true],
    ['Leader', R, 'unary', false],
    ['Observe', S, 'server_stream', false],
    ['Resign', L, 'unary', true],
  ],
  'grpc.health.v1.Health': [
    ['Check', R, 'unary', false],
    ['Watch', S, 'server_stream', false],
  ],
};

const KNOWN = new Map<string, GrpcRoute>();
for (const [service, entries] of Object.entries(SERVICES)) {
  for (const [method, kind, type, mutates] of entries) {
    // Range is linearizable unless the client asks otherwise (not visible without decoding): it needs a leader too.
    const quorum = kind === 'leader' || method === 'Range';
    const movesLeader = service === 'etcdserverpb.Maintenance' && method === 'MoveLeader';
    KNOWN.set(`/${service}/${method}`, { service, method, kind, type, mutates, quorum, movesLeader });
  }
}

/**
 * A method this table does not know (a newer etcd's, or not etcd's): sent
 * like a write (to the leader when known, never re-sent once sent), since
 * nothing says it is safe anywhere else; a `readonly` proxy refuses it.
 */
const UNKNOWN: GrpcRoute = { service: 'unknown', method: 'unknown', kind: 'leader', type: 'unary', mutates: true, quorum: true, movesLeader: false };

/** The route of the call whose `:path` is `path`. */
export function routeOf(path: string | undefined): GrpcRoute {
  return (path === undefined ? undefined : KNOWN.get(path)) ?? UNKNOWN;
}
