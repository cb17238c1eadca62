/**
 * The processes the benchmark starts besides the etcd members
 * (examples/local-etcd.ts starts those): this proxy in a child process, etcd's
 * Go proxy, the watcher clients and wrk. Each is started through
 * `bash -c 'ulimit -n 20000; exec ...'` (the open-file limit a proxy with
 * 9,000 watches needs), so the PID we hold is the program's own; each is
 * stopped by that PID, and only those.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('..', import.meta.url));
export const FD_LIMIT = 20000;

/** Quotes `s` for a POSIX shell when it needs it. */
export function shq(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function commandLine(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map(shq).join(' ');
}

/** The environment children get: ours without DEBUG (debug logging would change what is measured). */
function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.DEBUG;
  return env;
}

export interface Started {
  readonly pid: number;
  readonly child: ChildProcess;
  /** The command as run (without the ulimit wrapper). */
  readonly command: string;
  /** Everything it printed so far (stdout and stderr), last 64 KiB. */
  output(): string;
  readonly exited: Promise<void>;
  /** SIGTERM by PID, SIGKILL after `graceMs`; resolves once it exited. */
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<Started>();
process.once('exit', () => {
  for (const p of running) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** Kills (SIGKILL, by PID) whatever this module started that is still running. */
export function killStarted(): void {
  for (const p of running) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

export function spawnLimited(cmd: string, args: readonly string[], cwd = REPO): Started {
  const wrapper = `ulimit -n ${FD_LIMIT} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"`;
  const child = spawn('bash', ['-c', wrapper, 'bash', cmd, ...args], { cwd, env: childEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
  let out = '';
  const keep = (b: Buffer): void => {
    out += b.toString();
    if (out.length > 65536) out = out.slice(-65536);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const pid = child.pid;
  let stopping: Promise<void> | undefined;
  const started: Started = {
    pid,
    child,
    command: commandLine(cmd, args),
    output: () => out,
    exited,
    stop(graceMs = 8000) {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          process.kill(pid, 'SIGTERM');
          const timer = setTimeout(() => {
            if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
          }, graceMs);
          await exited;
          clearTimeout(timer);
        }
        running.delete(started);
      })();
      return stopping;
    },
  };
  running.add(started);
  void exited.then(() => running.delete(started));
  return started;
}

/** Resolves with the first line of `p`'s stdout that matches `re`; rejects on exit or after `timeoutMs`. */
export function waitForLine(p: Started, re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (b: Buffer): void => {
      buf += b.toString();
      const m = re.exec(buf);
      if (m) {
        finish();
        resolve(m);
      }
    };
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`no ${re} from ${p.command} within ${timeoutMs} ms:\n${p.output().slice(-2000)}`));
    }, timeoutMs);
    const onExit = (): void => {
      finish();
      reject(new Error(`${p.command} exited:\n${p.output().slice(-2000)}`));
    };
    const finish = (): void => {
      clearTimeout(timer);
      p.child.stdout!.off('data', onData);
      p.child.off('exit', onExit);
    };
    p.child.stdout!.on('data', onData);
    p.child.once('exit', onExit);
  });
}

/**
 * Compiles bench/proxy-child.ts and the src/ files it imports with the
 * project's tsc (bench/tsconfig.child.json) into `outDir`, so that the proxy
 * runs as plain JS under plain node, as the published package does. Returns
 * the command run and the child's entry point.
 */
