/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per
 * function and per area, and the inclusive time of this library's own
 * functions, over the samples taken within a time window (the load run).
 */
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileRow {
  name: string;
  where: string;
  ms: number;
  share: number;
}

export interface ProfileSummary {
  /** ms of samples in the window, idle excluded. */
  busyMs: number;
  idleMs: number;
  windowMs: number;
  samples: number;
  topSelf: ProfileRow[];
  areas: ProfileRow[];
  /** Inclusive time of functions from src/ (this library). */
  library: ProfileRow[];
}

function shortUrl(url: string): string {
  if (url === '') return '';
  const src = url.indexOf('/src/');
  if (src >= 0 && !url.includes('node_modules')) return url.slice(src + 1);
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) return url.slice(nm + 'node_modules/'.length);
  return url;
}

const maps = new Map<string, SourceMap | undefined>();

/**
 * `file:line` of a frame, mapped back to the TypeScript source when the
 * frame is in a compiled file with a source map next to it (the benchmark
 * runs the proxy compiled by tsc, see bench/tsconfig.child.json).
 */
function location(frame: CallFrame): string {
  if (frame.url === '') return '';
  if (frame.url.startsWith('file://') && !maps.has(frame.url)) {
    let map: SourceMap | undefined;
    try {
      const path = `${fileURLToPath(frame.url)}.map`;
      if (existsSync(path)) map = new SourceMap(JSON.parse(readFileSync(path, 'utf8')));
    } catch {
      map = undefined;
    }
    maps.set(frame.url, map);
  }
  const map = maps.get(frame.url);
  if (map !== undefined) {
    const entry = map.findEntry(frame.lineNumber, frame.columnNumber) as { originalSource?: string; originalLine?: number };
    if (entry.originalSource !== undefined && entry.originalLine !== undefined) {
      const source = entry.originalSource.replace(/^.*?\/(src|bench)\//, '$1/');
      return `${source}:${entry.originalLine + 1}`;
    }
  }
  return `${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
}

function area(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (url === '') {
    if (functionName === '(garbage collector)') return '(garbage collector)';
    if (functionName === '(program)') return '(program): V8 and native code outside JS';
    return 'native functions (bindings)';
  }
  if (url.includes('node_modules/')) return 'dependencies (node_modules)';
  if (url.includes('/src/')) return 'this library (src/)';
  if (/^node:(_http|https?$|internal\/http)/.test(url)) return 'node: http (_http_*)';
  if (/^node:(net$|stream$|internal\/streams|internal\/stream_base|internal\/net|internal\/dns)/.test(url)) return 'node: net and streams';
  if (/^node:(events$|internal\/(timers|async_hooks|process\/task_queues|perf|event_target))|^node:timers/.test(url))
    return 'node: events, timers, task queues';
  if (url.startsWith('node:')) return 'node: other';
  return 'other JS';
}

/** Summarises the samples of `file` taken between `fromUs` and `toUs` (the profile's clock, CLOCK_MONOTONIC µs). */
export function summarizeProfile(file: string, fromUs: number, toUs: number, top = 20): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) byId.set(n.id, n);
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const self = new Map<string, { name: string; where: string; ms: number }>();
  const areas = new Map<string, number>();
  const inclusive = new Map<string, { name: string; where: string; ms: number }>();
  let t = profile.startTime;
  let busy = 0;
  let idle = 0;
  let count = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    if (t < fromUs || t > toUs) continue;
    // A sample stands for the time until the next one.
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const node = byId.get(profile.samples[i]!);
    if (node === undefined) continue;
    count++;
    const f = node.callFrame;
    if (f.functionName === '(idle)') {
      idle += ms;
      continue;
    }
    busy += ms;
    const where = location(f);
    const name = f.functionName || '(anonymous)';
    const key = `${name} ${where}`;
    const row = self.get(key) ?? { name, where, ms: 0 };
    row.ms += ms;
    self.set(key, row);
    const a = area(f);
    areas.set(a, (areas.get(a) ?? 0) + ms);
    // Inclusive time of this library's functions: each counted once per sample.
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const cf = byId.get(id)!.callFrame;
      if (!cf.url.includes('/src/') || cf.url.includes('node_modules')) continue;
      const w = location(cf);
      const n = cf.functionName || '(anonymous)';
      const k = `${n} ${w}`;
      if (seen.has(k)) continue;
      seen.add(k);
      const r = inclusive.get(k) ?? { name: n, where: w, ms: 0 };
      r.ms += ms;
      inclusive.set(k, r);
    }
  }
  const rows = (m: Iterable<{ name: string; where: string; ms: number }>, limit: number): ProfileRow[] =>
    [...m]
      .sort((a, b) => b.ms - a.ms)
      .slice(0, limit)
      .map((r) => ({ ...r, share: busy > 0 ? r.ms / busy : 0 }));
  return {
    busyMs: busy,
    idleMs: idle,
    windowMs: (toUs - fromUs) / 1000,
    samples: count,
    topSelf: rows(self.values(), top),
    areas: rows(
      [...areas].map(([name, ms]) => ({ name, where: '', ms })),
      20,
    ),
    library: rows(inclusive.values(), 12),
  };
}
