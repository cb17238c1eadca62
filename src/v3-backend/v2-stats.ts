/**
 * The bodies of etcd v2's `/v2/stats/self`, `/v2/stats/leader` and
 * `/v2/stats/store`, built from what a v3 cluster tells (Maintenance.Status,
 * Cluster.MemberList) and from counters this proxy keeps. Every field native
 * v2 (etcd 3.4 `--enable-v2`) writes is present, in its order and type; a
 * field v3 cannot give has a neutral value. Where each field comes from:
 *
 * | answer | field | source |
 * | --- | --- | --- |
 * | stats/self | `name` | Cluster.MemberList: the name of the member that answered Maintenance.Status |
 * | stats/self | `id` | Maintenance.Status: `header.member_id` of that member, v2's hex |
 * | stats/self | `state` | Maintenance.Status: `"StateLeader"` when its `leader` is that member, `"StateFollower"` otherwise |
 * | stats/self | `startTime` | this proxy: when it first saw that member answer (v3 does not tell a member's start time; a lower bound of its uptime) |
 * | stats/self | `leaderInfo.leader` | Maintenance.Status: `leader`, hex (`""` while there is none) |
 * | stats/self | `leaderInfo.startTime` | this proxy: when it first saw that member as leader (a lower bound of its leadership) |
 * | stats/self | `leaderInfo.uptime` | this proxy: now − `leaderInfo.startTime`, as a Go duration (`"1m2.5s"`) |
 * | stats/self | `recvAppendRequestCnt`, `sendAppendRequestCnt` | neutral `0`: raft message counts are not in v3's API |
 * | stats/self | `recvPkgRate`, `recvBandwidthRate`, `sendPkgRate`, `sendBandwidthRate` | left out, as native leaves them out when they are 0 (no raft traffic in the last second): v3 does not give them |
 * | stats/leader | `leader` | Maintenance.Status: `leader`, hex; no leader: 403 `{"message":"not current leader"}` as a native member that is not the leader |
 * | stats/leader | `followers` (keys) | Cluster.MemberList: every member but the leader, hex IDs |
 * | stats/leader | `followers.*.latency.{current,average,standardDeviation,minimum,maximum}` | neutral `0`: the leader's heartbeat round trips are not in v3's API |
 * | stats/leader | `followers.*.counts.{fail,success}` | neutral `0`: likewise |
 * | stats/store | `getsSuccess` … `compareAndDeleteFail` | this proxy: the v2 key operations it answered (`V3ClusterApi.count`), since it started; native counts per member |
 * | stats/store | `expireCount` | this proxy: the `expire` events it counted (`count('expire', …)`); 0 unless its HTTP layer reports them |
 * | stats/store | `watchers` | this proxy: its open v2 watches (`V3ClusterApi.watchers`) |
 * @packageDocumentation
 */

/** The counters of `/v2/stats/store` in v2's JSON order (etcd's v2store Stats). */
export interface V2StoreStats {
  getsSuccess: number;
  getsFail: number;
  setsSuccess: number;
  setsFail: number;
  deleteSuccess: number;
  deleteFail: number;
  updateSuccess: number;
  updateFail: number;
  createSuccess: number;
  createFail: number;
  compareAndSwapSuccess: number;
  compareAndSwapFail: number;
  compareAndDeleteSuccess: number;
  compareAndDeleteFail: number;
  expireCount: number;
  watchers: number;
}

/** v2 action name -> the pair of counters it moves. */
const COUNTERS: Readonly<Record<string, readonly [keyof V2StoreStats, keyof V2StoreStats]>> = {
  get: ['getsSuccess', 'getsFail'],
  set: ['setsSuccess', 'setsFail'],
  // A refresh goes through v2's Set (or Update / CompareAndSwap, whose names the caller then gives).
  refresh: ['setsSuccess', 'setsFail'],
  delete: ['deleteSuccess', 'deleteFail'],
  update: ['updateSuccess', 'updateFail'],
  create: ['createSuccess', 'createFail'],
  compareAndSwap: ['compareAndSwapSuccess', 'compareAndSwapFail'],
  compareAndDelete: ['compareAndDeleteSuccess', 'compareAndDeleteFail'],
  expire: ['expireCount', 'expireCount'],
};

/**
 * The `/v2/stats/store` counters of one proxy: the v2 key operations it
 * answered, by v2 action name and outcome.
 */
export class StoreCounters {
  private readonly counts: Omit<V2StoreStats, 'watchers'> = {
    getsSuccess: 0,
    getsFail: 0,
    setsSuccess: 0,
    setsFail: 0,
    deleteSuccess: 0,
    deleteFail: 0,
    updateSuccess: 0,
    updateFail: 0,
    createSuccess: 0,
    createFail: 0,
    compareAndSwapSuccess: 0,
    compareAndSwapFail: 0,
    compareAndDeleteSuccess: 0,
    compareAndDeleteFail: 0,
    expireCount: 0,
  };

