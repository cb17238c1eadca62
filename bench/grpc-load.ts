/**
 * The gRPC load of the 'grpc' section (issue 17): etcd v3 KV/Range unary
 * calls, driven by h2load (nghttp2's HTTP/2 load generator, C) with a request
 * body file, and the checks around it made with @grpc/grpc-js.
 *
 * - {@link rangeBody}: the request body of one Range call, as @grpc/grpc-js
 *   frames it (the RangeRequest encoded by the codec
 *   src/v3-backend/etcd-proto.ts makes with protobufjs).
 * - {@link probeRange}: one Range through a system with grpc-js: the value it
 *   answers, or the gRPC status it fails with (UNIMPLEMENTED: this proxy does
 *   not forward v3 clients yet).
 * - {@link runH2load}: one timed h2load run; req/s, p50/p99 from its
 *   per-request log, and the data bytes it received per request (h2load counts
 *   an HTTP 200 as a success whatever the grpc-status trailer says, so the
 *   answer size is what tells a RangeResponse from an error: an error answer
 *   has no DATA at all).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { etcdMethods } from '../src/v3-backend/etcd-proto.js';
import type { RangeResponse } from '../src/v3-backend/rpc-types.js';
import { commandLine, spawnLimited } from './processes.js';

/** The key every Range reads; it holds {@link VALUE_BYTES} bytes. */
export const RANGE_KEY = 'bench/v64';
export const VALUE_BYTES = 64;

/**
 * The request body a gRPC client sends for a linearizable (etcdctl's default)
 * RangeRequest of {@link RANGE_KEY}: one Length-Prefixed-Message, as
 * @grpc/grpc-js frames it. The bytes are taken from grpc-js itself (one call
 * to a throw-away node:http2 server on 127.0.0.1 that keeps the request's DATA
 * and answers UNIMPLEMENTED), so no gRPC framing is written here.
 */
