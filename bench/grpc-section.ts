/**
 * The 'grpc' section of `npm run bench` (issue 17), run by bench/run.ts
 * (`npm run bench -- --only grpc`): etcd v3 clients through this proxy
 * against `etcd grpc-proxy start` and `etcd gateway start`, with the member
 * directly as the reference row, and 10,000 v3 watchers. bench/run.ts owns the
 * sets of started members and proxies (stopped by PID at the end, whatever
 * happens); this module adds to them and removes what it stopped itself.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, startEtcd } from '../examples/local-etcd.js';
import type { LocalEtcd } from '../examples/local-etcd.js';
import { commandLine, spawnLimited, startLineChild, startNodeProxy } from './processes.js';
import type { ProxyProcess, Started } from './processes.js';
import { connectionsTo, cpuMs, peakRssMb, rssMb } from './procfs.js';
import { h2loadArgs, h2loadVersion, hostPort, probeRange, putRangeKey, rangeBody, runH2load } from './grpc-load.js';
import type { Probe } from './grpc-load.js';
import { GRPC_SYSTEMS, GRPC_TITLE, grpcCellOf } from './grpc-report.js';
import type { GrpcCell, GrpcData, GrpcRun, GrpcSystemId, GrpcWatchResult } from './grpc-report.js';

export interface GrpcPlan {
  durationS: number;
  reps: number;
  warmupS: number;
  /** Concurrent streams per cell. */
  concurrency: number[];
  /** HTTP/2 connections per h2load run; each cell's streams are spread evenly over them. */
  connections: number;
  /** Watcher connections (gRPC channels), Watch streams on each, watches on each stream. */
  watchConnections: number;
  watchStreams: number;
  watchesPerStream: number;
}

export interface GrpcContext {
  plan: GrpcPlan;
  /** bench/run.ts's temporary directory (removed at the end). */
  tmp: string;
  /** The compiled bench/proxy-child.js. */
  entry: string;
  members: LocalEtcd[];
  proxies: Set<ProxyProcess>;
  skipped: string[];
  overBudget(): boolean;
  log(msg: string): void;
}

interface System {
  id: GrpcSystemId;
  url: string;
  /** The proxy's process; undefined for the member directly. */
  proxy: ProxyProcess | undefined;
}

const WATCH_KEY = 'bench/w';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Why a system did not start, in one line: the child's error line (`...Error: ...`) when its output has one. */
function reason(err: unknown): string {
  const lines = (err as Error).message.split('\n');
  return (lines.find((l, i) => i > 0 && /^\w*Error\b.*: /.test(l.trim())) ?? lines[0]!).trim().slice(0, 300);
}

/** What a failed probe means for the row: this proxy's UNIMPLEMENTED is its refusal of v3 clients. */
function describeProbe(id: GrpcSystemId, p: Probe): string {
  if (p.ok) return p.value.length === 64 ? 'ok' : `wrong answer (value of ${p.value.length} bytes)`;
  if (id === 'node' && p.codeName === 'UNIMPLEMENTED') return 'not forwarding yet';
  return `${p.codeName}: ${p.details.slice(0, 160)}`;
}

/** Probes `url` until a Range answers or `ms` passed; the last probe. */
async function probeUntil(url: string, ms: number): Promise<Probe> {
  const deadline = Date.now() + ms;
  for (;;) {
    const p = await probeRange(hostPort(url), 1000);
    if (p.ok || Date.now() > deadline || (!p.ok && p.codeName === 'UNIMPLEMENTED')) return p;
    await sleep(200);
  }
}

/** An etcd 3.4 proxy subcommand as a {@link ProxyProcess}: `grpc-proxy start` or `gateway start`. */
async function startEtcdProxy(kind: 'grpc-proxy' | 'gateway', member: LocalEtcd, dataDir: string): Promise<ProxyProcess> {
  const port = await freePort();
  const args =
    kind === 'grpc-proxy'
      ? ['grpc-proxy', 'start', `--endpoints=${hostPort(member.clientUrl)}`, `--listen-addr=127.0.0.1:${port}`, `--data-dir=${dataDir}`]
      : ['gateway', 'start', `--endpoints=${hostPort(member.clientUrl)}`, `--listen-addr=127.0.0.1:${port}`];
  const p: Started = spawnLimited('etcd', args);
  const url = `http://127.0.0.1:${port}`;
  const probe = await probeUntil(url, 20000);
  if (!probe.ok) {
    await p.stop();
    throw new Error(`etcd ${kind} start did not answer a Range on ${url} within 20 s (${probe.codeName}: ${probe.details}):\n${p.output().slice(-2000)}`);
  }
  return { ...p, url, port };
}

