/**
 * `npm run bench` (issue 6): etcd directly, this proxy (createProxy in a
 * child process) and etcd's Go proxy (`etcd --proxy on`, same flags) in front
 * of one real etcd member, driven by wrk, measured alternately; idle watchers
 * at scale through each proxy; leader-aware writes on a 3-member cluster
 * (issue 8); one `node --cpu-prof` run of this proxy; this proxy with
 * `backend: 'v3'` against the Go proxy on native v2, and 19,000 idle v2
 * watchers through the v3 backend (issue 16); etcd v3 (gRPC) clients through
 * this proxy against `etcd grpc-proxy start` and `etcd gateway start`, driven
 * by h2load, and 10,000 v3 watchers (issue 17, section 'grpc'). Writes
 * docs/benchmarks.md and prints the tables.
 *
 *   npm run bench                 full run (< 15 min), writes docs/benchmarks.md
 *   npm run bench -- --quick      < 2 min: GET 64 B and PUT 64 B at c=16, 1,000 watchers;
 *                                 writes <tmpdir>/etcd-v2-proxy-bench-quick.md
 *   --only load,profile,watch,leader,v3,grpc
 *                                 run only these sections (the report goes to
 *                                 <tmpdir>/etcd-v2-proxy-bench-partial.md)
 *   --watchers 1000,9000          numbers of idle watchers instead of the plan's
 *   --workloads get64,get16k      request workloads (get64, get16k, put64, mix) instead of the plan's
 *   --concurrency 16,64           wrk connection counts instead of the plan's
 *   --out FILE                    write the report there instead
 *
 * Loopback only; every process it starts is stopped by its PID; temporary
 * directories are removed at the end.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort, startCluster, startEtcd } from '../examples/local-etcd.js';
import type { LocalEtcd } from '../examples/local-etcd.js';
import { summarizeProfile } from './profile.js';
import { CLK_TCK, connectionsTo, cpuMs, cpuModel, cpuTimes, loadAverage, openFilesLimit, peakRssMb, rssMb } from './procfs.js';
import { buildProxyChild, commandLine, FD_LIMIT, killStarted, REPO, startGoProxy, startLineChild, startNodeProxy } from './processes.js';
import type { ProxyProcess } from './processes.js';
import { cellOf, leaderTable, LOAD_SYSTEMS, loadTables, PIPELINED_OPTIONS, ratioTable, renderMarkdown, SMALL_YOUNG_GENERATION, targetTable, watchTable } from './report.js';
import type { Cell, Facts, LeaderRun, ReportData, Run, SystemId, WatchResult, Workload } from './report.js';
import { runWrk, wrkArgs, wrkVersion } from './wrk.js';
import type { V3Data, V3WatchResult } from './v3-report.js';
import { v3LoadTable, v3TargetTable, v3WatchTable } from './v3-report.js';
import { runGrpcSection } from './grpc-section.js';
import type { GrpcPlan } from './grpc-section.js';
import type { GrpcData } from './grpc-report.js';
import { generatorTable, grpcLoadTable, grpcTargetTable, grpcWatchTable } from './grpc-report.js';

const argv = process.argv.slice(2);
/** The options, and whether each takes a value: --help prints them, anything else exits 2 before a run starts. */
const OPTIONS: Record<string, { value?: string; help: string }> = {
  '--quick': { help: '< 2 min: GET 64 B and PUT 64 B at c=16, 1,000 watchers; writes <tmpdir>/etcd-v2-proxy-bench-quick.md' },
  '--only': { value: 'load,profile,watch,leader,v3,grpc', help: 'run only these sections (report: <tmpdir>/etcd-v2-proxy-bench-partial.md)' },
  '--watchers': { value: '1000,9000', help: "numbers of idle watchers instead of the plan's" },
  '--workloads': { value: 'get64,get16k', help: "request workloads (get64, get16k, put64, mix) instead of the plan's" },
  '--concurrency': { value: '16,64', help: "wrk connection counts instead of the plan's" },
  '--out': { value: 'FILE', help: 'write the report there instead' },
  '--help': { help: 'print this help and exit' },
};
/** Each option given, with its value (the option itself for one without). */
const given = new Map<string, string>();
for (let i = 0; i < argv.length; i++) {
  const arg = argv[i]!;
  if (arg === '--help' || arg === '-h') {
    const lines = ['Usage: npm run bench -- [options]', '', 'With no option: the full run (< 15 min), which writes docs/benchmarks.md.', ''];
    for (const [name, o] of Object.entries(OPTIONS)) lines.push(`  ${name}${o.value === undefined ? '' : ` ${o.value}`}`, `      ${o.help}`);
    process.stdout.write(`${lines.join('\n')}\n`);
    process.exit(0);
  }
  const option = OPTIONS[arg];
  if (option === undefined) {
    process.stderr.write(`bench: unknown option ${JSON.stringify(arg)} (see npm run bench -- --help)\n`);
    process.exit(2);
  }
  if (option.value !== undefined) {
    if (argv[i + 1] === undefined || argv[i + 1]!.startsWith('--')) {
      process.stderr.write(`bench: ${arg} needs a value (${option.value})\n`);
      process.exit(2);
    }
    i++;
  }
  given.set(arg, argv[i]!);
}
const quick = given.has('--quick');
const SECTIONS = ['load', 'profile', 'watch', 'leader', 'v3', 'grpc'] as const;
const onlyValue = given.get('--only');
const only = onlyValue !== undefined ? onlyValue.split(',') : [...SECTIONS];
for (const s of only) {
  if (!(SECTIONS as readonly string[]).includes(s)) {
    process.stderr.write(`bench: --only takes ${SECTIONS.join(',')}; got ${s}\n`);
    process.exit(2);
  }
}
const section = (s: (typeof SECTIONS)[number]): boolean => only.includes(s);
const outFile = resolve(
  given.get('--out') ??
    (['--only', '--watchers', '--workloads', '--concurrency'].some((o) => given.has(o))
      ? join(tmpdir(), 'etcd-v2-proxy-bench-partial.md')
      : quick
        ? join(tmpdir(), 'etcd-v2-proxy-bench-quick.md')
        : join(REPO, 'docs/benchmarks.md')),
);

