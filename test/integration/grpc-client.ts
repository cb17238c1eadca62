/**
 * A plain @grpc/grpc-js client of etcd's v3 API for the gRPC forwarding
 * suites, with the messages encoded by @grpc/proto-loader from the .proto
 * files the etcd3 package ships: the suites see exactly the gRPC status,
 * metadata and stream ends a client gets, with no client-side retry; and
 * etcdctl v3 and member-metric helpers, and a server in front of a GrpcForwarder.
 */
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createServer } from 'node:http2';
import type { ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { GrpcForwarder } from '../../src/index.js';
import { startEtcd } from '../../examples/local-etcd.js';
import { eventually, http, onCleanup, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';
import { makeTlsFixture } from './tls-certs.js';
import type { TlsFixture } from './tls-certs.js';

const protoDir = join(dirname(createRequire(import.meta.url).resolve('etcd3/package.json')), 'proto');
const definition = loadSync(join(protoDir, 'rpc.proto'), { keepCase: true, longs: String, enums: String, defaults: true });
const etcdserverpb = (grpc.loadPackageDefinition(definition) as unknown as { etcdserverpb: Record<string, grpc.ServiceClientConstructor> }).etcdserverpb;

/** One of etcd's services (KV, Watch, Lease, Cluster, Maintenance, Auth) as a grpc-js client. */
export type ServiceClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

/** The v3 services on one channel to `url` (http:// or https://). */
export interface EtcdGrpc {
  readonly kv: ServiceClient;
  readonly watch: ServiceClient;
  readonly lease: ServiceClient;
  readonly cluster: ServiceClient;
  readonly maintenance: ServiceClient;
  close(): void;
}

/** Clients of `url`'s v3 API; TLS with `tls` (PEM contents). Close them with `close()`. */
export function etcdGrpc(url: string, tls?: { ca: Buffer; cert?: Buffer; key?: Buffer }): EtcdGrpc {
  const u = new URL(url);
  const credentials = tls === undefined ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(tls.ca, tls.key ?? null, tls.cert ?? null);
  // etcd sends a slow watcher's backlog in one message when it catches up (over grpc-js's 4 MiB default), as etcd's clients accept.
  const make = (name: string): ServiceClient =>
    new etcdserverpb[name]!(u.host, credentials, { 'grpc.max_receive_message_length': -1 }) as unknown as ServiceClient;
  const kv = make('KV');
  const channel = { channelOverride: kv.getChannel() };
  const on = (name: string): ServiceClient => new etcdserverpb[name]!(u.host, credentials, channel) as unknown as ServiceClient;
  const clients = { kv, watch: on('Watch'), lease: on('Lease'), cluster: on('Cluster'), maintenance: on('Maintenance') };
  return { ...clients, close: () => kv.close() };
}

/** A unary call's outcome: its response, or the gRPC error it ended with. */
export type UnaryOutcome<T> = { ok: true; response: T } | { ok: false; error: grpc.ServiceError };

/** Calls `method` on `client` with a deadline of `deadlineMs` (default 5000) and optional metadata. */
export function unary<T = Record<string, unknown>>(
  client: ServiceClient,
  method: string,
  request: object,
  options: { deadlineMs?: number; metadata?: grpc.Metadata } = {},
): Promise<UnaryOutcome<T>> {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + (options.deadlineMs ?? 5000));
    const fn = client[method]!.bind(client) as (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: T) => void) => void;
    fn(request, options.metadata ?? new grpc.Metadata(), { deadline }, (err, res) => resolve(err === null ? { ok: true, response: res } : { ok: false, error: err }));
  });
}

/** `ETCDCTL_API=3 etcdctl --endpoints=<endpoint> ...args` with `input` on stdin, bounded to `timeoutMs` (default 10 s). */
export function ctl3(endpoint: string, args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('etcdctl', [`--endpoints=${endpoint}`, '--dial-timeout=3s', '--command-timeout=5s', ...args], { env: { ...process.env, ETCDCTL_API: '3' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 10000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** A value of a member's own Prometheus metrics (summed over the series whose labels include every `labels` pair). */
export async function memberMetric(clientUrl: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = (await http(`${clientUrl}/metrics`)).body;
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

export { grpc };

/**
 * A node:http2 server on 127.0.0.1 (a free port) whose streams go to `fwd`,
 * as createProxy's listeners give them: its `http://` URL. Closed, with its
 * client sessions, by cleanup().
 */
export async function serveForwarder(fwd: GrpcForwarder): Promise<string> {
  const server = createServer();
  server.on('stream', fwd.handle);
  const sessions = new Set<ServerHttp2Session>();
  server.on('session', (s) => sessions.add(s));
  onCleanup(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/**
 * A member serving TLS on both sides, client certificates required, started
 * and healthy (etcdctl v3 asks it): its certificates, and the etcdctl flags
 * that reach it.
 */
export async function tlsMember(dirPrefix: string): Promise<{ certs: TlsFixture; m: LocalEtcd; tlsArgs: string[] }> {
  const certs = await makeTlsFixture(await tempDir(dirPrefix));
  const m = await startEtcd({
    scheme: 'https',
    waitHealthy: false,
    extraArgs: [
      '--cert-file', certs.server.cert, '--key-file', certs.server.key, '--trusted-ca-file', certs.ca, '--client-cert-auth',
      '--peer-cert-file', certs.server.cert, '--peer-key-file', certs.server.key, '--peer-trusted-ca-file', certs.ca, '--peer-client-cert-auth',
    ],
  });
  onCleanup(() => m.stop());
  const tlsArgs = ['--insecure-transport=false', `--cacert=${certs.ca}`, `--cert=${certs.client.cert}`, `--key=${certs.client.key}`];
  await eventually(async () => (await ctl3(m.clientUrl, [...tlsArgs, 'endpoint', 'health'])).code === 0, 30000, 'the TLS member to be healthy');
  return { certs, m, tlsArgs };
}
