/**
 * The 'grpc' section of the benchmark report (issue 17): etcd v3 clients
 * (gRPC over h2c) through this proxy, against etcd's own `etcd grpc-proxy
 * start` and `etcd gateway start`, all in front of one member, with the
 * member directly as the reference row; and v3 watchers at scale.
 */

/** `etcd`: the member directly; `grpc-proxy`, `gateway`: etcd 3.4's own; `node`: this proxy (createProxy, v3Clients 'forward'). */
export type GrpcSystemId = 'etcd' | 'grpc-proxy' | 'gateway' | 'node';

export const GRPC_SYSTEMS: readonly GrpcSystemId[] = ['etcd', 'grpc-proxy', 'gateway', 'node'];

export const GRPC_TITLE: Record<GrpcSystemId, string> = {
  etcd: 'etcd directly',
  'grpc-proxy': 'etcd grpc-proxy start',
  gateway: 'etcd gateway start (TCP)',
  node: 'etcd-v2-proxy (this)',
};

/** What the probe (one Range with grpc-js) found: `ok`, or why the system is left out of the load. */
export interface GrpcSystemState {
  id: GrpcSystemId;
  /** `ok`; `not forwarding yet` (UNIMPLEMENTED: this proxy refuses v3 clients); or the error. */
  state: string;
}

export interface GrpcRun {
  c: number;
  rep: number;
  system: GrpcSystemId;
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** DATA bytes per request h2load received (a RangeResponse of the 64-byte value; 0 for gRPC errors). */
  bytesPerRequest: number;
  /** CPU ms per 1,000 requests: the system's process (null for the member directly), the member, h2load. */
  cpuPer1k: number | null;
  memberCpuPer1k: number;
  loadgenCpuPer1k: number;
  rssMb: number | null;
}

export type GrpcCell = Omit<GrpcRun, 'rep' | 'requests'> & { runs: number };

/** One load generator against the member directly (the calibration that chose h2load). */
export interface GeneratorRun {
  generator: 'h2load' | 'grpc-js';
  c: number;
  rps: number;
  p99Ms: number;
  cpuPer1k: number;
  errors: number;
}

export interface GrpcWatchResult {
  system: GrpcSystemId;
  n: number;
  connections: number;
  streamsPerConnection: number;
  watchesPerStream: number;
  /** s until every watch was created (or failed). */
  openS: number;
  created: number;
  failedStreams: number;
  failureDetail: string;
  /** ESTABLISHED TCP connections from the proxy to the member with every watch open. */
  upstreamConnections: number;
  rssIdleMb: number;
  delivered: number;
  lastMs: number | null;
  p50Ms: number | null;
  /** The system's CPU ms from the Put until every watcher had the event (or 10 s). */
  fanOutCpuMs: number;
  /** The watcher process's CPU ms over the same fan-out (kept out of the system's figure). */
  clientCpuMs: number;
  peakRssMb: number;
  note?: string;
}

export interface GrpcData {
  h2load: string;
  durationS: number;
  reps: number;
  /** HTTP/2 connections h2load opens per run; c streams are spread evenly over them. */
  connections: number;
  systems: GrpcSystemState[];
  generators: GeneratorRun[];
  runs: GrpcRun[];
  cells: GrpcCell[];
  watch: GrpcWatchResult[];
  commands: Array<[string, string]>;
}

function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The medians of one system's runs at one c (errors: the sum). */
export function grpcCellOf(runs: readonly GrpcRun[]): GrpcCell {
  const first = runs[0]!;
  const med = (f: (r: GrpcRun) => number | null): number | null => (f(first) === null ? null : median(runs.map((r) => f(r) ?? Number.NaN)));
  return {
    c: first.c,
    system: first.system,
    runs: runs.length,
    rps: median(runs.map((r) => r.rps)),
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    errors: runs.reduce((a, r) => a + r.errors, 0),
    bytesPerRequest: median(runs.map((r) => r.bytesPerRequest)),
    cpuPer1k: med((r) => r.cpuPer1k),
    memberCpuPer1k: median(runs.map((r) => r.memberCpuPer1k)),
    loadgenCpuPer1k: median(runs.map((r) => r.loadgenCpuPer1k)),
    rssMb: med((r) => r.rssMb),
  };
}

const int = (x: number | null | undefined): string => (x === null || x === undefined || !Number.isFinite(x) ? '–' : Math.round(x).toLocaleString('en-US'));
const ms = (x: number | null | undefined): string =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : Math.round(x).toString();
const ratio = (a: number | null | undefined, b: number | null | undefined): number =>
  a === null || b === null || a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? Number.NaN : a / b;
const r2 = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '–');

function stateOf(d: GrpcData, id: GrpcSystemId): string {
  return d.systems.find((s) => s.id === id)?.state ?? 'not started';
}

