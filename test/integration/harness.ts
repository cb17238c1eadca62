/**
 * The one shared harness of the real-etcd suites: members started on
 * 127.0.0.1 with free ports and temporary data dirs, the proxy under test,
 * raw HTTP and etcdctl v2 helpers. Everything started here is stopped by
 * `cleanup()` (register it with `after`).
 *
 * When `etcd` is not installed the suites are skipped with a reason, except
 * under CI=true, where a missing etcd fails the run. The same goes for
 * dnsmasq (`skipWithoutDnsmasq`, `dnsmasq()`), which the DNS SRV suite runs
 * on a free loopback port with its own records.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { etcdInstalled, freePort, startCluster, startEtcd } from '../../examples/local-etcd.js';
import type { LocalEtcd, LocalEtcdOptions } from '../../examples/local-etcd.js';
import { createProxy } from '../../src/index.js';
import type { CreateProxyOptions, EndpointBalancer, EtcdV2Proxy, V2ProxyHandler } from '../../src/index.js';

export { freePort };
export type { LocalEtcd } from '../../examples/local-etcd.js';

const installed = etcdInstalled();
if (!installed && process.env.CI === 'true') {
  throw new Error('etcd is not installed and CI=true: the real-etcd suites must run (apt-get install etcd-server etcd-client)');
}

/** `skip` option for `describe`: false when etcd is there, a reason otherwise. */
export const skipWithoutEtcd: false | string = installed ? false : 'etcd is not installed (apt-get install etcd-server etcd-client)';

const cleanups: Array<() => Promise<unknown> | unknown> = [];

/** Stops everything this harness started, newest first. */
export async function cleanup(): Promise<void> {
  while (cleanups.length > 0) {
    const fn = cleanups.pop()!;
    await fn();
  }
}

/** A temporary directory removed by `cleanup()`. */
export async function tempDir(prefix = 'etcd-v2-proxy-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** One real etcd member (v2 enabled), stopped by `cleanup()`. */
export async function member(options?: LocalEtcdOptions): Promise<LocalEtcd> {
  const m = await startEtcd(options);
  cleanups.push(() => m.stop());
  return m;
}

/** A real n-member cluster, stopped by `cleanup()`; `enableV2: false` starts v3-only members (etcd 3.5/3.6's default). */
export async function cluster(size: number, options?: Pick<LocalEtcdOptions, 'enableV2' | 'extraArgs'>): Promise<LocalEtcd[]> {
  const ms = await startCluster(size, options);
  for (const m of ms) cleanups.push(() => m.stop());
  return ms;
}

/**
 * `pipelineReads` for the proxies these suites start when a test sets none:
 * `npm test` runs the suites a second time with TEST_PIPELINE_READS=8, so
 * that the opt-in fast path passes the same conformance and fault tests as
 * the default.
 */
export const pipelineReadsUnderTest: { pipelineReads?: number } = (() => {
  const text = process.env.TEST_PIPELINE_READS;
  if (text === undefined || text === '') return {};
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`TEST_PIPELINE_READS must be an integer 1-64; got ${JSON.stringify(text)}`);
  return { pipelineReads: n };
})();

/** The proxy under test on 127.0.0.1 with a free port, closed by `cleanup()`. */
export async function proxy(options: CreateProxyOptions): Promise<EtcdV2Proxy & { url: string }> {
  const p = await createProxy({ listenClientUrls: ['http://127.0.0.1:0'], ...pipelineReadsUnderTest, ...options });
  cleanups.push(() => p.close());
  return Object.assign(p, { url: p.addresses[0]!.url });
}

/** Registers any other clean-up step. */
export function onCleanup(fn: () => Promise<unknown> | unknown): void {
  cleanups.push(fn);
}

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
  json(): unknown;
}

/** One HTTP request with node:http (no pooling, no retries), bounded by `timeout` ms. */
export function http(
  url: string,
  options: { method?: string; body?: string; headers?: Record<string, string>; timeout?: number } = {},
): Promise<RawResponse> {
  const { method = 'GET', body, timeout = 10000 } = options;
  const headers = { ...(body !== undefined ? { 'Content-Type': 'application/x-www-form-urlencoded' } : {}), ...options.headers };
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers, agent: false, timeout }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('error', reject);
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body: text, json: () => JSON.parse(text) }),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer within ${timeout} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Form-encodes etcd v2 parameters. */
export function form(params: Record<string, string | number | boolean>): string {
  return new URLSearchParams(Object.entries(params).map(([k, v]): [string, string] => [k, String(v)])).toString();
}

/** etcd's own count of v2 watchers on a member (`GET /v2/stats/store`). */
export async function watcherCount(clientUrl: string): Promise<number> {
  const res = await http(`${clientUrl}/v2/stats/store`);
  return (res.json() as { watchers: number }).watchers;
}