export function buildProxyChild(outDir: string): { command: string; entry: string } {
  const args = ['node_modules/typescript/bin/tsc', '-p', 'bench/tsconfig.child.json', '--outDir', outDir];
  const r = spawnSync('node', args, { cwd: REPO, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`compiling the proxy child failed: ${commandLine('node', args)}\n${r.stdout}${r.stderr}`);
  writeFileSync(join(outDir, 'package.json'), '{ "type": "module" }\n');
  // Bare imports (debug, eventemitter3, ...) resolve from the repository's node_modules.
  symlinkSync(join(REPO, 'node_modules'), join(outDir, 'node_modules'), 'dir');
  return { command: commandLine('node', args), entry: join(outDir, 'bench/proxy-child.js') };
}

export interface ProxyProcess extends Started {
  readonly url: string;
  readonly port: number;
  /** The leader the balancer knew at start (this proxy only). */
  readonly leader?: string;
}

export interface NodeProxyOptions {
  /** The compiled bench/proxy-child.js (see {@link buildProxyChild}). */
  entry: string;
  port: number;
  initialCluster: string;
  dataDir: string;
  leaderWrites?: boolean;
  /** More createProxy options (JSON-serialisable), e.g. `{ pipelineReads: 8 }`. */
  proxyOptions?: Readonly<Record<string, unknown>>;
  /** Run under `node --cpu-prof --cpu-prof-dir=<dir>`. */
  cpuProfDir?: string;
  /** More node flags, before the script. */
  nodeFlags?: readonly string[];
}

/** This library's proxy (createProxy) in its own node process: bench/proxy-child.ts, compiled. */
export async function startNodeProxy(o: NodeProxyOptions): Promise<ProxyProcess> {
  const options: Record<string, unknown> = {
    listenClientUrls: [`http://127.0.0.1:${o.port}`],
    initialCluster: o.initialCluster,
    dataDir: o.dataDir,
    ...o.proxyOptions,
  };
  if (o.leaderWrites !== undefined) options.leaderWrites = o.leaderWrites;
  const nodeArgs = [
    ...(o.cpuProfDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`] : []),
    ...(o.nodeFlags ?? []),
    o.entry,
    JSON.stringify(options),
    ...(o.leaderWrites === true ? ['--wait-leader'] : []),
  ];
  const p = spawnLimited('node', nodeArgs);
  try {
    const m = await waitForLine(p, /ready (\S+) leader=(\S+)/, 30000);
    return { ...p, url: m[1]!, port: o.port, leader: m[2] === '-' ? undefined : m[2] };
  } catch (err) {
    await p.stop();
    throw err;
  }
}

export interface GoProxyOptions {
  port: number;
  initialCluster: string;
  dataDir: string;
}

/** etcd's own v2 proxy: `etcd --proxy on` with the same flags. */
export async function startGoProxy(o: GoProxyOptions): Promise<ProxyProcess> {
  const url = `http://127.0.0.1:${o.port}`;
  const p = spawnLimited('etcd', ['--proxy', 'on', '--listen-client-urls', url, '--initial-cluster', o.initialCluster, '--data-dir', o.dataDir]);
  const deadline = Date.now() + 20000;
  for (;;) {
    try {
      const res = await fetch(`${url}/v2/keys/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.ok) return { ...p, url, port: o.port };
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline || p.child.exitCode !== null) {
      await p.stop();
      throw new Error(`etcd --proxy on did not serve ${url} within 20 s:\n${p.output().slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A child that answers commands on stdin with one JSON line each on stdout (bench/watchers.ts). */
export interface LineChild extends Started {
  /** The next message of type `type` (earlier ones of other types are skipped). */
  next(type: string, timeoutMs: number): Promise<Record<string, unknown>>;
  send(command: string): void;
}

export function startLineChild(cmd: string, args: readonly string[]): LineChild {
  const p = spawnLimited(cmd, args);
  const messages: Array<Record<string, unknown>> = [];
  let wake: (() => void) | undefined;
  let buf = '';
  p.child.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        messages.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a message
      }
      wake?.();
    }
  });
  return {
    ...p,
    send: (command) => void p.child.stdin!.write(`${command}\n`),
    async next(type, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = messages.shift();
        if (m !== undefined) {
          if (m.type === type) return m;
          continue;
        }
        if (p.child.exitCode !== null || p.child.signalCode !== null) {
          throw new Error(`${p.command} exited (code ${p.child.exitCode}, signal ${p.child.signalCode}):\n${p.output().slice(-2000)}`);
        }
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no "${type}" from ${p.command} within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(left, 1000));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
    },
  };
}
