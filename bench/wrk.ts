/**
 * Runs wrk (one thread, keep-alive connections) with one of the Lua scripts
 * in bench/wrk/ and reads the JSON line the script prints at the end.
 */
import { spawnSync } from 'node:child_process';
import { commandLine, spawnLimited } from './processes.js';

export interface WrkOptions {
  url: string;
  /** bench/wrk/<script>.lua */
  script: 'get' | 'put' | 'mix';
  connections: number;
  durationS: number;
  /** Arguments for the script (after `--`). */
  args?: readonly string[];
}

export interface WrkResult {
  command: string;
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Responses with a status over 399 (wrk's "Non-2xx or 3xx responses"). */
  statusErrors: number;
  /** connect + read + write + timeout. */
  socketErrors: number;
}

/** wrk's version line (`wrk -v` exits 1 after printing it). */
export function wrkVersion(): string {
  const r = spawnSync('wrk', ['-v'], { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]?.trim() || 'unknown';
}

export function wrkArgs(o: WrkOptions): string[] {
  return [
    '-t1',
    `-c${o.connections}`,
    `-d${o.durationS}s`,
    '--timeout',
    '5s',
    '-s',
    `bench/wrk/${o.script}.lua`,
    o.url,
    ...(o.args !== undefined && o.args.length > 0 ? ['--', ...o.args] : []),
  ];
}

export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  const args = wrkArgs(o);
  const p = spawnLimited('wrk', args);
  const timer = setTimeout(() => void p.stop(1000), (o.durationS + 15) * 1000);
  const code = await new Promise<number | null>((resolve) => p.child.once('exit', (c) => resolve(c)));
  clearTimeout(timer);
  await p.exited;
  const m = /WRK_JSON (\{.*\})/.exec(p.output());
  if (code !== 0 || m === null) throw new Error(`wrk failed (exit ${code}): ${commandLine('wrk', args)}\n${p.output().slice(-2000)}`);
  const j = JSON.parse(m[1]!) as Record<string, number>;
  const seconds = j.duration_us! / 1e6;
  return {
    command: commandLine('wrk', args),
    requests: j.requests!,
    seconds,
    rps: j.requests! / seconds,
    p50Ms: j.p50_us! / 1000,
    p90Ms: j.p90_us! / 1000,
    p99Ms: j.p99_us! / 1000,
    maxMs: j.max_us! / 1000,
    statusErrors: j.status!,
    socketErrors: j.connect! + j.read! + j.write! + j.timeout!,
  };
}
