/**
 * What the benchmark reads about a process from /proc: CPU time, memory,
 * open-file limit, and its TCP connections to given ports.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (`getconf CLK_TCK`). */
export const CLK_TCK = ((): number => {
  const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim();
  const n = Number(out);
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

/** utime and stime of `pid` in ms (from /proc/<pid>/stat); NaN when the process is gone. */
export function cpuTimes(pid: number): { user: number; sys: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "pid (comm) ": state is field 3, utime 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: (Number(rest[11]) * 1000) / CLK_TCK, sys: (Number(rest[12]) * 1000) / CLK_TCK };
  } catch {
    return { user: Number.NaN, sys: Number.NaN };
  }
}

/** utime + stime of `pid` in ms; NaN when the process is gone. */
export function cpuMs(pid: number): number {
  const t = cpuTimes(pid);
  return t.user + t.sys;
}

function statusField(pid: number, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Resident set size of `pid` in MiB (VmRSS). */
export function rssMb(pid: number): number {
  return statusField(pid, 'VmRSS');
}

/** Peak resident set size of `pid` in MiB (VmHWM). */
export function peakRssMb(pid: number): number {
  return statusField(pid, 'VmHWM');
}

/** The soft "Max open files" limit of `pid`. */
export function openFilesLimit(pid: number): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    return m ? (m[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m[1])) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/**
 * ESTABLISHED TCP connections of process `pid` whose remote port is one of
 * `ports`: the sockets among /proc/<pid>/fd matched to /proc/<pid>/net/tcp
 * (as test/integration/fault.test.ts counts them).
 */
export function connectionsTo(pid: number, ports: readonly number[]): number {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return Number.NaN;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // fd closed meanwhile
    }
  }
  const wanted = new Set(ports.map((p) => p.toString(16).toUpperCase().padStart(4, '0')));
  let n = 0;
  for (const file of [`/proc/${pid}/net/tcp`, `/proc/${pid}/net/tcp6`]) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const remotePort = cols[2]!.split(':')[1]!;
      if (cols[3] === '01' && wanted.has(remotePort) && inodes.has(cols[9]!)) n++;
    }
  }
  return n;
}

/** The 1, 5 and 15 minute load averages. */
export function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'unknown';
  }
}

/** The CPU model from /proc/cpuinfo. */
export function cpuModel(): string {
  try {
    return /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