const WORKLOADS: Workload[] = [
  { id: 'get64', title: 'GET 64 B', script: 'get', path: '/v2/keys/bench/v64' },
  { id: 'get16k', title: 'GET 16 KiB', script: 'get', path: '/v2/keys/bench/v16k' },
  { id: 'put64', title: 'PUT 64 B', script: 'put', path: '/v2/keys/bench/put' },
  { id: 'mix', title: '90/10 GET/PUT mix (64 B)', script: 'mix', path: '/v2/keys/bench/v64', args: ['/v2/keys/bench/put-mix'] },
];

const plan = quick
  ? {
      durationS: 2,
      reps: 3,
      warmupS: 1,
      workloads: WORKLOADS.filter((w) => w.id === 'get64' || w.id === 'put64'),
      concurrency: [16],
      watchers: [1000],
      leaderConcurrency: [1],
      leaderReps: 3,
      leaderDurationS: 2,
      profileS: 3,
      v3Watchers: 2000,
      // Issue 17: KV/Range over h2load's 4 HTTP/2 connections; 10 x 1 x 100 = 1,000 v3 watchers.
      grpc: { durationS: 2, reps: 3, warmupS: 1, concurrency: [16], connections: 4, watchConnections: 10, watchStreams: 1, watchesPerStream: 100 } as GrpcPlan,
      budgetS: 150,
    }
  : {
      durationS: 3,
      reps: 3,
      warmupS: 1,
      workloads: WORKLOADS,
      concurrency: [1, 16, 64],
      watchers: [1000, 5000, 9000],
      leaderConcurrency: [1, 16],
      leaderReps: 3,
      leaderDurationS: 3,
      profileS: 5,
      v3Watchers: 19000,
      // Issue 17: KV/Range over h2load's 4 HTTP/2 connections; 100 x 1 x 100 = 10,000 v3 watchers.
      grpc: { durationS: 3, reps: 3, warmupS: 1, concurrency: [16, 64], connections: 4, watchConnections: 100, watchStreams: 1, watchesPerStream: 100 } as GrpcPlan,
      budgetS: 1000,
    };

const workloadsValue = given.get('--workloads');
if (workloadsValue !== undefined) {
  const ids = workloadsValue.split(',');
  const unknown = ids.find((id) => !WORKLOADS.some((w) => w.id === id));
  if (unknown !== undefined) {
    process.stderr.write(`bench: --workloads takes ${WORKLOADS.map((w) => w.id).join(',')}; got ${unknown}\n`);
    process.exit(2);
  }
  plan.workloads = WORKLOADS.filter((w) => ids.includes(w.id));
}
/** The value of `flag` as comma-separated whole numbers `min`-`max` (undefined when not given); a bad one exits 2 with one line. */
function countsFlag(flag: string, what: string, min: number, max: number): number[] | undefined {
  const text = given.get(flag);
  if (text === undefined) return undefined;
  const values = text.split(',').map(Number);
  if (values.some((n) => !Number.isInteger(n) || n < min || n > max)) {
    process.stderr.write(`bench: ${flag} takes ${what} ${min}-${max}, comma-separated; got ${JSON.stringify(text)}\n`);
    process.exit(2);
  }
  return values;
}
plan.concurrency = countsFlag('--concurrency', 'connection counts', 1, 1000) ?? plan.concurrency;
// A proxied watch holds two descriptors in the proxy, and each process may hold FD_LIMIT.
plan.watchers = countsFlag('--watchers', 'numbers of watchers', 1, FD_LIMIT / 2 - 500) ?? plan.watchers;
if (!given.has('--only') && given.has('--watchers')) process.stderr.write('bench: --watchers given: the report goes to docs/benchmarks.md only with --out\n');

const started = performance.now();
const elapsedS = (): number => (performance.now() - started) / 1000;
const overBudget = (): boolean => elapsedS() > plan.budgetS;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const log = (msg: string): void => void process.stdout.write(`[${elapsedS().toFixed(0).padStart(4)} s] ${msg}\n`);