  /**
   * Counts one operation: `action` is v2's name (`get`, `set`, `create`,
   * `update`, `compareAndSwap`, `delete`, `compareAndDelete`; `refresh` counts
   * as `set`; `expire` counts one expiry whatever `ok`). Other names are ignored.
   */
  count(action: string, ok: boolean): void {
    const pair = Object.hasOwn(COUNTERS, action) ? COUNTERS[action] : undefined;
    if (pair === undefined) return;
    const field = ok ? pair[0] : pair[1];
    this.counts[field as Exclude<keyof V2StoreStats, 'watchers'>]++;
  }

  /** The body of `/v2/stats/store`, with `watchers` open v2 watches. */
  toJSON(watchers: number): V2StoreStats {
    return { ...this.counts, watchers };
  }
}

/** Facts of `/v2/stats/self`, all from v3 calls and this proxy's first-seen times. */
export interface SelfStatsFacts {
  /** The member's name (MemberList); `""` for one that never started. */
  name: string;
  /** Its ID, decimal (as v3 gives it). */
  id: string;
  /** The leader's ID as that member sees it, decimal; `"0"`: none. */
  leader: string;
  /** When this proxy first saw that member. */
  startTime: Date;
  /** When this proxy first saw the current leader as leader. */
  leaderSince: Date;
  /** `process.hrtime.bigint()` at `leaderSince`, for the uptime's nanoseconds. */
  leaderSinceHr: bigint;
}

/** The body of `/v2/stats/self` (etcd's v2stats ServerStats JSON, rates left out as native does at 0). */
export function selfStats(f: SelfStatsFacts, nowHr: bigint = process.hrtime.bigint()): Record<string, unknown> {
  const hasLeader = f.leader !== '0' && f.leader !== '';
  return {
    name: f.name,
    id: hexId(f.id),
    state: hasLeader && f.leader === f.id ? 'StateLeader' : 'StateFollower',
    startTime: goTime(f.startTime),
    leaderInfo: {
      leader: hasLeader ? hexId(f.leader) : '',
      uptime: goDuration(nowHr - f.leaderSinceHr),
      startTime: goTime(f.leaderSince),
    },
    recvAppendRequestCnt: 0,
    sendAppendRequestCnt: 0,
  };
}

/**
 * The body of `/v2/stats/leader` (etcd's v2stats LeaderStats JSON): the
 * leader's hex ID and one entry per other member, with neutral figures.
 * `leader` and `memberIds` are decimal.
 */
export function leaderStats(leader: string, memberIds: readonly string[]): Record<string, unknown> {
  const followers: Record<string, unknown> = {};
  const ids = memberIds.filter((id) => id !== leader).map(hexId);
  // Go writes a map's keys sorted.
  ids.sort();
  for (const id of ids) {
    followers[id] = {
      latency: { current: 0, average: 0, standardDeviation: 0, minimum: 0, maximum: 0 },
      counts: { fail: 0, success: 0 },
    };
  }
  return { leader: hexId(leader), followers };
}

/** A member or cluster ID as v2 writes it: lower-case hex of the uint64 (v3 gives decimal). */
export function hexId(decimal: string | number): string {
  return BigInt(decimal).toString(16);
}

/** A `Date` as Go's `time.Time` JSON (RFC 3339, fraction without trailing zeros). */
export function goTime(d: Date): string {
  return d.toISOString().replace(/\.(\d*?)0*Z$/, (_m, digits: string) => (digits === '' ? 'Z' : `.${digits}Z`));
}

/** Nanoseconds as Go's `time.Duration.String()`: `"0s"`, `"1.5ms"`, `"2.784423874s"`, `"1m2s"`, `"1h0m0s"`. */
export function goDuration(ns: bigint): string {
  if (ns === 0n) return '0s';
  const sign = ns < 0n ? '-' : '';
  let u = ns < 0n ? -ns : ns;
  if (u < 1_000n) return `${sign}${u}ns`;
  if (u < 1_000_000n) return `${sign}${fraction(u, 1_000n, 3)}µs`;
  if (u < 1_000_000_000n) return `${sign}${fraction(u, 1_000_000n, 6)}ms`;
  const hours = u / 3_600_000_000_000n;
  u %= 3_600_000_000_000n;
  const minutes = u / 60_000_000_000n;
  u %= 60_000_000_000n;
  const h = hours > 0n ? `${hours}h` : '';
  const m = hours > 0n || minutes > 0n ? `${minutes}m` : '';
  return `${sign}${h}${m}${fraction(u, 1_000_000_000n, 9)}s`;
}

/** `v / unit` in decimal with the remainder's `digits` digits, trailing zeros dropped. */
function fraction(v: bigint, unit: bigint, digits: number): string {
  const whole = v / unit;
  const rest = (v % unit).toString().padStart(digits, '0').replace(/0+$/, '');
  return rest === '' ? `${whole}` : `${whole}.${rest}`;
}
