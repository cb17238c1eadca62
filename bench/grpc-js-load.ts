/**
 * The other load generator the 'grpc' section can use (and measures once per
 * run, to say why it uses h2load): a closed loop of etcd v3 KV/Range unary
 * calls made with @grpc/grpc-js, in its own process so that its CPU is read
 * from /proc/<pid> by bench/run.ts. Usage:
 *   node --import tsx bench/grpc-js-load.ts '{"target":"127.0.0.1:P","channels":4,"concurrency":16,"durationS":3}'
 *
 * `channels` gRPC channels (each its own HTTP/2 connection: a local
 * subchannel pool per channel), `concurrency` calls outstanding in all, spread
 * evenly over the channels; each call, once answered, is followed by the next
 * on the same channel. It prints `{"type":"ready"}` once every channel is
 * connected, waits for `go` (or `go <seconds>`, e.g. a warm-up) on stdin,
 * runs for `durationS` (or those seconds), prints
 * `{"type":"done",...}` (requests, seconds, p50/p99 ms, errors by status)
 * and waits for `exit`, so that the parent can read its CPU time first.
 */
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { etcdMethods } from '../src/v3-backend/etcd-proto.js';
import { RANGE_KEY } from './grpc-load.js';

interface Config {
  target: string;
  channels: number;
  concurrency: number;
  durationS: number;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as Config;
const range = etcdMethods().KV.Range;
const request = { key: Buffer.from(RANGE_KEY) };
const reply = (m: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(m)}\n`);

const clients = Array.from(
  { length: cfg.channels },
  () => new grpc.Client(cfg.target, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }),
);
await Promise.all(
  clients.map((c) => new Promise<void>((resolve, reject) => c.waitForReady(Date.now() + 10000, (err) => (err ? reject(err) : resolve())))),
);
reply({ type: 'ready' });

async function run(durationS: number): Promise<void> {
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  let stopAt = 0;
  let inFlight = 0;
  const started = performance.now();
  stopAt = started + durationS * 1000;
  await new Promise<void>((allDone) => {
    const one = (client: grpc.Client): void => {
      inFlight++;
      const t0 = performance.now();
      client.makeUnaryRequest(range.path, range.serialize, range.deserialize, request, (err) => {
        inFlight--;
        const t1 = performance.now();
        if (err) {
          const name = grpc.status[(err as grpc.ServiceError).code] ?? 'UNKNOWN';
          errors[name] = (errors[name] ?? 0) + 1;
        } else latencies.push(t1 - t0);
        if (t1 < stopAt) one(client);
        else if (inFlight === 0) allDone();
      });
    };
    for (let i = 0; i < cfg.concurrency; i++) one(clients[i % clients.length]!);
  });
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const q = (p: number): number | null => (latencies.length === 0 ? null : latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!);
  const failed = Object.values(errors).reduce((a, b) => a + b, 0);
  reply({ type: 'done', requests: latencies.length, failed, errors, seconds, p50Ms: q(0.5), p99Ms: q(0.99) });
}

let queue: Promise<void> = Promise.resolve();
createInterface({ input: process.stdin }).on('line', (line) => {
  const command = line.trim();
  const go = /^go(?: ([\d.]+))?$/.exec(command);
  if (go !== null) queue = queue.then(() => run(go[1] === undefined ? cfg.durationS : Number(go[1])));
  if (command === 'exit') {
    void queue.then(() => {
      for (const c of clients) c.close();
      process.exit(0);
    });
  }
});
process.stdin.on('end', () => process.exit(0));