/** KV/Range 64 B: one row per c and system, with ratios against grpc-proxy's medians. */
export function grpcLoadTable(d: GrpcData): string {
  const rows = [
    '| c (streams) | system | req/s | p50 ms | p99 ms | proxy CPU ms/1k | member CPU ms/1k | h2load CPU ms/1k | bytes/req | errors | req/s vs grpc-proxy | proxy CPU/req vs grpc-proxy |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const cs = [...new Set(d.cells.map((x) => x.c))].sort((a, b) => a - b);
  for (const c of cs) {
    const ref = d.cells.find((x) => x.c === c && x.system === 'grpc-proxy');
    for (const id of GRPC_SYSTEMS) {
      const x = d.cells.find((y) => y.c === c && y.system === id);
      if (x === undefined) {
        rows.push(`| ${c} | ${GRPC_TITLE[id]} | _${stateOf(d, id)}_ | | | | | | | | | |`);
        continue;
      }
      rows.push(
        `| ${c} | ${GRPC_TITLE[id]} | ${int(x.rps)} | ${ms(x.p50Ms)} | ${ms(x.p99Ms)} | ${x.cpuPer1k === null ? '–' : ms(x.cpuPer1k)} | ${ms(x.memberCpuPer1k)} | ${ms(x.loadgenCpuPer1k)} | ${Math.round(x.bytesPerRequest)} | ${x.errors} | ` +
          `${id === 'grpc-proxy' ? '1.00×' : r2(ratio(x.rps, ref?.rps))} | ${id === 'etcd' ? '–' : id === 'grpc-proxy' ? '1.00×' : r2(ratio(x.cpuPer1k, ref?.cpuPer1k))} |`,
      );
    }
  }
  return rows.join('\n');
}

export function generatorTable(d: GrpcData): string {
  if (d.generators.length === 0) return '_not run_';
  return [
    '| load generator | c | req/s | p99 ms | its own CPU ms/1k requests | errors |',
    '|---|---:|---:|---:|---:|---:|',
    ...d.generators.map((g) => `| ${g.generator === 'h2load' ? d.h2load : '@grpc/grpc-js (bench/grpc-js-load.ts)'} | ${g.c} | ${int(g.rps)} | ${ms(g.p99Ms)} | ${ms(g.cpuPer1k)} | ${g.errors} |`),
  ].join('\n');
}

export function grpcWatchTable(d: GrpcData): string {
  if (d.watch.length === 0) return '_not run_';
  return [
    '| system | N (connections × streams × watches) | created | failed streams | opened in s | proxy\'s TCP conns to the member | proxy RSS idle MB | event to all: last ms | p50 ms | delivered | proxy CPU for the fan-out ms | watcher process CPU ms | proxy peak RSS MB |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...[...d.watch].sort((a, b) => GRPC_SYSTEMS.indexOf(a.system) - GRPC_SYSTEMS.indexOf(b.system)).map(
      (w) =>
        w.created === 0 && w.note !== undefined
          ? `| ${GRPC_TITLE[w.system]} | ${int(w.n)} (${w.connections} × ${w.streamsPerConnection} × ${w.watchesPerStream}) | _${w.note}_ | | | | | | | | | | | |`
          : `| ${GRPC_TITLE[w.system]} | ${int(w.n)} (${w.connections} × ${w.streamsPerConnection} × ${w.watchesPerStream}) | ${int(w.created)} | ${w.failedStreams}${w.failureDetail === '' ? '' : ` (${w.failureDetail})`} | ${Number.isFinite(w.openS) ? w.openS.toFixed(1) : '–'} | ` +
        `${int(w.upstreamConnections)} | ${int(w.rssIdleMb)} | ${ms(w.lastMs)} | ${ms(w.p50Ms)} | ${int(w.delivered)} | ${int(w.fanOutCpuMs)} | ${int(w.clientCpuMs)} | ${int(w.peakRssMb)} |`,
    ),
    ...d.watch.filter((w) => w.note !== undefined && w.created > 0).map((w) => `\nNote (${GRPC_TITLE[w.system]}): ${w.note}`),
  ].join('\n');
}

