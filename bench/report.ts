/**
 * Turns the benchmark's measurements into docs/benchmarks.md (and the
 * tables printed at the end of a run).
 */
import type { ProfileSummary } from './profile.js';
import { v3Section } from './v3-report.js';
import type { V3Data } from './v3-report.js';
import { grpcSection } from './grpc-report.js';
import type { GrpcData } from './grpc-report.js';

/**
 * `node-semi4`: this proxy under `node --max-semi-space-size=4` (the watch
 * test's largest N only). `node-pipe8`: this proxy with the opt-in
 * `pipelineReads: 8` (the request table only). `node-v3`: this proxy with
 * `backend: 'v3'` (the v3 section only).
 */
export type SystemId = 'etcd' | 'node' | 'node-pipe8' | 'node-semi4' | 'go' | 'node-v3';

/** The options `node-pipe8` adds to the default proxy's. */
export const PIPELINED_OPTIONS = { pipelineReads: 8 } as const;

/** The systems of the request table, in the order the tables list them. */
export const LOAD_SYSTEMS: readonly SystemId[] = ['etcd', 'node', 'node-pipe8', 'go'];

/** This proxy's variants in the request table: the default, then the opt-in one. */
const VARIANTS = ['node', 'node-pipe8'] as const;

/** The V8 flag the README suggests for a proxy holding thousands of watches. */
export const SMALL_YOUNG_GENERATION = '--max-semi-space-size=4';

export const SYSTEM_TITLE: Record<SystemId, string> = {
  etcd: 'etcd directly',
  node: 'etcd-v2-proxy (this)',
  'node-pipe8': 'etcd-v2-proxy (this), pipelineReads: 8',
  'node-semi4': `etcd-v2-proxy (this), node ${SMALL_YOUNG_GENERATION}`,
  go: 'etcd --proxy on (Go)',
  'node-v3': "etcd-v2-proxy (this), backend: 'v3'",
};

export interface Workload {
  id: string;
  title: string;
  script: 'get' | 'put' | 'mix';
  path: string;
  args?: string[];
}

export interface Run {
  workload: string;
  c: number;
  rep: number;
  system: SystemId;
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** Proxy CPU ms per 1,000 requests (null for etcd directly), and its user and sys parts. */
  cpuPer1k: number | null;
  userPer1k: number | null;
  sysPer1k: number | null;
  memberCpuPer1k: number;
  rssMb: number | null;
}

/** The medians of the runs of one workload, concurrency and system. */
export type Cell = Omit<Run, 'rep' | 'requests'> & { runs: number };

export interface WatchResult {
  system: SystemId;
  n: number;
  fdLimit: number;
  openS: number;
  /** Watchers the member counted (`/v2/stats/store` "watchers") once registration settled. */
  registered: number;
  /** Watchers whose request failed (status or socket error) before the write. */
  registrationErrors: number;
  registrationErrorDetail: string;
  idleUpstream: number;
  rssBaselineMb: number;
  rssIdleMb: number;
  delivered: number;
  deliveryErrors: number;
  /** ms from the write to the last watcher that got the event. */
  lastMs: number | null;
  p50Ms: number | null;
  repolled: number;
  repollRegistered: number;
  repollErrors: number;
  repollErrorDetail: string;
  /** The proxy's CPU time (ms) from the write until every watcher had the event (or 10 s). */
  fanOutCpuMs: number;
  /** The first few distinct error answers (`status: body`). */
  errorSamples: string[];
  peakRssMb: number;
  upstreamLeft: number;
  memberWatchersLeft: number;
  note?: string;
}