/**
 * etcd's own count of v2 keys API requests a member received
 * (`etcd_http_received_total`; its /metrics reads do not count), of one
 * method or all; the read is bounded by `timeoutMs`.
 */
export async function requestsReceived(clientUrl: string, method?: string, timeoutMs = 10000): Promise<number> {
  const text = (await http(`${clientUrl}/metrics`, { timeout: timeoutMs })).body;
  let total = 0;
  for (const match of text.matchAll(/^etcd_http_received_total\{([^}]*)\} (\d+(?:\.\d+)?(?:e\+\d+)?)$/gm)) {
    if (method === undefined || match[1]!.includes(`method="${method}"`)) total += Number(match[2]);
  }
  return total;
}

/** Runs `ETCDCTL_API=2 etcdctl --endpoints <endpoint> ...args`, bounded to 15 s. */
export function etcdctl(endpoint: string, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'etcdctl',
      ['--endpoints', endpoint, ...args],
      { env: { ...process.env, ETCDCTL_API: '2' }, timeout: 15000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** `ETCDCTL_API=3 etcdctl --endpoints=<endpoint> ...args` with short gRPC timeouts (10 s bound in all): exit code, stderr, duration. */
export function etcdctlV3(endpoint: string, args: readonly string[]): Promise<{ code: number; stderr: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(
      'etcdctl',
      [`--endpoints=${endpoint}`, '--dial-timeout=3s', '--command-timeout=4s', ...args],
      { env: { ...process.env, ETCDCTL_API: '3' }, timeout: 10000 },
      (err, _stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stderr, ms: Date.now() - started }),
    );
  });
}

/**
 * Serves an embedded `handler.handle` on a plain node:http server at
 * 127.0.0.1:0; `cleanup()` closes the server, the handler and the balancer.
 */
export async function serveHandler(handler: V2ProxyHandler, balancer: EndpointBalancer): Promise<string> {
  const server = createServer(handler.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        handler.close();
        balancer.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** One answer read by {@link RawConnection}. */
export interface Answer {
  status: number;
  /** The status line and the header lines, as received. */
  lines: string[];
  /** Lower-cased names. */
  headers: Map<string, string>;
  body: string;
  /** How the body was framed. */
  framing: 'length' | 'chunked' | 'none';
}

/** A raw client connection that reads the answers in order (HEAD answers are read without a body). */
export class RawConnection {
  private buffered = Buffer.alloc(0);
  private waiting: (() => void) | undefined;
  closed = false;
  readonly socket: Socket;

  /** Reads from `socket` (connected: a TLS socket once its handshake is done). */
  constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.waiting?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiting?.();
    });
    socket.on('error', () => undefined);
  }

  /** A plain connection to `url`'s port on 127.0.0.1. */
  static open(url: string, allowHalfOpen = false): Promise<RawConnection> {
    const { port } = new URL(url);
    return new Promise((resolve, reject) => {
      const socket = connect({ port: Number(port), host: '127.0.0.1', allowHalfOpen }, () => resolve(new RawConnection(socket)));
      socket.once('error', reject);
    });
  }

  write(text: string | Buffer): void {
    this.socket.write(text);
  }

  /** Resolves once `ready()` holds (checked on every read), or rejects after `ms`. */
  private async until(ready: () => boolean, ms: number, what: string): Promise<void> {
    const deadline = Date.now() + ms;
    while (!ready()) {
      if (this.closed) throw new Error(`connection closed while waiting for ${what}; unread: ${this.buffered.toString('latin1').slice(0, 200)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${ms} ms; unread: ${this.buffered.toString('latin1').slice(0, 200)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiting = undefined;
    }
  }

  /** Reads the next answer. */
  async read(options: { head?: boolean; ms?: number } = {}): Promise<Answer> {
    const ms = options.ms ?? 5000;
    await this.until(() => this.buffered.includes('\r\n\r\n'), ms, 'response head');
    const end = this.buffered.indexOf('\r\n\r\n');
    const lines = this.buffered.toString('latin1', 0, end).split('\r\n');
    this.buffered = this.buffered.subarray(end + 4);
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(lines[0]!)?.[1]);
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
    }
    if (options.head === true || status === 204 || status === 304) return { status, lines, headers, body: '', framing: 'none' };
    const length = headers.get('content-length');
    if (length !== undefined) {
      const n = Number(length);
      await this.until(() => this.buffered.length >= n, ms, `${n}-byte body`);
      const body = this.buffered.toString('utf8', 0, n);
      this.buffered = this.buffered.subarray(n);
      return { status, lines, headers, body, framing: 'length' };
    }
    if (headers.get('transfer-encoding') === undefined && headers.get('connection') === 'close') {
      await this.closedWithin(ms);
      const body = this.buffered.toString('utf8');
      this.buffered = Buffer.alloc(0);
      return { status, lines, headers, body, framing: 'none' };
    }
    assert.equal(headers.get('transfer-encoding'), 'chunked', `status ${status}: neither Content-Length nor chunked`);
    let body = '';
    for (;;) {
      await this.until(() => this.buffered.includes('\r\n'), ms, 'chunk size');
      const lineEnd = this.buffered.indexOf('\r\n');
      const size = parseInt(this.buffered.toString('latin1', 0, lineEnd), 16);
      await this.until(() => this.buffered.length >= lineEnd + 2 + size + 2, ms, `${size}-byte chunk`);
      body += this.buffered.toString('utf8', lineEnd + 2, lineEnd + 2 + size);
      assert.equal(this.buffered.toString('latin1', lineEnd + 2 + size, lineEnd + 4 + size), '\r\n', 'CRLF after chunk data');
      this.buffered = this.buffered.subarray(lineEnd + 4 + size);
      if (size === 0) return { status, lines, headers, body, framing: 'chunked' };
    }
  }

  /** Resolves when the proxy closed the connection, or rejects after `ms`. */
  async closedWithin(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error(`connection still open after ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 20);
        this.waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiting = undefined;
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * Connects to `url`, writes `bytes` (when not empty) and, `afterMs` later,
 * resets the connection (a TCP RST, as a client that gives up abruptly).
 * Resolves once reset, or at once if the connection failed.
 */
export function connectAndReset(url: string, bytes: string, afterMs: number): Promise<void> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const s = connect(Number(port), hostname, () => {
      if (bytes !== '') s.write(bytes);
      setTimeout(() => {
        s.resetAndDestroy();
        resolve();
      }, afterMs);
    });
    s.on('error', () => resolve());
  });
}

