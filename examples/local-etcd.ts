/**
 * Starts throwaway etcd 3.4 members on 127.0.0.1 (v2 API enabled, free
 * ports, a temporary data dir) for the demo and the integration tests.
 * Every process it starts is stopped by its PID, and only those.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface LocalEtcdOptions {
  /** Member name. Default: `m<clientPort>`. */
  name?: string;
  /** Data dir; default: a new temporary directory, removed by `stop()`. */
  dataDir?: string;
  clientPort?: number;
  peerPort?: number;
  /** `--initial-cluster`; default: this member alone. */
  initialCluster?: string;
  /** `--initial-cluster-state`. Default: `new`. */
  initialClusterState?: 'new' | 'existing';
  /** `--initial-cluster-token`: the same for every member of one cluster. Default: `t-<name>`. */
  initialClusterToken?: string;
  /**
   * `--discovery`: bootstrap from this discovery URL instead of
   * `--initial-cluster` (then neither `--initial-cluster`,
   * `--initial-cluster-state` nor `--initial-cluster-token` is passed).
   */
  discovery?: string;
  /** Client URL advertised to the cluster; default: the one it listens on. */
  advertiseClientUrl?: string;
  /** More etcd flags. */
  extraArgs?: readonly string[];
  /**
   * `https` serves the client and peer URLs over TLS: give the TLS flags
   * (`--cert-file`...) in `extraArgs`, and `waitHealthy: false` (the health
   * wait here speaks plain HTTP). Default: `http`.
   */
  scheme?: 'http' | 'https';
  /** Wait until the member answers `/health` with `"true"`. Default: true. */
  waitHealthy?: boolean;
  /**
   * `--enable-v2`: serve the v2 API. `false` starts a member the way etcd
   * 3.5 and 3.6 run by default, v3 only (`/v2/keys` answers 404). Default: true.
   */
  enableV2?: boolean;
}

export interface LocalEtcd {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly clientPort: number;
  readonly peerPort: number;
  /** The etcd process; `pid` is what `stop()` and `signal()` act on. */
  readonly child: ChildProcess;
  /** Settles when the process has exited. */
  readonly exited: Promise<void>;
  /** Everything the member logged so far. */
  log(): string;
  /** Sends a signal to this member's process (SIGSTOP, SIGCONT, SIGKILL...). */
  signal(sig: NodeJS.Signals): void;
  /** Stops the process (SIGTERM, then SIGKILL after 5 s) and removes a temporary data dir. */
  stop(): Promise<void>;
}

/** True when `etcd` (3.x with `--enable-v2`) can be run from the PATH. */
export function etcdInstalled(): boolean {
  return spawnSync('etcd', ['--version'], { stdio: 'ignore' }).status === 0;
}

/**
 * A TCP port that was free a moment ago on 127.0.0.1, below the kernel's
 * ephemeral range. A port from that range (what `listen(0)` hands out) can
 * be taken as the local end of some outgoing connection in the moment
 * between being found free and etcd binding it; one below it can only be
 * taken by another explicit bind.
 */
export async function freePort(): Promise<number> {
  const [low] = ephemeralRange();
  const top = Math.max(low - 1, 11000);
  for (let i = 0; i < 50; i++) {
    const port = 10000 + Math.floor(Math.random() * (top - 10000));
    // 10080 is on the fetch standard's list of blocked ports: fetch() to it fails before connecting.
    if (port !== 10080 && (await canBind(port))) return port;
  }
  throw new Error(`no free TCP port on 127.0.0.1 between 10000 and ${top} after 50 tries`);
}

function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low!, high!];
  } catch {
    // not Linux: use the IANA dynamic range
  }
  return [49152, 65535];
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
});

/**
 * Starts one member. For a cluster, pick the ports first and pass
 * `initialCluster`. When this function picked the ports itself and one was
 * taken before etcd bound it, it tries again with fresh ones (up to 3 tries).
 */
export async function startEtcd(options: LocalEtcdOptions = {}): Promise<LocalEtcd> {
  const ownPorts = options.clientPort === undefined && options.peerPort === undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOne(options);
    } catch (err) {
      if (!ownPorts || attempt >= 3 || !(err instanceof PortTaken)) throw err;
    }
  }
}

class PortTaken extends Error {}

