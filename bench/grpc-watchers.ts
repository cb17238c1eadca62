/**
 * etcd v3 watchers (issue 17) in their own process, so that the figures
 * bench/run.ts reads from a proxy's /proc entry are the proxy's alone, and
 * this process's own CPU is read apart. Usage:
 *   node --import tsx bench/grpc-watchers.ts '{"target":"127.0.0.1:P","writeTarget":"127.0.0.1:M","key":"bench/w","connections":100,"streams":1,"watchesPerStream":100}'
 *
 * `connections` gRPC channels (each its own HTTP/2 connection: a local
 * subchannel pool per channel), on each `streams` Watch streams, on each
 * `watchesPerStream` WatchCreateRequests for `key`: etcd's own client
 * (clientv3) puts every watch of one client on one Watch stream, which
 * `streams: 1` models. Messages are encoded and decoded by the codec
 * src/v3-backend/etcd-proto.ts makes (protobufjs through @grpc/proto-loader).
 *
 * It opens everything, counts the `created` answers, and prints
 * `{"type":"opened",...}`. Then one command per line on stdin, one JSON line
 * back:
 * - `status`: created, canceled, failed streams (by gRPC status);
 * - `fire`: one KV/Put of `key` on `writeTarget` (the member), then waits up
 *   to 10 s until every created watch has an event: delivered, last and p50
 *   ms after the Put was sent;
 * - `exit`: closes every channel and exits.
 */
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { etcdMethods } from '../src/v3-backend/etcd-proto.js';
import type { WatchResponse } from '../src/v3-backend/rpc-types.js';

interface Config {
  target: string;
  writeTarget: string;
  key: string;
  connections: number;
  streams: number;
  watchesPerStream: number;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as Config;
const n = cfg.connections * cfg.streams * cfg.watchesPerStream;
const watchMethod = etcdMethods().Watch.Watch;
const putMethod = etcdMethods().KV.Put;
const reply = (m: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(m)}\n`);

interface Stream {
  call: grpc.ClientDuplexStream<object, WatchResponse>;
  created: number;
  /** Watch IDs this stream was told about, and when each got its event. */
  eventAt: Map<number, number>;
}

let created = 0;
let canceled = 0;
let events = 0;
const failures: Record<string, number> = {};
const samples = new Set<string>();
let onCreated: (() => void) | undefined;
let onEvent: (() => void) | undefined;

const clients = Array.from(
  { length: cfg.connections },
  () => new grpc.Client(cfg.target, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }),
);
const streams: Stream[] = [];

function openStream(client: grpc.Client): Stream {
  const call = client.makeBidiStreamRequest<object, WatchResponse>(watchMethod.path, watchMethod.serialize, watchMethod.deserialize as (b: Buffer) => WatchResponse);
  const s: Stream = { call, created: 0, eventAt: new Map() };
  call.on('data', (res: WatchResponse) => {
    if (res.created) {
      s.created++;
      created++;
      s.eventAt.set(Number(res.watchId), Number.NaN);
      onCreated?.();
    }
    if (res.canceled) {
      canceled++;
      if (samples.size < 4) samples.add(`canceled: ${res.cancelReason}`);
    }
    if (res.events.length > 0) {
      const id = Number(res.watchId);
      const at = s.eventAt.get(id);
      if (at !== undefined && Number.isNaN(at)) {
        s.eventAt.set(id, performance.now());
        events++;
        onEvent?.();
      }
    }
  });
  call.on('error', (err: grpc.ServiceError) => {
    const name = grpc.status[err.code] ?? 'UNKNOWN';
    failures[name] = (failures[name] ?? 0) + 1;
    if (samples.size < 4) samples.add(`${name}: ${err.details}`);
    onCreated?.();
  });
  for (let i = 0; i < cfg.watchesPerStream; i++) call.write({ createRequest: { key: Buffer.from(cfg.key) } });
  return s;
}

function status(): Record<string, unknown> {
  const failedStreams = Object.values(failures).reduce((a, b) => a + b, 0);
  return { n, created, canceled, events, failedStreams, failures, samples: [...samples] };
}

async function open(): Promise<void> {
  const started = performance.now();
  await Promise.all(
    clients.map((c) => new Promise<void>((resolve) => c.waitForReady(Date.now() + 20000, () => resolve()))),
  );
  for (const c of clients) for (let i = 0; i < cfg.streams; i++) streams.push(openStream(c));
  // Until every watch is created, or a stream failed for each missing one, or 60 s.
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 60000);
    const check = (): void => {
      const failedStreams = Object.values(failures).reduce((a, b) => a + b, 0);
      if (created >= n || created + failedStreams * cfg.watchesPerStream >= n) {
        clearTimeout(timer);
        resolve();
      }
    };
    onCreated = check;
    check();
  });
  onCreated = undefined;
  reply({ type: 'opened', ms: Math.round(performance.now() - started), ...status() });
}

async function fire(): Promise<void> {
  const writer = new grpc.Client(cfg.writeTarget, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  await new Promise<void>((resolve) => writer.waitForReady(Date.now() + 5000, () => resolve()));
  const before = events;
  const t0 = performance.now();
  let putError: string | undefined;
  const put = new Promise<void>((resolve) => {
    writer.makeUnaryRequest(putMethod.path, putMethod.serialize, putMethod.deserialize, { key: Buffer.from(cfg.key), value: Buffer.from('fired') }, (err) => {
      if (err) putError = err.message;
      resolve();
    });
  });
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 10000);
    const check = (): void => {
      if (events - before >= created) {
        clearTimeout(timer);
        resolve();
      }
    };
    onEvent = check;
    check();
  });
  onEvent = undefined;
  await put;
  writer.close();
  const times: number[] = [];
  for (const s of streams) for (const at of s.eventAt.values()) if (!Number.isNaN(at)) times.push(at - t0);
  times.sort((a, b) => a - b);
  const round = (x: number | undefined): number | null => (x === undefined ? null : Math.round(x * 10) / 10);
  reply({ type: 'fired', putError, delivered: times.length, lastMs: round(times[times.length - 1]), p50Ms: round(times[Math.floor(times.length / 2)]), ...status() });
}

const commands: Record<string, () => Promise<void> | void> = {
  status: () => reply({ type: 'status', ...status() }),
  fire,
  exit: () => {
    for (const s of streams) s.call.cancel();
    for (const c of clients) c.close();
    process.exit(0);
  },
};

let queue: Promise<void> = open();
createInterface({ input: process.stdin }).on('line', (line) => {
  const command = commands[line.trim()];
  if (command !== undefined) queue = queue.then(() => command());
});
process.stdin.on('end', () => process.exit(0));