/**
 * SIGSTOPs a member and waits (up to 2 s) until every thread of it is
 * stopped (state T in /proc/<pid>/task/<tid>/stat): on a loaded machine a
 * thread that is not running when the signal comes stops only once it is
 * scheduled again, and a request sent before then may still be served.
 */
export async function freeze(m: LocalEtcd): Promise<void> {
  m.signal('SIGSTOP');
  const pid = m.child.pid!;
  await eventually(
    async () => {
      const tasks = await readdir(`/proc/${pid}/task`);
      const states = await Promise.all(tasks.map(async (t) => (await readFile(`/proc/${pid}/task/${t}/stat`, 'utf8')).split(') ')[1]![0]));
      return states.every((s) => s === 'T' || s === 't');
    },
    2000,
    `every thread of ${m.name} (pid ${pid}) to stop`,
  );
}

/** Polls `check` every 50 ms until it returns true, failing after `timeoutMs`. */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/**
 * Waits until every member answers a plain GET of `key` with 200. A plain v2
 * GET is served from the member's own store, and a follower applies a write
 * only once it hears it was committed: a test that writes (to the leader, as
 * the proxy sends writes) and then reads from any member, or freezes the
 * leader, waits here first.
 */
export async function applied(members: readonly LocalEtcd[], key: string): Promise<void> {
  await eventually(
    async () => (await Promise.all(members.map((m) => http(`${m.clientUrl}/v2/keys/${key}`)))).every((r) => r.status === 200),
    3000,
    `every member to have applied the write of ${key}`,
  );
}

// --- dnsmasq: a real DNS server on a loopback port, for the DNS SRV suites ---

/** The dnsmasq binary (Debian's dnsmasq-base puts it in /usr/sbin, often not on a user's PATH). */
const dnsmasqBin = ['dnsmasq', '/usr/sbin/dnsmasq'].find((bin) => spawnSync(bin, ['--version'], { stdio: 'ignore' }).status === 0);

/**
 * `skip` option for the DNS SRV suites: a reason when etcd or dnsmasq is
 * missing. Under CI=true a missing dnsmasq is never skipped: `dnsmasq()`
 * then throws, so the suite fails.
 */
export const skipWithoutDnsmasq: false | string =
  skipWithoutEtcd !== false
    ? skipWithoutEtcd
    : dnsmasqBin !== undefined || process.env.CI === 'true'
      ? false
      : 'dnsmasq is not installed (apt-get install dnsmasq-base)';

/** What the test's dnsmasq serves. */
export interface DnsRecords {
  /** SRV records: `name` like `_etcd-server._tcp.example.test`. */
  srv?: ReadonlyArray<{ name: string; target: string; port: number; priority?: number; weight?: number }>;
  /** A records (`--host-record`). */
  hosts?: ReadonlyArray<{ name: string; address: string }>;
  /** Domains answered locally (NXDOMAIN for unknown names) instead of "refused". */
  localDomains?: readonly string[];
}