/** Issue 17's performance targets, each met or not with its figure. */
export function grpcTargetTable(d: GrpcData): string {
  const rows = ['| target | figure | met |', '|---|---|---|'];
  const yes = (ok: boolean): string => (ok ? 'met' : '**not met**');
  for (const c of [16, 64]) {
    const ref = d.cells.find((x) => x.c === c && x.system === 'grpc-proxy');
    const mine = d.cells.find((x) => x.c === c && x.system === 'node');
    if (ref === undefined) continue;
    if (mine === undefined) {
      rows.push(`| KV/Range 64 B, ${c} streams: req/s ≥ 1.0× grpc-proxy's | ${stateOf(d, 'node')} | **not met** |`);
      rows.push(`| KV/Range 64 B, ${c} streams: proxy CPU per request ≤ grpc-proxy's | ${stateOf(d, 'node')} | **not met** |`);
      continue;
    }
    const rps = ratio(mine.rps, ref.rps);
    const cpu = ratio(mine.cpuPer1k, ref.cpuPer1k);
    const errors = mine.errors > 0 ? `, ${mine.errors} errors` : '';
    rows.push(`| KV/Range 64 B, ${c} streams: req/s ≥ 1.0× grpc-proxy's | ${r2(rps)} (${int(mine.rps)} vs ${int(ref.rps)}${errors}) | ${yes(rps >= 1 && mine.errors === 0)} |`);
    rows.push(`| KV/Range 64 B, ${c} streams: proxy CPU per request ≤ grpc-proxy's | ${r2(cpu)} (${ms(mine.cpuPer1k)} vs ${ms(ref.cpuPer1k)} ms/1k) | ${yes(cpu <= 1)} |`);
  }
  const w = d.watch.find((x) => x.system === 'node');
  if (w === undefined) {
    rows.push(`| 10,000 v3 watchers over 100 connections: one event reaches all in under 1 s | ${d.watch.length === 0 ? 'not run' : stateOf(d, 'node')} | **not met** |`);
  } else if (w.created === 0 && w.note !== undefined) {
    rows.push(`| ${int(w.n)} v3 watchers over ${w.connections} connections: one event reaches all in under 1 s | ${w.note} | **not met** |`);
  } else {
    const all = w.created >= w.n && w.delivered >= w.n;
    rows.push(
      `| ${int(w.n)} v3 watchers over ${w.connections} connections: one event reaches all in under 1 s | ${ms(w.lastMs)} ms, ${int(w.delivered)} of ${int(w.n)} delivered | ${yes(all && w.lastMs !== null && w.lastMs < 1000)} |`,
    );
    rows.push(`| memory reported | peak RSS ${int(w.peakRssMb)} MB (idle with every watch open: ${int(w.rssIdleMb)} MB) | ${yes(Number.isFinite(w.peakRssMb))} |`);
  }
  return rows.join('\n');
}

export function grpcSection(d: GrpcData | undefined): string {
  const heading = '## v3 clients through the proxy (issue 17)';
  if (d === undefined) return `${heading}\n\n_not run_\n`;
  const split = (c: number): string => `${d.connections} HTTP/2 connections × ${c / d.connections} streams`;
  return [
    heading,
    '',
    "One etcd member (with `--enable-v2`: this proxy's default v2 backend checks at start that the cluster serves v2; the v3 API is always on); etcd v3 (gRPC) clients reach it directly (reference row), through `etcd grpc-proxy start` (gRPC proxy: its own gRPC server, clientv3 to the member), through `etcd gateway start` (a TCP proxy) and through this proxy (`createProxy` in a child process, compiled as in Commands above, `v3Clients: 'forward'`, the default). " +
      `The load is KV/Range of one key holding a 64-byte value, linearizable (etcdctl's default; grpc-proxy caches only serializable ranges, so it forwards every one), sent by ${d.h2load} with a request body file (one gRPC message: protobufjs's RangeRequest in gRPC's 5-byte length prefix). ` +
      `c concurrent streams are spread over ${d.connections} HTTP/2 connections, the same for every system (c=16: ${split(16)}; c=64: ${split(64)}). ` +
      `The systems alternate (the order rotates each repetition), ${d.reps} runs of ${d.durationS} s per cell, medians; ratios are against grpc-proxy's medians of the same run. ` +
      '"Proxy CPU" is the proxy process\'s utime + stime delta per 1,000 requests; "h2load CPU" is the load generator\'s own (its PID\'s /proc/<pid>/stat, sampled every 25 ms until it exits), kept out of every other figure. ' +
      'h2load counts an HTTP 200 as a success whatever the grpc-status trailer says; "bytes/req" (DATA bytes received per request) tells a RangeResponse (about 120 bytes) from a gRPC error (0). ' +
      "A system whose probe (one Range with @grpc/grpc-js before the load) fails is left out with the reason; this proxy answers UNIMPLEMENTED until it forwards v3 clients ('not forwarding yet').",
    '',
    grpcLoadTable(d),
    '',
    '### Load generator',
    '',
    'Both candidates against the member directly, once per run, c=16 (the same connections × streams); the one with less CPU per request leaves more of the machine to the systems measured, so the table above uses h2load.',
    '',
    generatorTable(d),
    '',
    '### v3 watchers',
    '',
    'bench/grpc-watchers.ts (@grpc/grpc-js, its own process) opens the connections (one gRPC channel each), on each one Watch stream with 100 WatchCreateRequests for the same key, as etcd\'s clientv3 puts every watch of one client on one stream; it counts the `created` answers, ' +
      'then one KV/Put of the key on the member directly; "last ms" is the time from sending the Put until every watcher had its event (the watcher process decodes 10,000 WatchResponses in that time: its own CPU is in the table, read apart). A fresh process of each system for this test, one run each.',
    '',
    grpcWatchTable(d),
    '',
    '### Targets (issue 17)',
    '',
    grpcTargetTable(d),
    '',
    '### Commands (issue 17)',
    '',
    ...d.commands.flatMap(([label, cmd]) => [`- ${label}:`, '', '  ```sh', `  ${cmd}`, '  ```', '']),
  ].join('\n');
}