async function startSystem(ctx: GrpcContext, id: GrpcSystemId, member: LocalEtcd, name: string): Promise<System> {
  if (id === 'etcd') return { id, url: member.clientUrl, proxy: undefined };
  const proxy =
    id === 'node'
      ? await startNodeProxy({ entry: ctx.entry, port: await freePort(), initialCluster: `${member.name}=${member.peerUrl}`, dataDir: join(ctx.tmp, name) })
      : await startEtcdProxy(id, member, join(ctx.tmp, name));
  ctx.proxies.add(proxy);
  return { id, url: proxy.url, proxy };
}

async function stopSystem(ctx: GrpcContext, s: System): Promise<void> {
  if (s.proxy === undefined) return;
  await s.proxy.stop();
  ctx.proxies.delete(s.proxy);
}

function rotate<T>(xs: readonly T[], by: number): T[] {
  const k = by % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

export async function runGrpcSection(ctx: GrpcContext): Promise<GrpcData> {
  const { plan, log } = ctx;
  const commands: Array<[string, string]> = [];
  // With --enable-v2: this proxy (v2 backend, the default) checks at start that the cluster serves v2;
  // the v3 API, all these clients use, is always on.
  const member = await startEtcd();
  ctx.members.push(member);
  const data: GrpcData = {
    h2load: h2loadVersion(),
    durationS: plan.durationS,
    reps: plan.reps,
    connections: plan.connections,
    systems: [],
    generators: [],
    runs: [],
    cells: [],
    watch: [],
    commands,
  };
  try {
    const target = hostPort(member.clientUrl);
    commands.push([
      'etcd member',
      commandLine('etcd', [
        '--name', member.name, '--enable-v2', '--data-dir', '<tmp>', '--listen-client-urls', member.clientUrl, '--advertise-client-urls', member.clientUrl,
        '--listen-peer-urls', member.peerUrl, '--initial-advertise-peer-urls', member.peerUrl,
        '--initial-cluster', `${member.name}=${member.peerUrl}`, '--initial-cluster-state', 'new', '--initial-cluster-token', `t-${member.name}`,
      ]),
    ]);
    await putRangeKey(target);
    const bodyFile = join(ctx.tmp, 'grpc-range.bin');
    writeFileSync(bodyFile, await rangeBody());
    const logFile = join(ctx.tmp, 'h2load.log');

    // The systems for the request table, started once.
    const systems: System[] = [];
    for (const id of GRPC_SYSTEMS) {
      try {
        systems.push(await startSystem(ctx, id, member, `grpc-${id}`));
      } catch (err) {
        data.systems.push({ id, state: `did not start: ${reason(err)}` });
      }
    }
    for (const s of systems) {
      const state = describeProbe(s.id, await probeRange(hostPort(s.url)));
      data.systems.push({ id: s.id, state });
      if (s.proxy !== undefined) commands.push([GRPC_TITLE[s.id], s.proxy.command.split(ctx.tmp).join('<tmp>')]);
      log(`grpc: ${GRPC_TITLE[s.id]} ${s.url}${s.proxy === undefined ? '' : ` (pid ${s.proxy.pid})`}: ${state}`);
    }
    const measured = systems.filter((s) => data.systems.find((x) => x.id === s.id)?.state === 'ok');
    const c16 = plan.concurrency[0] ?? 16;
    const streamsOf = (c: number): number => Math.max(1, Math.round(c / plan.connections));
    commands.push([
      `h2load, KV/Range 64 B (c = ${plan.concurrency.join(', ')}: -m is c / ${plan.connections}; the URL's port is the system's)`,
      commandLine('h2load', h2loadArgs({ url: member.clientUrl, bodyFile, connections: plan.connections, streams: streamsOf(c16), durationS: plan.durationS, logFile })).split(ctx.tmp).join('<tmp>'),
    ]);

    // The generator calibration: h2load and grpc-js against the member, the same c.
    const hCal = await runH2load({ url: member.clientUrl, bodyFile, connections: plan.connections, streams: streamsOf(c16), durationS: plan.durationS, logFile }, cpuMs);
    const expectedBytes = hCal.dataBytesPerRequest;
    data.generators.push({ generator: 'h2load', c: c16, rps: hCal.rps, p99Ms: hCal.p99Ms, cpuPer1k: hCal.cpuMs / (hCal.requests / 1000), errors: hCal.errors });
    const jsConfig = { target, channels: plan.connections, concurrency: c16, durationS: plan.durationS };
    commands.push(['@grpc/grpc-js load generator (calibration only)', commandLine('node', ['--import', 'tsx', 'bench/grpc-js-load.ts', JSON.stringify(jsConfig)])]);
    const js = startLineChild('node', ['--import', 'tsx', 'bench/grpc-js-load.ts', JSON.stringify(jsConfig)]);
    try {
      await js.next('ready', 20000);
      js.send(`go ${plan.warmupS}`);
      await js.next('done', (plan.warmupS + 20) * 1000);
      const j0 = cpuMs(js.pid);
      js.send('go');
      const done = await js.next('done', (plan.durationS + 20) * 1000);
      const requests = Number(done.requests);
      data.generators.push({ generator: 'grpc-js', c: c16, rps: requests / Number(done.seconds), p99Ms: Number(done.p99Ms), cpuPer1k: (cpuMs(js.pid) - j0) / (requests / 1000), errors: Number(done.failed) });
    } catch (err) {
      ctx.skipped.push(`grpc: the grpc-js generator calibration (${(err as Error).message.split('\n')[0]})`);
    } finally {
      js.send('exit');
      const gone = await Promise.race([js.exited.then(() => true), sleep(5000).then(() => false)]);
      if (!gone) await js.stop(1000);
    }
    log(`grpc: generators at c=${c16} on the member: ${data.generators.map((g) => `${g.generator} ${Math.round(g.rps)} req/s, own CPU ${g.cpuPer1k.toFixed(1)} ms/1k`).join(' | ')}`);

    const measure = async (s: System, c: number, durationS: number, rep: number): Promise<GrpcRun> => {
      const pid = s.proxy?.pid;
      const c0 = pid === undefined ? Number.NaN : cpuMs(pid);
      const m0 = cpuMs(member.child.pid!);
      const r = await runH2load({ url: s.url, bodyFile, connections: plan.connections, streams: streamsOf(c), durationS, logFile }, cpuMs);
      const c1 = pid === undefined ? Number.NaN : cpuMs(pid);
      const m1 = cpuMs(member.child.pid!);
      const k = r.requests / 1000;
      // An answer without the RangeResponse's bytes was a gRPC error (h2load counts it a success, and an
      // error has no DATA); the header's varints may differ by a byte between systems, hence the 2 %.
      const short = r.dataBytesPerRequest < expectedBytes * 0.98 ? Math.round(r.requests * (1 - r.dataBytesPerRequest / expectedBytes)) : 0;
      return {
        c, rep, system: s.id, requests: r.requests, rps: r.rps, p50Ms: r.p50Ms, p99Ms: r.p99Ms,
        errors: r.errors + short,
        bytesPerRequest: r.dataBytesPerRequest,
        cpuPer1k: pid === undefined ? null : (c1 - c0) / k,
        memberCpuPer1k: (m1 - m0) / k,
        loadgenCpuPer1k: r.cpuMs / k,
        rssMb: pid === undefined ? null : rssMb(pid),
      };
    };

    // Warm-up (JIT, connection pools), not recorded.
    for (const s of measured) await measure(s, c16, plan.warmupS, -1);
    for (const c of plan.concurrency) {
      if (ctx.overBudget()) {
        ctx.skipped.push(`grpc: KV/Range 64 B c=${c}`);
        continue;
      }
      const mine: GrpcRun[] = [];
      for (let rep = 0; rep < plan.reps; rep++) for (const s of rotate(measured, rep)) mine.push(await measure(s, c, plan.durationS, rep));
      data.runs.push(...mine);
      const cells: GrpcCell[] = measured.map((s) => grpcCellOf(mine.filter((r) => r.system === s.id)));
      data.cells.push(...cells);
      log(
        `grpc: KV/Range 64 B c=${c}: ${cells
          .map((x) => `${x.system} ${Math.round(x.rps)} req/s p99 ${x.p99Ms.toFixed(2)} ms${x.cpuPer1k === null ? '' : ` cpu ${x.cpuPer1k.toFixed(0)} ms/1k`} member ${x.memberCpuPer1k.toFixed(0)} h2load ${x.loadgenCpuPer1k.toFixed(0)}${x.errors > 0 ? ` ERR ${x.errors}` : ''}`)
          .join(' | ')}`,
      );
    }
    for (const s of systems) await stopSystem(ctx, s);

    // Watchers: a fresh process of each system; this proxy only once it forwards.
    const watchConfig = { target, writeTarget: target, key: WATCH_KEY, connections: plan.watchConnections, streams: plan.watchStreams, watchesPerStream: plan.watchesPerStream };
    commands.push(['v3 watchers (target: the system measured; the Put goes to the member)', commandLine('node', ['--import', 'tsx', 'bench/grpc-watchers.ts', JSON.stringify(watchConfig)])]);
    for (const id of ['node', 'grpc-proxy', 'gateway', 'etcd'] as const) {
      if (ctx.overBudget()) {
        ctx.skipped.push(`grpc: v3 watchers through ${GRPC_TITLE[id]}`);
        continue;
      }
      data.watch.push(await watchScale(ctx, id, member, watchConfig));
    }
  } finally {
    await member.stop();
    ctx.members.splice(ctx.members.indexOf(member), 1);
  }
  return data;
}

async function watchScale(
  ctx: GrpcContext,
  id: GrpcSystemId,
  member: LocalEtcd,
  config: { target: string; writeTarget: string; key: string; connections: number; streams: number; watchesPerStream: number },
): Promise<GrpcWatchResult> {
  const n = config.connections * config.streams * config.watchesPerStream;
  const result: GrpcWatchResult = {
    system: id, n, connections: config.connections, streamsPerConnection: config.streams, watchesPerStream: config.watchesPerStream,
    openS: Number.NaN, created: 0, failedStreams: 0, failureDetail: '', upstreamConnections: Number.NaN, rssIdleMb: Number.NaN,
    delivered: 0, lastMs: null, p50Ms: null, fanOutCpuMs: Number.NaN, clientCpuMs: Number.NaN, peakRssMb: Number.NaN,
  };
  let s: System;
  try {
    s = await startSystem(ctx, id, member, `grpc-watch-${id}`);
  } catch (err) {
    result.note = `did not start: ${reason(err)}`;
    return result;
  }
  const pid = s.proxy?.pid;
  const of = <T>(read: (p: number) => T, none: T): T => (pid === undefined ? none : read(pid));
  const state = describeProbe(id, await probeRange(hostPort(s.url)));
  if (state !== 'ok') {
    result.note = state;
    ctx.log(`grpc watch ${id}: ${state}; not measured`);
    await stopSystem(ctx, s);
    return result;
  }
  const watchers = startLineChild('node', ['--import', 'tsx', 'bench/grpc-watchers.ts', JSON.stringify({ ...config, target: hostPort(s.url) })]);
  try {
    const opened = await watchers.next('opened', 120000);
    result.openS = Number(opened.ms) / 1000;
    result.created = Number(opened.created);
    result.failedStreams = Number(opened.failedStreams);
    result.failureDetail = Object.entries((opened.failures ?? {}) as Record<string, number>).map(([k, v]) => `${k}: ${v}`).join(', ');
    result.upstreamConnections = of((p) => connectionsTo(p, [member.clientPort]), Number.NaN);
    result.rssIdleMb = of(rssMb, Number.NaN);
    ctx.log(`grpc watch ${id}: ${result.created} of ${n} created in ${result.openS.toFixed(1)} s, ${result.failedStreams} streams failed, ${result.upstreamConnections} conns to the member, RSS ${result.rssIdleMb.toFixed(0)} MB`);
    const c0 = of(cpuMs, Number.NaN);
    const w0 = cpuMs(watchers.pid);
    const fired = await (watchers.send('fire'), watchers.next('fired', 20000));
    result.fanOutCpuMs = of(cpuMs, Number.NaN) - c0;
    result.clientCpuMs = cpuMs(watchers.pid) - w0;
    result.delivered = Number(fired.delivered);
    result.lastMs = fired.lastMs === null ? null : Number(fired.lastMs);
    result.p50Ms = fired.p50Ms === null ? null : Number(fired.p50Ms);
    if (typeof fired.putError === 'string') result.note = `the Put failed: ${fired.putError}`;
    result.peakRssMb = of(peakRssMb, Number.NaN);
    ctx.log(`grpc watch ${id}: event to ${result.delivered} in ${result.lastMs ?? '–'} ms (p50 ${result.p50Ms ?? '–'} ms), CPU ${result.fanOutCpuMs} ms (watcher process ${result.clientCpuMs} ms), peak RSS ${result.peakRssMb.toFixed(0)} MB`);
  } catch (err) {
    result.note = `stopped early: ${(err as Error).message.split('\n')[0]}`;
    ctx.log(`grpc watch ${id}: ${result.note}`);
    result.peakRssMb = of(peakRssMb, Number.NaN);
  }
  watchers.send('exit');
  const gone = await Promise.race([watchers.exited.then(() => true), sleep(5000).then(() => false)]);
  if (!gone) await watchers.stop(1000);
  await stopSystem(ctx, s);
  return result;
}