export interface LeaderRun {
  c: number;
  rep: number;
  leaderWrites: boolean;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

export interface Facts {
  date: string;
  nproc: number;
  cpuModel: string;
  memory: string;
  kernel: string;
  node: string;
  etcd: string;
  wrk: string;
  clkTck: number;
  loadStart: string;
  loadEnd: string;
  fdLimit: string;
  /** The commit and the uncommitted files under src/ the run measured. */
  source: string;
}

export interface ReportData {
  quick: boolean;
  durationS: number;
  reps: number;
  facts: Facts;
  commands: Array<[string, string]>;
  workloads: Workload[];
  concurrency: number[];
  runs: Run[];
  cells: Cell[];
  watch: WatchResult[];
  leader: { leaderUrl: string | undefined; durationS: number; runs: LeaderRun[] } | undefined;
  profile:
    | { summary: ProfileSummary; command: string; rps: number; requests: number; userMs: number; sysMs: number; note?: string }
    | undefined;
  notes: string;
  elapsedS: number;
  skipped: string[];
  /** The v3-backend section (issue 16). */
  v3: V3Data | undefined;
  /** v3 (gRPC) clients through the proxy (issue 17). */
  grpc?: GrpcData | undefined;
}

export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function cellOf(runs: readonly Run[]): Cell {
  const r0 = runs[0]!;
  const cpu = runs.map((r) => r.cpuPer1k).filter((x): x is number => x !== null);
  const user = runs.map((r) => r.userPer1k).filter((x): x is number => x !== null);
  const sys = runs.map((r) => r.sysPer1k).filter((x): x is number => x !== null);
  const rss = runs.map((r) => r.rssMb).filter((x): x is number => x !== null);
  return {
    workload: r0.workload,
    c: r0.c,
    system: r0.system,
    runs: runs.length,
    rps: median(runs.map((r) => r.rps)),
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    errors: runs.reduce((a, r) => a + r.errors, 0),
    cpuPer1k: cpu.length > 0 ? median(cpu) : null,
    userPer1k: user.length > 0 ? median(user) : null,
    sysPer1k: sys.length > 0 ? median(sys) : null,
    memberCpuPer1k: median(runs.map((r) => r.memberCpuPer1k)),
    rssMb: rss.length > 0 ? Math.max(...rss) : null,
  };
}

const int = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
const ms = (x: number | null): string => (x === null || !Number.isFinite(x) ? '–' : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : Math.round(x).toString());
const mb = (x: number | null): string => (x === null || !Number.isFinite(x) ? '–' : x.toFixed(0));
const ratio = (a: number | null | undefined, b: number | null | undefined): string =>
  a === null || b === null || a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? '–' : `${(a / b).toFixed(2)}×`;

function find(cells: readonly Cell[], workload: string, c: number, system: SystemId): Cell | undefined {
  return cells.find((x) => x.workload === workload && x.c === c && x.system === system);
}

export function loadTables(d: ReportData): string {
  const out: string[] = [];
  for (const w of d.workloads) {
    const rows = d.cells.filter((c) => c.workload === w.id);
    if (rows.length === 0) continue;
    out.push(`#### ${w.title}`, '');
    out.push('| system | c | req/s | p50 ms | p99 ms | errors | proxy CPU ms / 1k req | (user / sys) | member CPU ms / 1k req | proxy RSS MB |');
    out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const c of d.concurrency) {
      for (const s of LOAD_SYSTEMS) {
        const x = find(rows, w.id, c, s);
        if (x === undefined) continue;
        out.push(
          `| ${SYSTEM_TITLE[s]} | ${c} | ${int(x.rps)} | ${ms(x.p50Ms)} | ${ms(x.p99Ms)} | ${x.errors} | ${x.cpuPer1k === null ? '–' : ms(x.cpuPer1k)} | ${x.userPer1k === null ? '–' : `${ms(x.userPer1k)} / ${ms(x.sysPer1k)}`} | ${ms(x.memberCpuPer1k)} | ${mb(x.rssMb)} |`,
        );
      }
    }
    out.push('');
  }
  return out.join('\n');
}

export function ratioTable(d: ReportData): string {
  const out = [
    '| workload | c | this | req/s this ÷ Go | req/s this ÷ etcd | req/s Go ÷ etcd | p50 this ÷ Go | p99 this ÷ Go | proxy CPU/req this ÷ Go | user CPU/req this ÷ Go | sys CPU/req this ÷ Go |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const w of d.workloads) {
    for (const c of d.concurrency) {
      const g = find(d.cells, w.id, c, 'go');
      const e = find(d.cells, w.id, c, 'etcd');
      for (const v of VARIANTS) {
        const n = find(d.cells, w.id, c, v);
        if (n === undefined || g === undefined) continue;
        out.push(
          `| ${w.title} | ${c} | ${v === 'node' ? 'default' : 'pipelineReads: 8'} | ${ratio(n.rps, g.rps)} | ${ratio(n.rps, e?.rps)} | ${ratio(g.rps, e?.rps)} | ${ratio(n.p50Ms, g.p50Ms)} | ${ratio(n.p99Ms, g.p99Ms)} | ${ratio(n.cpuPer1k, g.cpuPer1k)} | ${ratio(n.userPer1k, g.userPer1k)} | ${ratio(n.sysPer1k, g.sysPer1k)} |`,
        );
      }
    }
  }
  return out.join('\n');
}