async function startOne(options: LocalEtcdOptions): Promise<LocalEtcd> {
  const clientPort = options.clientPort ?? (await freePort());
  const peerPort = options.peerPort ?? (await freePort());
  const name = options.name ?? `m${clientPort}`;
  const ownDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), `etcd-${name}-`)));
  const scheme = options.scheme ?? 'http';
  const clientUrl = `${scheme}://127.0.0.1:${clientPort}`;
  const peerUrl = `${scheme}://127.0.0.1:${peerPort}`;
  const args = [
    '--name', name,
    ...(options.enableV2 === false ? [] : ['--enable-v2']),
    '--data-dir', dataDir,
    '--listen-client-urls', clientUrl,
    '--advertise-client-urls', options.advertiseClientUrl ?? clientUrl,
    '--listen-peer-urls', peerUrl,
    '--initial-advertise-peer-urls', peerUrl,
    ...(options.discovery !== undefined
      ? ['--discovery', options.discovery]
      : [
          '--initial-cluster', options.initialCluster ?? `${name}=${peerUrl}`,
          '--initial-cluster-state', options.initialClusterState ?? 'new',
          '--initial-cluster-token', options.initialClusterToken ?? `t-${name}`,
        ]),
    ...(options.extraArgs ?? []),
  ];
  const child = spawn('etcd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let output = '';
  child.stdout?.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (output += b.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('exit', () => running.delete(child));

  let stopping: Promise<void> | undefined;
  const member: LocalEtcd = {
    name, clientUrl, peerUrl, dataDir, clientPort, peerPort, child, exited,
    log: () => output,
    signal(sig) {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, sig);
    },
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
          process.kill(child.pid, 'SIGCONT');
          process.kill(child.pid, 'SIGTERM');
          const kill = setTimeout(() => child.pid !== undefined && child.exitCode === null && process.kill(child.pid, 'SIGKILL'), 5000);
          await exited;
          clearTimeout(kill);
        }
        if (ownDir) await rm(dataDir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
  if (options.waitHealthy ?? true) {
    try {
      await waitHealthy(clientUrl, 20000, exited);
    } catch (err) {
      await member.stop();
      const Failure = /address already in use/.test(output) ? PortTaken : Error;
      throw new Failure(`etcd member ${name} did not become healthy: ${(err as Error).message}\n${output.slice(-2000)}`);
    }
  }
  return member;
}

/**
 * Starts `size` members as one new cluster and waits until all are healthy.
 * A member that exits because one of its ports was taken after it was found
 * free is retried with fresh ports (up to 3 tries); any other failure throws
 * with the member's log.
 */
export async function startCluster(size: number, options: Pick<LocalEtcdOptions, 'enableV2' | 'extraArgs'> = {}): Promise<LocalEtcd[]> {
  for (let attempt = 1; ; attempt++) {
    const ports: Array<{ name: string; clientPort: number; peerPort: number }> = [];
    for (let i = 0; i < size; i++) ports.push({ name: `node${i + 1}`, clientPort: await freePort(), peerPort: await freePort() });
    const initialCluster = ports.map((p) => `${p.name}=http://127.0.0.1:${p.peerPort}`).join(',');
    const initialClusterToken = `t-cluster-${ports[0]!.clientPort}`;
    const members = await Promise.all(ports.map((p) => startEtcd({ ...options, ...p, initialCluster, initialClusterToken, waitHealthy: false })));
    try {
      await Promise.all(members.map((m) => waitHealthy(m.clientUrl, 30000, m.exited)));
      return members;
    } catch (err) {
      await Promise.all(members.map((m) => m.stop()));
      const taken = members.find((m) => /address already in use/.test(m.log()));
      if (taken !== undefined && attempt < 3) continue;
      const culprit = taken ?? members.find((m) => m.child.exitCode !== null || m.child.signalCode !== null) ?? members[0]!;
      throw new Error(`etcd cluster of ${size} did not become healthy: ${(err as Error).message}\n${culprit.name}'s log:\n${culprit.log().slice(-2000)}`);
    }
  }
}

/** Polls `<clientUrl>/health` until it says `"health":"true"`. */
export async function waitHealthy(clientUrl: string, timeoutMs: number, exited?: Promise<void>): Promise<void> {
  let gone = false;
  void exited?.then(() => (gone = true));
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (gone) throw new Error('the etcd process exited');
    try {
      const res = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(1000) });
      last = await res.text();
      if (res.ok && last.includes('"true"')) return;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no healthy answer from ${clientUrl}/health within ${timeoutMs} ms (last: ${last})`);
}