const tmp = mkdtempSync(join(tmpdir(), 'etcd-v2-proxy-bench-'));
let entry = '';
const members: LocalEtcd[] = [];
const proxies = new Set<ProxyProcess>();

async function cleanup(): Promise<void> {
  await Promise.all([...proxies].map((p) => p.stop()));
  killStarted();
  await Promise.all(members.map((m) => m.stop()));
  rmSync(tmp, { recursive: true, force: true });
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    process.stderr.write(`\n${sig}: stopping what the benchmark started\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

function ensureTools(): void {
  const steps: string[][] = [['scripts/ensure-etcd.sh'], ['bench/ensure-tool.sh', 'wrk', 'wrk'], ...(section('grpc') ? [['bench/ensure-tool.sh', 'h2load', 'nghttp2-client']] : [])];
  for (const args of steps) {
    const r = spawnSync('bash', args, { cwd: REPO, stdio: 'inherit' });
    if (r.status !== 0) {
      process.stderr.write(`bench: ${args.join(' ')} failed; see above\n`);
      process.exit(1);
    }
  }
}

function facts(): Facts {
  const etcdVersion = spawnSync('etcd', ['--version'], { encoding: 'utf8' }).stdout ?? '';
  const line = (re: RegExp): string => re.exec(etcdVersion)?.[1]?.trim() ?? '?';
  const nproc = Number(spawnSync('nproc', { encoding: 'utf8' }).stdout?.trim()) || cpus().length;
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    nproc,
    cpuModel: cpuModel(),
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: release(),
    node: process.version,
    etcd: `${line(/etcd Version: (.*)/)} (${line(/Go Version: (.*)/)})`,
    wrk: wrkVersion(),
    clkTck: CLK_TCK,
    loadStart: loadAverage(),
    loadEnd: '',
    fdLimit: '',
    source: sourceState(),
  };
}

function sourceState(): string {
  const git = (...args: string[]): string => spawnSync('git', args, { cwd: REPO, encoding: 'utf8' }).stdout?.trim() ?? '';
  const head = git('rev-parse', '--short', 'HEAD') || 'unknown';
  const dirty = git('status', '--porcelain', '--', 'src').split('\n').filter((l) => l !== '').length;
  return `commit ${head}${dirty > 0 ? ` plus ${dirty} uncommitted file(s) under src/ (the work tree as it was)` : ', src/ unmodified'}`;
}

function etcdCommand(m: LocalEtcd, initialCluster: string, token: string): string {
  return commandLine('etcd', [
    '--name', m.name, '--enable-v2', '--data-dir', '<tmp>',
    '--listen-client-urls', m.clientUrl, '--advertise-client-urls', m.clientUrl,
    '--listen-peer-urls', m.peerUrl, '--initial-advertise-peer-urls', m.peerUrl,
    '--initial-cluster', initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', token,
  ]);
}

async function put(url: string, value: string): Promise<void> {
  const res = await fetch(url, { method: 'PUT', body: new URLSearchParams({ value }), signal: AbortSignal.timeout(5000) });
  await res.arrayBuffer();
  if (!res.ok) throw new Error(`PUT ${url}: ${res.status}`);
}

async function memberWatchers(clientUrl: string): Promise<number> {
  try {
    const res = await fetch(`${clientUrl}/v2/stats/store`, { signal: AbortSignal.timeout(3000) });
    return ((await res.json()) as { watchers: number }).watchers;
  } catch {
    return Number.NaN;
  }
}

/** Polls the member's watcher count until it reaches `expected`, stops changing for 3 s, or `maxMs` passed. */
async function settleWatchers(clientUrl: string, expected: number, maxMs: number): Promise<number> {
  const deadline = Date.now() + maxMs;
  let last = -1;
  let since = Date.now();
  for (;;) {
    const n = await memberWatchers(clientUrl);
    if (n >= expected) return n;
    if (n !== last) {
      last = n;
      since = Date.now();
    }
    if (Date.now() - since > 3000 || Date.now() > deadline) return n;
    await sleep(250);
  }
}

interface System {
  id: SystemId;
  url: string;
  pid: number | undefined;
}

async function measure(system: System, member: LocalEtcd, w: Workload, c: number, durationS: number): Promise<Omit<Run, 'rep'>> {
  const cpu0 = system.pid === undefined ? undefined : cpuTimes(system.pid);
  const mcpu0 = cpuMs(member.child.pid!);
  const r = await runWrk({ url: `${system.url}${w.path}`, script: w.script, connections: c, durationS, args: w.args });
  const cpu1 = system.pid === undefined ? undefined : cpuTimes(system.pid);
  const mcpu1 = cpuMs(member.child.pid!);
  const k = r.requests / 1000;
  return {
    workload: w.id,
    c,
    system: system.id,
    requests: r.requests,
    rps: r.rps,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    errors: r.statusErrors + r.socketErrors,
    cpuPer1k: cpu0 === undefined || cpu1 === undefined ? null : (cpu1.user + cpu1.sys - cpu0.user - cpu0.sys) / k,
    userPer1k: cpu0 === undefined || cpu1 === undefined ? null : (cpu1.user - cpu0.user) / k,
    sysPer1k: cpu0 === undefined || cpu1 === undefined ? null : (cpu1.sys - cpu0.sys) / k,
    memberCpuPer1k: (mcpu1 - mcpu0) / k,
    rssMb: system.pid === undefined ? null : rssMb(system.pid),
  };
}

function rotate<T>(xs: readonly T[], by: number): T[] {
  const k = by % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

function describeCounts(m: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries({ ...(m.statuses as object), ...(m.codes as object) })) parts.push(`${k}: ${String(v)}`);
  return parts.join(', ');
}

async function watchScale(system: SystemId, n: number, member: LocalEtcd, initialCluster: string): Promise<WatchResult> {
  const port = await freePort();
  const dataDir = join(tmp, `watch-${system}-${n}`);
  const proxy =
    system === 'node' || system === 'node-semi4'
      ? await startNodeProxy({ entry, port, initialCluster, dataDir, nodeFlags: system === 'node' ? [] : [SMALL_YOUNG_GENERATION] })
      : system === 'go'
        ? await startGoProxy({ port, initialCluster, dataDir })
        : undefined;
  if (proxy !== undefined) proxies.add(proxy);
  if (system === 'node-semi4' && proxy !== undefined) commands.set('this proxy with a smaller young generation (watch test, largest N)', proxy.command);
  // etcd directly: nothing of a proxy to read.
  const pidOf = <T>(read: (pid: number) => T, none: T): T => (proxy === undefined ? none : read(proxy.pid));
  const conns = (): number => pidOf((pid) => connectionsTo(pid, [member.clientPort]), Number.NaN);
  const result: WatchResult = {
    system, n, fdLimit: pidOf(openFilesLimit, Number.NaN), openS: Number.NaN, registered: 0, registrationErrors: 0, registrationErrorDetail: '',
    idleUpstream: 0, rssBaselineMb: pidOf(rssMb, Number.NaN), rssIdleMb: Number.NaN, delivered: 0, deliveryErrors: 0, lastMs: null, p50Ms: null,
    repolled: 0, repollRegistered: 0, repollErrors: 0, repollErrorDetail: '', errorSamples: [], fanOutCpuMs: Number.NaN, peakRssMb: Number.NaN, upstreamLeft: Number.NaN, memberWatchersLeft: Number.NaN,
  };
  const config = { url: proxy?.url ?? member.clientUrl, key: '/v2/keys/w', n, writeUrl: member.clientUrl, batch: 250 };
  const watchers = startLineChild('node', ['--import', 'tsx', 'bench/watchers.ts', JSON.stringify(config)]);
  commands.set('watchers (bench/watchers.ts, a separate process)', watchers.command);
  try {
    const opened = await watchers.next('opened', 90000);
    result.openS = Number(opened.ms) / 1000;
    result.registered = await settleWatchers(member.clientUrl, n, 20000);
    const st = await (watchers.send('status'), watchers.next('status', 10000));
    result.registrationErrors = Number(st.error);
    result.registrationErrorDetail = describeCounts(st);
    result.idleUpstream = conns();
    result.rssIdleMb = pidOf(rssMb, Number.NaN);
    log(`watch ${system} N=${n}: opened in ${result.openS.toFixed(1)} s, member counts ${result.registered}, ${result.registrationErrors} errors, ${result.idleUpstream} upstream conns, RSS ${result.rssIdleMb.toFixed(0)} MB`);
    if (Number(st.error) > 0) result.errorSamples = (st.samples as string[] | undefined) ?? [];
    const cpuBefore = pidOf(cpuMs, Number.NaN);
    const fired = await (watchers.send('fire'), watchers.next('fired', 20000));
    result.fanOutCpuMs = pidOf(cpuMs, Number.NaN) - cpuBefore;
    result.delivered = Number(fired.delivered);
    result.deliveryErrors = Number(fired.error) - result.registrationErrors;
    result.lastMs = fired.lastMs === null ? null : Number(fired.lastMs);
    result.p50Ms = fired.p50Ms === null ? null : Number(fired.p50Ms);
    if (result.deliveryErrors > 0) result.note = `${result.deliveryErrors} watchers failed between the registration and the event (${describeCounts(fired)})`;
    log(`watch ${system} N=${n}: event to ${result.delivered} in ${result.lastMs ?? '–'} ms (p50 ${result.p50Ms ?? '–'} ms), proxy CPU ${result.fanOutCpuMs} ms`);
    const repolled = await (watchers.send('repoll'), watchers.next('repolled', 60000));
    result.repolled = Number(repolled.sent) + Number(repolled.open) + Number(repolled.pending) + Number(repolled.error);
    result.repollRegistered = await settleWatchers(member.clientUrl, result.delivered, 20000);
    const st2 = await (watchers.send('status'), watchers.next('status', 10000));
    result.repollErrors = Number(st2.error);
    result.repollErrorDetail = describeCounts(st2);
    result.errorSamples = (st2.samples as string[] | undefined) ?? [];
    result.peakRssMb = pidOf(peakRssMb, Number.NaN);
    log(`watch ${system} N=${n}: re-poll: member counts ${result.repollRegistered}, ${result.repollErrors} errors; peak RSS ${result.peakRssMb.toFixed(0)} MB`);
  } catch (err) {
    result.note = `${result.note ?? ''} stopped early: ${(err as Error).message.split('\n')[0]}`.trim();
    log(`watch ${system} N=${n}: ${result.note}`);
    result.peakRssMb = pidOf(peakRssMb, Number.NaN);
  }
  watchers.send('exit');
  const gone = await Promise.race([watchers.exited.then(() => true), sleep(5000).then(() => false)]);
  if (!gone) await watchers.stop(1000);
  await sleep(2000);
  result.upstreamLeft = conns();
  result.memberWatchersLeft = await memberWatchers(member.clientUrl);
  log(`watch ${system} N=${n}: 2 s after the clients left: ${result.upstreamLeft} upstream conns, member has ${result.memberWatchersLeft} watchers`);
  if (proxy !== undefined) {
    await proxy.stop();
    proxies.delete(proxy);
  }
  // The next system starts from a member with no watcher left.
  const deadline = Date.now() + 15000;
  while ((await memberWatchers(member.clientUrl)) > 0 && Date.now() < deadline) await sleep(250);
  return result;
}

const commands = new Map<string, string>();

/**
 * Issue 16: this proxy with `backend: 'v3'` against etcd's Go proxy on the
 * member's native v2 (GET 64 B at c=16 and 64, PUT 64 B at c=16,
 * alternating), then idle v2 watchers through the v3 backend.
 */
async function v3Section(skipped: string[]): Promise<V3Data> {
  const member = await startEtcd();
  members.push(member);
  const initialCluster = `${member.name}=${member.peerUrl}`;
  const v3Proxy = await startNodeProxy({ entry, port: await freePort(), initialCluster, dataDir: join(tmp, 'node-v3'), proxyOptions: { backend: 'v3' } });
  proxies.add(v3Proxy);
  const goProxy = await startGoProxy({ port: await freePort(), initialCluster, dataDir: join(tmp, 'go-proxy-v3') });
  proxies.add(goProxy);
  commands.set('v3 section: etcd member', etcdCommand(member, initialCluster, `t-${member.name}`));
  commands.set("v3 section: this proxy with backend 'v3', and the Go proxy", `${v3Proxy.command}\n  ${goProxy.command}`);
  // The same key in both stores: the member's native v2 store (for the Go proxy) and the v3 layout (through this proxy).
  await put(`${member.clientUrl}/v2/keys/bench/v64`, 'a'.repeat(64));
  await put(`${v3Proxy.url}/v2/keys/bench/v64`, 'a'.repeat(64));
  const systems: System[] = [
    { id: 'node-v3', url: v3Proxy.url, pid: v3Proxy.pid },
    { id: 'go', url: goProxy.url, pid: goProxy.pid },
  ];
  const cells: Cell[] = [];
  const get64 = WORKLOADS.find((w) => w.id === 'get64')!;
  const put64 = WORKLOADS.find((w) => w.id === 'put64')!;
  for (const s of systems) await measure(s, member, get64, 16, plan.warmupS);
  for (const [w, c] of [[get64, 16], [get64, 64], [put64, 16]] as const) {
    if (overBudget()) {
      skipped.push(`v3 section: ${w.title} c=${c}`);
      continue;
    }
    const mine: Run[] = [];
    for (let rep = 0; rep < plan.reps; rep++) {
      for (const s of rotate(systems, rep)) mine.push({ ...(await measure(s, member, w, c, plan.durationS)), rep });
    }
    for (const id of ['go', 'node-v3'] as const) cells.push(cellOf(mine.filter((r) => r.system === id)));
    log(`v3 section ${w.title} c=${c}: ${cells.slice(-2).map((x) => `${x.system} ${Math.round(x.rps)} req/s cpu ${x.cpuPer1k?.toFixed(0)} ms/1k member ${x.memberCpuPer1k.toFixed(0)}`).join(' | ')}`);
  }
  await Promise.all([v3Proxy.stop(), goProxy.stop()]);
  proxies.delete(v3Proxy);
  proxies.delete(goProxy);

  let watch: V3WatchResult | undefined;
  if (overBudget()) skipped.push(`v3 section: ${plan.v3Watchers} watchers`);
  else watch = await v3Watchers(plan.v3Watchers, member, initialCluster);
  await member.stop();
  members.splice(members.indexOf(member), 1);
  return { cells, watch };
}

/** `n` idle v2 watchers through a fresh proxy with `backend: 'v3'`; the event is a PUT through it. */
async function v3Watchers(n: number, member: LocalEtcd, initialCluster: string): Promise<V3WatchResult> {
  const proxy = await startNodeProxy({ entry, port: await freePort(), initialCluster, dataDir: join(tmp, 'v3-watch'), proxyOptions: { backend: 'v3' } });
  proxies.add(proxy);
  const result: V3WatchResult = {
    n, openS: Number.NaN, registered: 0, registrationErrors: 0, grpcConnections: Number.NaN, rssIdleMb: Number.NaN,
    delivered: 0, lastMs: null, p50Ms: null, fanOutCpuMs: Number.NaN, peakRssMb: Number.NaN,
  };
  const config = { url: proxy.url, key: '/v2/keys/w', n, writeUrl: proxy.url, batch: 250 };
  const watchers = startLineChild('node', ['--import', 'tsx', 'bench/watchers.ts', JSON.stringify(config)]);
  try {
    const opened = await watchers.next('opened', 120000);
    result.openS = Number(opened.ms) / 1000;
    // The proxy counts its open v2 watches in /v2/stats/store, as a member counts its own.
    result.registered = await settleWatchers(proxy.url, n, 30000);
    const st = await (watchers.send('status'), watchers.next('status', 10000));
    result.registrationErrors = Number(st.error);
    result.grpcConnections = connectionsTo(proxy.pid, [member.clientPort]);
    result.rssIdleMb = rssMb(proxy.pid);
    log(`v3 watch N=${n}: opened in ${result.openS.toFixed(1)} s, proxy counts ${result.registered}, ${result.registrationErrors} errors, ${result.grpcConnections} connections to the member, RSS ${result.rssIdleMb.toFixed(0)} MB`);
    const cpuBefore = cpuMs(proxy.pid);
    const fired = await (watchers.send('fire'), watchers.next('fired', 20000));
    result.fanOutCpuMs = cpuMs(proxy.pid) - cpuBefore;
    result.delivered = Number(fired.delivered);
    result.lastMs = fired.lastMs === null ? null : Number(fired.lastMs);
    result.p50Ms = fired.p50Ms === null ? null : Number(fired.p50Ms);
    result.peakRssMb = peakRssMb(proxy.pid);
    log(`v3 watch N=${n}: event to ${result.delivered} in ${result.lastMs ?? '–'} ms (p50 ${result.p50Ms ?? '–'} ms), peak RSS ${result.peakRssMb.toFixed(0)} MB`);
  } catch (err) {
    result.note = `stopped early: ${(err as Error).message.split('\n')[0]}`;
    log(`v3 watch N=${n}: ${result.note}`);
    result.peakRssMb = peakRssMb(proxy.pid);
  }
  watchers.send('exit');
  const gone = await Promise.race([watchers.exited.then(() => true), sleep(5000).then(() => false)]);
  if (!gone) await watchers.stop(1000);
  await proxy.stop();
  proxies.delete(proxy);
  return result;
}

async function main(): Promise<void> {
  ensureTools();
  const f = facts();
  log(`${quick ? 'quick' : 'full'} run; ${f.nproc} CPUs (${f.cpuModel}), node ${f.node}, etcd ${f.etcd}, ${f.wrk}; load average ${f.loadStart}`);
  const runs: Run[] = [];
  const cells: Cell[] = [];
  const watch: WatchResult[] = [];
  const skipped: string[] = [];
  let leader: ReportData['leader'];
  let profile: ReportData['profile'];

  const built = buildProxyChild(join(tmp, 'build'));
  entry = built.entry;
  commands.set('compile the proxy child (src/ as it is, to plain JS with source maps, into a temporary dir)', built.command.replace(tmp, '<tmp>'));

  // One member: the request table, the profile and the watchers.
  const member = await startEtcd();
  members.push(member);
  const initialCluster = `${member.name}=${member.peerUrl}`;
  commands.set('npm script', `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`);
  commands.set('etcd member (one-member runs)', etcdCommand(member, initialCluster, `t-${member.name}`));
  f.fdLimit = `${openFilesLimit(member.child.pid!)} (etcd member), ${FD_LIMIT} asked for the proxies, wrk and the watcher process`;
  await put(`${member.clientUrl}/v2/keys/bench/v64`, 'a'.repeat(64));
  await put(`${member.clientUrl}/v2/keys/bench/v16k`, 'b'.repeat(16384));

  const nodeProxy = await startNodeProxy({ entry, port: await freePort(), initialCluster, dataDir: join(tmp, 'node-proxy') });
  proxies.add(nodeProxy);
  const pipedProxy = await startNodeProxy({ entry, port: await freePort(), initialCluster, dataDir: join(tmp, 'node-pipe8'), proxyOptions: PIPELINED_OPTIONS });
  proxies.add(pipedProxy);
  const goProxy = await startGoProxy({ port: await freePort(), initialCluster, dataDir: join(tmp, 'go-proxy') });
  proxies.add(goProxy);
  commands.set('this proxy (createProxy in a child process)', nodeProxy.command);
  commands.set('this proxy with the opt-in pipelineReads: 8 (request table only)', pipedProxy.command);
  commands.set("etcd's Go proxy, same flags", goProxy.command);
  f.fdLimit += `; proxies got ${openFilesLimit(nodeProxy.pid)} (this) and ${openFilesLimit(goProxy.pid)} (Go)`;
  const systems: System[] = [
    { id: 'etcd', url: member.clientUrl, pid: undefined },
    { id: 'node', url: nodeProxy.url, pid: nodeProxy.pid },
    { id: 'node-pipe8', url: pipedProxy.url, pid: pipedProxy.pid },
    { id: 'go', url: goProxy.url, pid: goProxy.pid },
  ];
  log(`member ${member.clientUrl} (pid ${member.child.pid}), this proxy ${nodeProxy.url} (pid ${nodeProxy.pid}), with pipelineReads 8 ${pipedProxy.url} (pid ${pipedProxy.pid}), Go proxy ${goProxy.url} (pid ${goProxy.pid})`);

  for (const w of section('load') ? plan.workloads : []) {
    commands.set(
      `wrk, ${w.title} (c = ${plan.concurrency.join(', ')}; the URL's port is the system's: etcd ${member.clientPort}, this proxy ${nodeProxy.port}, pipelineReads 8 ${pipedProxy.port}, Go proxy ${goProxy.port})`,
      commandLine('wrk', wrkArgs({ url: `${nodeProxy.url}${w.path}`, script: w.script, connections: plan.concurrency[0]!, durationS: plan.durationS, args: w.args })),
    );
    if (overBudget()) {
      skipped.push(`${w.title}: every concurrency`);
      continue;
    }
    // Warm-up (JIT, connection pools), not recorded.
    for (const s of systems) await measure(s, member, w, 16, plan.warmupS);
    for (const c of plan.concurrency) {
      if (overBudget()) {
        skipped.push(`${w.title} c=${c}`);
        continue;
      }
      const mine: Run[] = [];
      for (let rep = 0; rep < plan.reps; rep++) {
        for (const s of rotate(systems, rep)) {
          const r = { ...(await measure(s, member, w, c, plan.durationS)), rep };
          mine.push(r);
          runs.push(r);
        }
      }
      for (const id of LOAD_SYSTEMS) cells.push(cellOf(mine.filter((r) => r.system === id)));
      const line = LOAD_SYSTEMS
        .map((id) => {
          const x = cells.find((y) => y.workload === w.id && y.c === c && y.system === id)!;
          return `${id} ${Math.round(x.rps)} req/s p99 ${x.p99Ms.toFixed(2)} ms${x.cpuPer1k === null ? '' : ` cpu ${x.cpuPer1k.toFixed(0)} ms/1k`}${x.errors > 0 ? ` ERR ${x.errors}` : ''}`;
        })
        .join(' | ');
      log(`${w.title} c=${c}: ${line}`);
    }
  }
  for (const p of [nodeProxy, pipedProxy, goProxy]) {
    await p.stop();
    proxies.delete(p);
  }

  // The profile: one run of this proxy under --cpu-prof, GET 64 B at c=16.
  if (!section('profile')) skipped.push('the profile (not asked for)');
  else if (overBudget()) skipped.push('the profile');
  else {
    const dir = join(tmp, 'cpu-prof');
    mkdirSync(dir);
    const p = await startNodeProxy({ entry, port: await freePort(), initialCluster, dataDir: join(tmp, 'prof-proxy'), cpuProfDir: dir });
    proxies.add(p);
    const w = WORKLOADS[0]!;
    await runWrk({ url: `${p.url}${w.path}`, script: 'get', connections: 16, durationS: 1 });
    await sleep(300);
    const from = Number(process.hrtime.bigint() / 1000n);
    const cpu0 = cpuTimes(p.pid);
    const r = await runWrk({ url: `${p.url}${w.path}`, script: 'get', connections: 16, durationS: plan.profileS });
    const cpu1 = cpuTimes(p.pid);
    const to = Number(process.hrtime.bigint() / 1000n);
    await p.stop();
    proxies.delete(p);
    const file = readdirSync(dir).find((x) => x.endsWith('.cpuprofile'));
    if (file === undefined) skipped.push('the profile: node wrote no .cpuprofile');
    else {
      let summary = summarizeProfile(join(dir, file), from, to);
      let note: string | undefined;
      if (summary.samples === 0) {
        summary = summarizeProfile(join(dir, file), 0, Number.MAX_SAFE_INTEGER);
        note = "The profile's clock did not match the run's window: the whole profile (start-up included) is summarised.";
      }
      profile = {
        summary,
        command: `${p.command.replace(dir, '<tmp>/cpu-prof')}  # then: ${r.command}`.split(tmp).join('<tmp>'),
        rps: r.rps,
        requests: r.requests,
        userMs: cpu1.user - cpu0.user,
        sysMs: cpu1.sys - cpu0.sys,
        note,
      };
      log(`profile: ${summary.samples} samples, ${summary.busyMs.toFixed(0)} ms busy; top: ${summary.topSelf.slice(0, 3).map((x) => x.name).join(', ')}`);
    }
  }

  // Idle watchers, a fresh proxy each time, the two proxies alternating.
  for (const [i, n] of (section('watch') ? plan.watchers : []).entries()) {
    // At the largest N, the proxy also runs with a smaller young generation (README, "Memory").
    const largest = n === Math.max(...plan.watchers);
    for (const system of rotate((largest ? ['node', 'node-semi4', 'go', 'etcd'] : ['node', 'go', 'etcd']) as SystemId[], i)) {
      if (overBudget()) {
        skipped.push(`watchers: ${system} N=${n}`);
        continue;
      }
      watch.push(await watchScale(system, n, member, initialCluster));
    }
  }
  const order: SystemId[] = ['etcd', 'node', 'node-semi4', 'go'];
  watch.sort((a, b) => a.n - b.n || order.indexOf(a.system) - order.indexOf(b.system));
  await member.stop();
  members.splice(members.indexOf(member), 1);

  // Leader-aware writes on a 3-member cluster.
  if (!section('leader')) skipped.push('leader-aware writes (not asked for)');
  else if (overBudget()) skipped.push('leader-aware writes');
  else {
    const cluster = await startCluster(3);
    members.push(...cluster);
    const clusterSpec = cluster.map((m) => `${m.name}=${m.peerUrl}`).join(',');
    commands.set('3-member cluster, each member like', etcdCommand(cluster[0]!, clusterSpec, `t-cluster-${cluster[0]!.clientPort}`));
    const on = await startNodeProxy({ entry, port: await freePort(), initialCluster: clusterSpec, dataDir: join(tmp, 'leader-on'), leaderWrites: true });
    proxies.add(on);
    const off = await startNodeProxy({ entry, port: await freePort(), initialCluster: clusterSpec, dataDir: join(tmp, 'leader-off'), leaderWrites: false });
    proxies.add(off);
    commands.set('leader writes on / off', `${on.command}\n  ${off.command}`);
    const lr: LeaderRun[] = [];
    const path = '/v2/keys/bench/lw';
    for (const c of plan.leaderConcurrency) {
      if (overBudget()) {
        skipped.push(`leader-aware writes c=${c}`);
        continue;
      }
      for (const p of [on, off]) await runWrk({ url: `${p.url}${path}`, script: 'put', connections: c, durationS: 1 });
      for (let rep = 0; rep < plan.leaderReps; rep++) {
        for (const mode of rep % 2 === 0 ? [true, false] : [false, true]) {
          const r = await runWrk({ url: `${(mode ? on : off).url}${path}`, script: 'put', connections: c, durationS: plan.leaderDurationS });
          lr.push({ c, rep, leaderWrites: mode, rps: r.rps, p50Ms: r.p50Ms, p99Ms: r.p99Ms, errors: r.statusErrors + r.socketErrors });
        }
      }
      log(`leader writes c=${c}: ${lr.filter((x) => x.c === c).map((x) => `${x.leaderWrites ? 'on' : 'off'} p50 ${x.p50Ms.toFixed(2)} ms`).join(', ')}`);
    }
    leader = { leaderUrl: on.leader, durationS: plan.leaderDurationS, runs: lr };
    await Promise.all([on.stop(), off.stop()]);
    proxies.delete(on);
    proxies.delete(off);
    await Promise.all(cluster.map((m) => m.stop()));
    members.length = 0;
  }

  let v3: V3Data | undefined;
  if (!section('v3')) skipped.push('the v3 backend (not asked for)');
  else if (overBudget()) skipped.push('the v3 backend');
  else v3 = await v3Section(skipped);

  let grpc: GrpcData | undefined;
  if (!section('grpc')) skipped.push('v3 clients through the proxy (not asked for)');
  else if (overBudget()) skipped.push('v3 clients through the proxy');
  else grpc = await runGrpcSection({ plan: plan.grpc, tmp, entry, members, proxies, skipped, overBudget, log });

  f.loadEnd = loadAverage();
  let notes = '';
  try {
    notes = readFileSync(join(REPO, 'bench/notes.md'), 'utf8');
  } catch {
    // no notes
  }
  const data: ReportData = {
    quick,
    durationS: plan.durationS,
    reps: plan.reps,
    facts: f,
    commands: [...commands].map(([label, cmd]): [string, string] => [label, cmd.split(tmp).join('<tmp>')]),
    workloads: plan.workloads,
    concurrency: plan.concurrency,
    runs,
    cells,
    watch,
    leader,
    profile,
    notes,
    elapsedS: elapsedS(),
    skipped,
    v3,
    grpc,
  };
  mkdirSync(join(outFile, '..'), { recursive: true });
  writeFileSync(outFile, renderMarkdown(data));
  process.stdout.write(
    `\n${loadTables(data)}\n${ratioTable(data)}\n\nIdle watchers\n\n${watchTable(data)}\n\nLeader-aware writes\n\n${leaderTable(data)}\n\n${targetTable(data)}\n\n` +
      (v3 === undefined ? '' : `v3 backend (issue 16)\n\n${v3LoadTable(v3)}\n\n${v3WatchTable(v3)}\n\n${v3TargetTable(v3)}\n\n`) +
      (grpc === undefined ? '' : `v3 clients through the proxy (issue 17)\n\n${grpcLoadTable(grpc)}\n\n${generatorTable(grpc)}\n\n${grpcWatchTable(grpc)}\n\n${grpcTargetTable(grpc)}\n\n`) +
      `load average at start ${f.loadStart}, at end ${f.loadEnd}; ${Math.round(elapsedS())} s\nwrote ${outFile}\n`,
  );
}

try {
  await main();
} catch (err) {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