export function watchTable(d: ReportData): string {
  if (d.watch.length === 0) return '_not run_';
  const out = [
    '| system | N | registered (member count) | registration errors | upstream conns while idle | RSS idle MB (before: MB) | event to all N | got the event | proxy CPU for the fan-out ms | re-poll: registered / errors | peak RSS MB | upstream conns 2 s after clients left | member watchers left |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const w of d.watch) {
    const all = w.delivered === w.n;
    const event = w.lastMs === null ? '–' : `${ms(w.lastMs)} ms${all ? '' : ` (last of ${w.delivered})`}`;
    const regErr = `${w.registrationErrors}${w.registrationErrorDetail ? ` (${w.registrationErrorDetail})` : ''}`;
    const repoll = `${w.repollRegistered} / ${w.repollErrors}${w.repollErrorDetail ? ` (${w.repollErrorDetail})` : ''}`;
    out.push(
      `| ${SYSTEM_TITLE[w.system]} | ${int(w.n)} | ${int(w.registered)} | ${regErr} | ${int(w.idleUpstream)} | ${mb(w.rssIdleMb)} (${mb(w.rssBaselineMb)}) | ${event} | ${int(w.delivered)} | ${int(w.fanOutCpuMs)} | ${repoll} | ${mb(w.peakRssMb)} | ${int(w.upstreamLeft)} | ${int(w.memberWatchersLeft)} |`,
    );
  }
  const notes = [
    ...d.watch.filter((w) => w.note).map((w) => `- ${SYSTEM_TITLE[w.system]}, N=${w.n}: ${w.note}`),
    ...d.watch
      .filter((w) => w.errorSamples.length > 0)
      .map((w) => `- ${SYSTEM_TITLE[w.system]}, N=${w.n}, what the failed requests got: ${w.errorSamples.map((x) => `\`${x.replace(/`/g, "'")}\``).join('; ')}`),
  ];
  return [...out, ...(notes.length > 0 ? ['', ...notes] : [])].join('\n');
}

export function leaderTable(d: ReportData): string {
  if (d.leader === undefined || d.leader.runs.length === 0) return '_not run_';
  const out = [
    '| c | leaderWrites | runs | req/s | p50 ms | p99 ms | errors | p50 on ÷ off | req/s on ÷ off |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const cs = [...new Set(d.leader.runs.map((r) => r.c))];
  for (const c of cs) {
    const of = (on: boolean): LeaderRun[] => d.leader!.runs.filter((r) => r.c === c && r.leaderWrites === on);
    const on = of(true);
    const off = of(false);
    const p50On = median(on.map((r) => r.p50Ms));
    const p50Off = median(off.map((r) => r.p50Ms));
    const rpsOn = median(on.map((r) => r.rps));
    const rpsOff = median(off.map((r) => r.rps));
    const sum = (rs: LeaderRun[]): number => rs.reduce((a, r) => a + r.errors, 0);
    out.push(`| ${c} | true | ${on.length} | ${int(rpsOn)} | ${ms(p50On)} | ${ms(median(on.map((r) => r.p99Ms)))} | ${sum(on)} | ${ratio(p50On, p50Off)} | ${ratio(rpsOn, rpsOff)} |`);
    out.push(`| ${c} | false | ${off.length} | ${int(rpsOff)} | ${ms(p50Off)} | ${ms(median(off.map((r) => r.p99Ms)))} | ${sum(off)} | | |`);
  }
  return out.join('\n');
}

interface Target {
  text: string;
  met: boolean | undefined;
  detail: string;
}

export function targets(d: ReportData): Target[] {
  const t: Target[] = [];
  const cell = (w: string, c: number, s: SystemId): Cell | undefined => find(d.cells, w, c, s);
  for (const c of [16, 64]) {
    for (const v of VARIANTS) {
      const n = cell('get64', c, v);
      const g = cell('get64', c, 'go');
      // The opt-in variant is listed only where it was measured.
      if (v !== 'node' && n === undefined) continue;
      const how = v === 'node' ? '' : ' (opt-in pipelineReads: 8)';
      const cpuText = `Proxy CPU per request, GET 64 B c=${c}${how}: at most 0.5× the Go proxy's`;
      if (n === undefined || g === undefined || n.cpuPer1k === null || g.cpuPer1k === null) {
        t.push({ text: cpuText, met: undefined, detail: 'not measured in this run' });
      } else {
        const r = n.cpuPer1k / g.cpuPer1k;
        t.push({ text: cpuText, met: r <= 0.5, detail: `${ms(n.cpuPer1k)} vs ${ms(g.cpuPer1k)} ms per 1k requests: ${r.toFixed(2)}×` });
      }
      const rpsText = `GET 64 B c=${c}${how}: req/s at least 1.5× the Go proxy's, p99 no worse`;
      if (n === undefined || g === undefined) {
        t.push({ text: rpsText, met: undefined, detail: 'not measured in this run' });
      } else {
        const rr = n.rps / g.rps;
        const pr = n.p99Ms / g.p99Ms;
        t.push({
          text: rpsText,
          met: rr >= 1.5 && pr <= 1,
          detail: `req/s ${int(n.rps)} vs ${int(g.rps)}: ${rr.toFixed(2)}×; p99 ${ms(n.p99Ms)} vs ${ms(g.p99Ms)} ms: ${pr.toFixed(2)}×`,
        });
      }
    }
  }
  {
    const n = cell('put64', 16, 'node');
    const g = cell('put64', 16, 'go');
    t.push(
      n === undefined || g === undefined
        ? { text: "PUT 64 B c=16: req/s at least the Go proxy's", met: undefined, detail: 'not measured in this run' }
        : {
            text: "PUT 64 B c=16: req/s at least the Go proxy's",
            met: n.rps >= g.rps,
            detail: `${int(n.rps)} vs ${int(g.rps)} req/s: ${(n.rps / g.rps).toFixed(2)}×`,
          },
    );
  }
  const direct = d.watch.find((x) => x.system === 'etcd' && x.n === 9000);
  const directNote = direct?.lastMs != null ? ` (etcd directly, no proxy: ${ms(direct.lastMs)} ms)` : '';
  for (const system of ['node', 'node-semi4'] as const) {
    const w = d.watch.find((x) => x.system === system && x.n === 9000);
    const flags = system === 'node' ? '' : ` (node ${SMALL_YOUNG_GENERATION})`;
    const text = `9,000 idle watchers${flags}: all registered, zero errors, one event to all in < 1 s, RSS < 200 MB, zero upstream connections left`;
    if (w === undefined) {
      if (system === 'node') t.push({ text, met: undefined, detail: 'not measured in this run (the full run does)' });
      continue;
    }
    const fails: string[] = [];
    if (w.registered < w.n) fails.push(`registered ${w.registered}`);
    const errors = w.registrationErrors + w.deliveryErrors + w.repollErrors;
    if (errors > 0) fails.push(`${errors} errors`);
    if (w.delivered < w.n || w.lastMs === null || w.lastMs >= 1000) fails.push(`event to ${w.delivered} in ${ms(w.lastMs)} ms${directNote}`);
    if (w.peakRssMb >= 200) fails.push(`peak RSS ${mb(w.peakRssMb)} MB`);
    if (w.upstreamLeft > 0) fails.push(`${w.upstreamLeft} upstream connections left`);
    t.push({
      text,
      met: fails.length === 0,
      detail:
        fails.length === 0
          ? `registered ${int(w.registered)}, 0 errors, event to all in ${ms(w.lastMs)} ms, peak RSS ${mb(w.peakRssMb)} MB, ${w.upstreamLeft} left`
          : fails.join('; '),
    });
  }
  t.push({
    text: 'No target met by cutting a corner: the conformance and fault tests keep passing',
    met: undefined,
    detail: 'not a benchmark figure: `npm test` checks it (the benchmark runs src/ unchanged)',
  });
  return t;
}