export interface Dnsmasq {
  /** `127.0.0.1:<port>`, for `dnsServers`. */
  readonly server: string;
  readonly port: number;
  readonly pid: number;
  log(): string;
  /** SIGTERM to this dnsmasq's PID (SIGKILL after 5 s). Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts dnsmasq in the foreground on a free 127.0.0.1 port with only the
 * given records (no config file, no /etc/hosts, no upstream servers, no pid
 * file), waits until it answers, and registers its stop with `cleanup()`.
 */
export async function dnsmasq(records: DnsRecords): Promise<Dnsmasq> {
  if (dnsmasqBin === undefined) {
    throw new Error('dnsmasq is not installed and CI=true: the DNS SRV suites must run (apt-get install dnsmasq-base)');
  }
  const args = [
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    '--pid-file=',
    '--listen-address=127.0.0.1',
    '--bind-interfaces',
    '--no-resolv',
    '--no-hosts',
    '--no-poll',
    '--log-facility=-',
    ...(records.localDomains ?? []).map((d) => `--local=/${d}/`),
    ...(records.hosts ?? []).map((h) => `--host-record=${h.name},${h.address}`),
    ...(records.srv ?? []).map((r) => `--srv-host=${r.name},${r.target},${r.port},${r.priority ?? 0},${r.weight ?? 0}`),
  ];
  let lastError = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePortForDns();
    const { pid, log, exited, stop } = spawnProcess(dnsmasqBin, [...args, `--port=${port}`]);
    let gone = false;
    void exited.then(() => (gone = true));
    const server = `127.0.0.1:${port}`;
    const probe = new Resolver({ timeout: 200, tries: 1 });
    probe.setServers([server]);
    const deadline = Date.now() + 5000;
    let ready = false;
    while (!gone && Date.now() < deadline) {
      try {
        await probe.resolve4('probe.invalid');
        ready = true;
      } catch (err) {
        // Any DNS answer (NXDOMAIN, REFUSED) means it is listening.
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ECONNREFUSED' && code !== 'ETIMEOUT') ready = true;
      }
      if (ready) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (ready && !gone) {
      cleanups.push(stop);
      return { server, port, pid, log, stop };
    }
    await stop();
    lastError = log();
  }
  throw new Error(`dnsmasq did not start:\n${lastError}`);
}

/** A port free for both TCP and UDP on 127.0.0.1 a moment ago. */
async function freePortForDns(): Promise<number> {
  const { createSocket } = await import('node:dgram');
  for (;;) {
    const port = await freePort();
    const udpFree = await new Promise<boolean>((done) => {
      const sock = createSocket('udp4');
      sock.once('error', () => done(false));
      sock.bind(port, '127.0.0.1', () => sock.close(() => done(true)));
    });
    if (udpFree) return port;
  }
}

/**
 * Starts a helper process (etcd's Go proxy, dnsmasq...) with its output
 * captured, `env` added to the environment. `stop()` sends SIGTERM to its
 * PID, SIGKILL after 5 s, and waits for it to exit; it is idempotent. The
 * caller registers it for clean-up.
 */
export function spawnProcess(
  command: string,
  args: readonly string[],
  env?: Readonly<Record<string, string>>,
): { pid: number; log(): string; exited: Promise<void>; stop(): Promise<void> } {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(env === undefined ? {} : { env: { ...process.env, ...env } }) });
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  // Exited once its output is all read ('close'): 'exit' can come before the last of stdout and
  // stderr. If something it started keeps the pipes open, 2 s after 'exit' will do.
  const exited = new Promise<void>((done) => {
    child.once('close', () => done());
    child.once('exit', () => setTimeout(done, 2000).unref());
  });
  const running = (): boolean => child.exitCode === null && child.signalCode === null && child.pid !== undefined;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (!running()) return;
      process.kill(child.pid!, 'SIGTERM');
      const kill = setTimeout(() => running() && process.kill(child.pid!, 'SIGKILL'), 5000);
      await exited;
      clearTimeout(kill);
    })());
  return { pid: child.pid ?? -1, log: () => output, exited, stop };
}

/**
 * Starts examples/cli.ts as its own process (`node --import tsx`, `env` added
 * to the environment) and waits, 20 s at most, for its "listening for client
 * requests" line; `cleanup()` stops it (SIGTERM to its PID). Throws with its
 * output when it exits or stays silent instead.
 */
export async function startCli(args: readonly string[], env?: Readonly<Record<string, string>>): Promise<ReturnType<typeof spawnProcess>> {
  const cli = spawnProcess(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../../examples/cli.ts', import.meta.url)), ...args], env);
  cleanups.push(cli.stop);
  let gone = false;
  void cli.exited.then(() => (gone = true));
  const deadline = Date.now() + 20000;
  while (!cli.log().includes('listening for client requests')) {
    if (gone || Date.now() > deadline) throw new Error(`examples/cli.ts ${gone ? 'exited' : 'was not listening after 20 s'}:\n${cli.log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return cli;
}
