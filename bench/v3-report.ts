/**
 * The v3-backend section of the benchmark report (issue 16): this proxy with
 * `backend: 'v3'` against etcd's Go proxy forwarding to native v2, both in
 * front of the same member, and idle v2 watchers through the v3 backend.
 */
import type { Cell } from './report.js';

/** Idle v2 watchers through one proxy with `backend: 'v3'`. */
export interface V3WatchResult {
  n: number;
  /** s to open every watch (the client side's figure). */
  openS: number;
  /** Watches the proxy counted open (its `/v2/stats/store` `watchers`). */
  registered: number;
  registrationErrors: number;
  /** ESTABLISHED TCP connections from the proxy to the member while idle: gRPC channels. */
  grpcConnections: number;
  /** The proxy's RSS with every watch open. */
  rssIdleMb: number;
  delivered: number;
  /** ms from the PUT to the last watcher's event. */
  lastMs: number | null;
  p50Ms: number | null;
  fanOutCpuMs: number;
  peakRssMb: number;
  note?: string;
}

export interface V3Data {
  cells: Cell[];
  watch: V3WatchResult | undefined;
}

const int = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
const ms = (x: number | null): string => (x === null || !Number.isFinite(x) ? '–' : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : Math.round(x).toString());
const x2 = (a: number | null | undefined, b: number | null | undefined): number =>
  a === null || b === null || a === undefined || b === undefined || b === 0 ? Number.NaN : a / b;
const r = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '–');

const TITLES: Record<string, string> = { get64: 'GET 64 B', put64: 'PUT 64 B' };

/** The request table: per workload and c, both systems and the ratios. */
export function v3LoadTable(d: V3Data): string {
  const rows = ['| workload | c | Go proxy → native v2: req/s | p99 ms | proxy CPU ms/1k | member CPU ms/1k | this proxy, backend v3: req/s | p99 ms | proxy CPU ms/1k | member CPU ms/1k | req/s ratio | proxy CPU ratio | errors (Go / this) |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|'];
  const keys = [...new Set(d.cells.map((c) => `${c.workload}@${c.c}`))];
  for (const k of keys) {
    const [w, c] = k.split('@') as [string, string];
    const go = d.cells.find((x) => x.workload === w && x.c === Number(c) && x.system === 'go');
    const v3 = d.cells.find((x) => x.workload === w && x.c === Number(c) && x.system === 'node-v3');
    rows.push(
      `| ${TITLES[w] ?? w} | ${c} | ${int(go?.rps ?? Number.NaN)} | ${ms(go?.p99Ms ?? null)} | ${ms(go?.cpuPer1k ?? null)} | ${ms(go?.memberCpuPer1k ?? null)} | ` +
        `${int(v3?.rps ?? Number.NaN)} | ${ms(v3?.p99Ms ?? null)} | ${ms(v3?.cpuPer1k ?? null)} | ${ms(v3?.memberCpuPer1k ?? null)} | ` +
        `${r(x2(v3?.rps, go?.rps))} | ${r(x2(v3?.cpuPer1k, go?.cpuPer1k))} | ${go?.errors ?? '–'} / ${v3?.errors ?? '–'} |`,
    );
  }
  return rows.join('\n');
}

export function v3WatchTable(d: V3Data): string {
  const w = d.watch;
  if (w === undefined) return '_not run_';
  return [
    '| N | opened in s | registered (proxy count) | registration errors | TCP connections to the member | RSS idle MB | event to all: last ms | p50 ms | proxy CPU for the fan-out ms | peak RSS MB |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    `| ${int(w.n)} | ${w.openS.toFixed(1)} | ${int(w.registered)} | ${w.registrationErrors} | ${w.grpcConnections} | ${int(w.rssIdleMb)} | ${ms(w.lastMs)} (${int(w.delivered)} delivered) | ${ms(w.p50Ms)} | ${int(w.fanOutCpuMs)} | ${int(w.peakRssMb)} |`,
    ...(w.note === undefined ? [] : ['', `Note: ${w.note}`]),
  ].join('\n');
}

/** Issue 16's targets, each met or missed with its figure. */
export function v3TargetTable(d: V3Data): string {
  const rows = ['| target | figure | met |', '|---|---|---|'];
  const cell = (w: string, c: number, s: string): Cell | undefined => d.cells.find((x) => x.workload === w && x.c === c && x.system === s);
  for (const c of [16, 64]) {
    const go = cell('get64', c, 'go');
    const v3 = cell('get64', c, 'node-v3');
    if (go === undefined || v3 === undefined) continue;
    const rps = x2(v3.rps, go.rps);
    const cpu = x2(v3.cpuPer1k, go.cpuPer1k);
    rows.push(`| GET 64 B c=${c}: req/s ≥ 1.0× the Go proxy's on native v2 | ${r(rps)} | ${rps >= 1 ? 'yes' : '**no**'} |`);
    rows.push(`| GET 64 B c=${c}: proxy CPU per request ≤ 1.0× the Go proxy's | ${r(cpu)} | ${cpu <= 1 ? 'yes' : '**no**'} |`);
  }
  const pgo = cell('put64', 16, 'go');
  const pv3 = cell('put64', 16, 'node-v3');
  if (pgo !== undefined && pv3 !== undefined) {
    const rps = x2(pv3.rps, pgo.rps);
    rows.push(`| PUT 64 B c=16: req/s ≥ 1.0× the Go proxy's | ${r(rps)} | ${rps >= 1 ? 'yes' : '**no**'} |`);
  }
  const w = d.watch;
  if (w !== undefined) {
    rows.push(`| ${int(w.n)} idle v2 watchers: all registered | ${int(w.registered)} of ${int(w.n)}, ${w.registrationErrors} errors | ${w.registered >= w.n && w.registrationErrors === 0 ? 'yes' : '**no**'} |`);
    rows.push(`| one event reaches all in under 1 s | ${ms(w.lastMs)} ms, ${int(w.delivered)} delivered | ${w.lastMs !== null && w.lastMs < 1000 && w.delivered >= w.n ? 'yes' : '**no**'} |`);
    rows.push(`| at most one gRPC connection per member (one member) | ${w.grpcConnections} | ${w.grpcConnections <= 1 ? 'yes' : '**no**'} |`);
    rows.push(`| peak RSS under 400 MB | ${int(w.peakRssMb)} MB | ${w.peakRssMb < 400 ? 'yes' : '**no**'} |`);
  }
  return rows.join('\n');
}

export function v3Section(d: V3Data | undefined, reps: number, durationS: number): string {
  if (d === undefined) return '## v2 on a v3 cluster (issue 16)\n\n_not run_\n';
  return [
    '## v2 on a v3 cluster (issue 16)',
    '',
    `One etcd member with \`--enable-v2\` (its v3 API is always on). etcd's Go proxy forwards v2 requests to the member's native v2 store; this proxy, started with \`backend: 'v3'\`, answers the same v2 requests itself with gRPC calls to the member's v3 API (a GET is a read-only Txn of serializable ranges, v2's default, shared with the GETs that arrive with it; a PUT is one Txn). ` +
      `The two alternate, ${reps} runs of ${durationS} s per cell, medians; "member CPU" shows what each way costs the member.`,
    '',
    v3LoadTable(d),
    '',
    'Idle v2 watchers (`GET /v2/keys/w?wait=true`, bench/watchers.ts) through one proxy with `backend: \'v3\'`; the event is a PUT through the same proxy. All watchers share one v3 watch stream.',
    '',
    v3WatchTable(d),
    '',
    '### Targets (issue 16)',
    '',
    v3TargetTable(d),
    '',
  ].join('\n');
}