export function targetTable(d: ReportData): string {
  const out = ['| target (issue 6) | met | measured (medians, same run) |', '|---|---|---|'];
  for (const t of targets(d)) out.push(`| ${t.text} | ${t.met === undefined ? '–' : t.met ? '**yes**' : '**no**'} | ${t.detail} |`);
  return out.join('\n');
}

export function profileSection(d: ReportData): string {
  if (d.profile === undefined) return '_not run_';
  const p = d.profile.summary;
  const out = [
    `One run of this proxy under \`node --cpu-prof\` (GET 64 B, c=16, ${d.profile.rps > 0 ? `${int(d.profile.rps)} req/s under the profiler` : ''}); ` +
      `samples within the wrk run only: ${int(p.samples)} samples over ${ms(p.windowMs)} ms, ${ms(p.busyMs)} ms busy, ${ms(p.idleMs)} ms idle. ` +
      'Shares are of the busy time. ' +
      `Over the same run /proc counts ${ms(d.profile.userMs)} ms user + ${ms(d.profile.sysMs)} ms sys CPU for the proxy ` +
      `(${ms((d.profile.userMs + d.profile.sysMs) / (d.profile.requests / 1000))} ms per 1k requests, profiler included). ` +
      'The profiler samples the main thread by wall time: a sample in a native write (`writev`, `writeLatin1String`) includes the syscall and any time the thread waited for a CPU inside it.',
    '',
    `Command: \`${d.profile.command}\``,
    '',
    ...(d.profile.note !== undefined ? [d.profile.note, ''] : []),
    '**Self time by area**',
    '',
    '| area | ms | share |',
    '|---|---:|---:|',
    ...p.areas.map((r) => `| ${r.name} | ${ms(r.ms)} | ${(r.share * 100).toFixed(1)}% |`),
    '',
    '**Top functions by self time**',
    '',
    '| function | where | ms | share |',
    '|---|---|---:|---:|',
    ...p.topSelf.map((r) => `| \`${r.name}\` | ${r.where || '(native)'} | ${ms(r.ms)} | ${(r.share * 100).toFixed(1)}% |`),
    '',
    "**This library's functions, inclusive time** (the function and everything it called)",
    '',
    '| function | where | ms | share |',
    '|---|---|---:|---:|',
    ...p.library.map((r) => `| \`${r.name}\` | ${r.where} | ${ms(r.ms)} | ${(r.share * 100).toFixed(1)}% |`),
  ];
  return out.join('\n');
}