export async function rangeBody(): Promise<Buffer> {
  const server = http2.createServer();
  const body = new Promise<Buffer>((resolve, reject) => {
    server.on('stream', (stream) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', reject);
      stream.on('end', () => {
        resolve(Buffer.concat(chunks));
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': String(grpc.status.UNIMPLEMENTED) }));
        stream.end();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = new grpc.Client(`127.0.0.1:${(server.address() as AddressInfo).port}`, grpc.credentials.createInsecure());
  try {
    const call = unary(client, 'Range', { key: Buffer.from(RANGE_KEY) }, 5000).catch(() => undefined);
    // The call ends after the body was kept, unless it failed before reaching the server (then: an error, not a hang).
    const failed = call.then(() => Promise.reject(new Error('rangeBody: the grpc-js call ended before its request reached the capture server')));
    failed.catch(() => undefined);
    const bytes = await Promise.race([body, failed]);
    await call;
    return bytes;
  } finally {
    client.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** `host:port` of an http URL (gRPC targets have no scheme). */
export function hostPort(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port}`;
}

function unary<T>(client: grpc.Client, method: 'Range' | 'Put', arg: object, timeoutMs: number): Promise<T> {
  const m = etcdMethods().KV[method];
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest<object, T>(
      m.path,
      m.serialize,
      m.deserialize as (b: Buffer) => T,
      arg,
      { deadline: Date.now() + timeoutMs },
      (err, value) => (err ? reject(err) : resolve(value!)),
    );
  });
}

/** Puts the benchmark's key (a {@link VALUE_BYTES}-byte value) through `target` (`host:port`). */
export async function putRangeKey(target: string): Promise<void> {
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  try {
    await unary(client, 'Put', { key: Buffer.from(RANGE_KEY), value: Buffer.from('a'.repeat(VALUE_BYTES)) }, 5000);
  } finally {
    client.close();
  }
}

export type Probe =
  | { ok: true; value: string; responseBytes: number }
  | { ok: false; code: number; codeName: string; details: string };

/**
 * One Range of {@link RANGE_KEY} through `target` with grpc-js. `responseBytes`:
 * the framed RangeResponse's size (what h2load should receive per request).
 */
export async function probeRange(target: string, timeoutMs = 5000): Promise<Probe> {
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  try {
    const res = await unary<RangeResponse>(client, 'Range', { key: Buffer.from(RANGE_KEY) }, timeoutMs);
    const kv = res.kvs[0];
    const value = kv === undefined ? '' : Buffer.from(kv.value).toString();
    // Re-encode to learn the answer's size; the header's numbers vary by a byte or two between systems.
    const responseBytes = 5 + rangeResponseSize(res);
    return { ok: true, value, responseBytes };
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { ok: false, code: e.code ?? -1, codeName: grpc.status[e.code] ?? 'UNKNOWN', details: e.details ?? e.message };
  } finally {
    client.close();
  }
}

/** A lower bound of the encoded RangeResponse: the key and value bytes plus the kvs field's tags. */
function rangeResponseSize(res: RangeResponse): number {
  const kv = res.kvs[0];
  return kv === undefined ? 0 : Buffer.from(kv.key).length + Buffer.from(kv.value).length + 10;
}

export interface H2loadOptions {
  /** `http://host:port` of the system. */
  url: string;
  /** The framed request (see {@link rangeBody}), written by the caller. */
  bodyFile: string;
  /** HTTP/2 connections (h2load -c). */
  connections: number;
  /** Concurrent streams per connection (h2load -m). */
  streams: number;
  durationS: number;
  /** Where h2load writes one line per request (start µs, status, duration µs). */
  logFile: string;
}

export interface H2loadResult {
  command: string;
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Requests h2load counts failed or errored, plus responses with a status other than 200. */
  errors: number;
  /** DATA bytes received per request (a RangeResponse: about 100; a gRPC error: 0). */
  dataBytesPerRequest: number;
  /** h2load's own CPU time over the run (utime + stime of its PID, read when it exits). */
  cpuMs: number;
}

/** h2load's version line. */
export function h2loadVersion(): string {
  const r = spawnSync('h2load', ['--version'], { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n')[0]?.trim() || 'unknown';
}

export function h2loadArgs(o: H2loadOptions): string[] {
  return [
    '-t1',
    `-c${o.connections}`,
    `-m${o.streams}`,
    `-D${o.durationS}`,
    '-d', o.bodyFile,
    '-H', 'content-type: application/grpc',
    '-H', 'te: trailers',
    `--log-file=${o.logFile}`,
    `${o.url}${etcdMethods().KV.Range.path}`,
  ];
}

/**
 * One h2load run (no warm-up inside it: the caller's CPU deltas of the
 * systems cover the whole run, so every request sent must be counted).
 * h2load's own CPU (`cpuOf`, utime + stime from /proc/<pid>/stat) is sampled
 * every 25 ms while it runs, and the last sample kept: it misses at most its
 * last 25 ms, the connections' close.
 */
export async function runH2load(o: H2loadOptions, cpuOf: (pid: number) => number): Promise<H2loadResult> {
  const args = h2loadArgs(o);
  writeFileSync(o.logFile, '');
  const p = spawnLimited('h2load', args);
  let cpuMs = 0;
  const sampler = setInterval(() => {
    const c = cpuOf(p.pid);
    if (Number.isFinite(c)) cpuMs = c;
  }, 25);
  const timer = setTimeout(() => void p.stop(1000), (o.durationS + 15) * 1000);
  const code = await new Promise<number | null>((resolve) => p.child.once('exit', (c) => resolve(c)));
  clearInterval(sampler);
  clearTimeout(timer);
  await p.exited;
  const out = p.output();
  // "requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, 0 failed, 0 errored, 0 timeout"
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const status = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const traffic = /traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers .*?, .*?\((\d+)\) data/.exec(out);
  const finished = /finished in ([\d.]+)(s|ms|us),/.exec(out);
  if (code !== 0 || req === null || traffic === null || finished === null) {
    throw new Error(`h2load failed (exit ${code}): ${commandLine('h2load', args)}\n${out.slice(-2000)}`);
  }
  const durations = readFileSync(o.logFile, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => Number(l.split('\t')[2]))
    .filter((x) => Number.isFinite(x))
    .sort((a, b) => a - b);
  const q = (p: number): number => (durations.length === 0 ? Number.NaN : durations[Math.min(durations.length - 1, Math.floor(p * durations.length))]! / 1000);
  const done = Number(req[4]);
  const seconds = Number(finished[1]) / (finished[2] === 's' ? 1 : finished[2] === 'ms' ? 1e3 : 1e6);
  const non2xx = status === null ? 0 : Number(status[2]) + Number(status[3]) + Number(status[4]);
  return {
    command: commandLine('h2load', args),
    requests: done,
    seconds,
    rps: done / seconds,
    p50Ms: q(0.5),
    p99Ms: q(0.99),
    errors: Number(req[5]) + Number(req[6]) + Number(req[7]) + non2xx,
    dataBytesPerRequest: done === 0 ? 0 : Number(traffic[3]) / done,
    cpuMs,
  };
}