export function renderMarkdown(d: ReportData): string {
  const f = d.facts;
  const mode = d.quick ? '`npm run bench -- --quick`' : '`npm run bench`';
  const lines = [
    '# Benchmarks',
    '',
    `Written by ${mode} (bench/run.ts) on ${f.date}; the whole run took ${Math.round(d.elapsedS)} s. ` +
      'Issue 6 describes what is measured and the targets; issue 8 the leader-aware writes.',
    '',
    'This proxy runs compiled by tsc (src/ as it is in the work tree) under plain node, as the published package does; see Commands. ' +
      'How to read it: every system is measured in the same run, alternately (the order rotates each repetition: A B C D, B C D A, C D A B), ' +
      `${d.reps} runs of ${d.durationS} s per cell; the figures are medians of those runs (errors: the sum), ` +
      'ratios are ratios of those medians. "Proxy CPU" is the proxy process\'s utime + stime delta over the run ' +
      `(/proc/<pid>/stat, ${f.clkTck} clock ticks per second) divided by the requests served; "member CPU" is the same for the etcd member. ` +
      'Errors are responses with a status over 399 plus socket errors (connect, read, write, timeout) as wrk counts them. ' +
      'This machine is shared with other developers\' test runs: req/s and latency move with their load (see the load averages); CPU per request moves least.',
    '',
    '## Machine',
    '',
    '| | |',
    '|---|---|',
    `| CPUs (nproc) | ${f.nproc} |`,
    `| CPU model (/proc/cpuinfo) | ${f.cpuModel} |`,
    `| memory | ${f.memory} |`,
    `| kernel | ${f.kernel} |`,
    `| node | ${f.node} |`,
    `| etcd | ${f.etcd} |`,
    `| load generator | ${f.wrk}, one thread (\`-t1\`), keep-alive |`,
    `| open-file limit of the children | ${f.fdLimit} |`,
    `| source measured | ${f.source} |`,
    `| load average (1/5/15 min) at start | ${f.loadStart} |`,
    `| load average at end | ${f.loadEnd} |`,
    '',
    '## Commands',
    '',
    'Everything listens on 127.0.0.1 (free ports picked at start); the etcd data dirs are temporary directories under the system temp dir, removed at the end. ' +
      'The proxies are started through `bash -c \'ulimit -n 20000; exec ...\'` so that the PID read from /proc is the program\'s own.',
    '',
    ...d.commands.flatMap(([label, cmd]) => [`- ${label}:`, '', '  ```sh', `  ${cmd}`, '  ```', '']),
    '## Requests',
    '',
    'Keys: `/v2/keys/bench/v64` holds a 64-byte value, `/v2/keys/bench/v16k` a 16 KiB one; PUTs write a 64-byte value (`value=...`, form-encoded) to `/v2/keys/bench/put`; ' +
      'the mix sends, on each connection, 9 GETs of the 64-byte key and then one PUT (`/v2/keys/bench/put-mix`). One etcd member; both proxies forward to it.',
    '',
    loadTables(d),
    '### Ratios',
    '',
    ratioTable(d),
    '',
    '## Idle watchers',
    '',
    'N long polls (`GET /v2/keys/w?wait=true`) opened through a freshly started proxy (and, for reference, on the member directly) by a separate process (bench/watchers.ts: one raw socket per watcher with a minimal HTTP/1.1 response reader, so that the client is not what the fan-out measures; 250 at a time, each batch written before the next), then: ' +
      'the member\'s own count of watchers (`/v2/stats/store`) once it settles ("registered"); the watchers whose request failed before the write ("registration errors"); ' +
      'the proxy\'s ESTABLISHED connections to the member (/proc/<pid>/fd matched to /proc/net/tcp) and RSS while idle; one PUT on the member and the time until the last watcher has the event; ' +
      'the proxy\'s CPU time over that fan-out; every watcher that got it re-polls at once with its `waitIndex` (as confd-like clients do); then the watcher process exits and, 2 s later, the proxy\'s connections to the member and the member\'s watcher count are read again. ' +
      'The three systems alternate (the order rotates with N); the member is the same one as above.',
    '',
    watchTable(d),
    '',
    '## Leader-aware writes (issue 8)',
    '',
    d.leader === undefined
      ? '_not run_'
      : `A 3-member cluster; two processes of this proxy in front of it, \`leaderWrites: true\` and \`leaderWrites: false\` (then a write goes to whichever member the least-in-flight strategy picks, a follower two times in three, which forwards it to the leader). ` +
        `PUT 64 B, ${d.leader.durationS} s runs, alternating on/off. Leader: ${d.leader.leaderUrl ?? 'unknown'}.`,
    '',
    leaderTable(d),
    '',
    '## Targets',
    '',
    targetTable(d),
    '',
    v3Section(d.v3, d.reps, d.durationS),
    grpcSection(d.grpc),
    '## Profile',
    '',
    profileSection(d),
    '',
    d.notes.trim(),
    '',
    ...(d.skipped.length > 0 ? ['## Skipped (time budget)', '', ...d.skipped.map((s) => `- ${s}`), ''] : []),
    '<details><summary>Every run</summary>',
    '',
    '| workload | c | rep | system | requests | req/s | p50 ms | p99 ms | errors | proxy CPU ms/1k (user / sys) | member CPU ms/1k | RSS MB |',
    '|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...d.runs.map(
      (r) =>
        `| ${r.workload} | ${r.c} | ${r.rep + 1} | ${r.system} | ${r.requests} | ${int(r.rps)} | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ${r.errors} | ${r.cpuPer1k === null ? '–' : `${ms(r.cpuPer1k)} (${ms(r.userPer1k)} / ${ms(r.sysPer1k)})`} | ${ms(r.memberCpuPer1k)} | ${mb(r.rssMb)} |`,
    ),
    ...(d.leader !== undefined && d.leader.runs.length > 0
      ? [
          '',
          '| leader writes: c | rep | leaderWrites | req/s | p50 ms | p99 ms | errors |',
          '|---:|---:|---|---:|---:|---:|---:|',
          ...d.leader.runs.map((r) => `| ${r.c} | ${r.rep + 1} | ${r.leaderWrites} | ${int(r.rps)} | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ${r.errors} |`),
        ]
      : []),
    '',
    '</details>',
    '',
  ];
  return lines.join('\n');
}
