/**
 * Which gRPC client for the v3 backend: this project's V3Client (raw
 * @grpc/grpc-js + @grpc/proto-loader) against the `etcd3` package (on the
 * same @grpc/grpc-js), measured the same way.
 *
 * One local v3-only etcd member, one key with a 64-byte value, linearizable
 * Range of that key by 16 concurrent callers, each client in its own child
 * process for `--seconds` (default 5) after a 1 s warm-up; 3 rounds,
 * alternating a, b. Reports req/s and the child's CPU ms per 1,000 requests
 * (process.cpuUsage() over the measured window), median of the rounds.
 *
 *   node --import tsx bench/v3-client-compare.ts [--rounds 3] [--seconds 5] [--concurrency 16]
 */
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startEtcd } from '../examples/local-etcd.js';
import { EndpointBalancer } from '../src/balancer/endpoint-balancer.js';
import { V3Client } from '../src/v3-backend/v3-client.js';

const KEY = 'bench/v3-client-compare';
const VALUE = 'x'.repeat(64);

interface Sample {
  client: string;
  requests: number;
  seconds: number;
  cpuMs: number;
}

const { values } = parseArgs({
  options: {
    child: { type: 'string' },
    endpoint: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '16' },
  },
});

/** Closed loop: `concurrency` callers, each calling `get` again as soon as it answers. */
async function drive(get: () => Promise<unknown>, concurrency: number, warmupMs: number, measureMs: number): Promise<Omit<Sample, 'client'>> {
  let measuring = false;
  let stop = false;
  let count = 0;
  const worker = async (): Promise<void> => {
    while (!stop) {
      await get();
      if (measuring) count++;
    }
  };
  const workers = Array.from({ length: concurrency }, () => worker());
  await new Promise((r) => setTimeout(r, warmupMs));
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  measuring = true;
  await new Promise((r) => setTimeout(r, measureMs));
  measuring = false;
  const cpu = process.cpuUsage(cpu0);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  stop = true;
  await Promise.all(workers);
  return { requests: count, seconds, cpuMs: (cpu.user + cpu.system) / 1000 };
}

async function child(kind: string, endpoint: string, seconds: number, concurrency: number): Promise<void> {
  let get: () => Promise<unknown>;
  let close: () => void;
  if (kind === 'v3client') {
    const balancer = new EndpointBalancer({ endpoints: [endpoint], leaderWrites: false });
    const c = new V3Client({ balancer });
    const key = Buffer.from(KEY);
    get = async () => {
      const res = await c.range({ key });
      if (res.kvs[0]?.value.length !== 64) throw new Error('bad answer');
    };
    close = () => {
      c.close();
      balancer.close();
    };
  } else {
    const { Etcd3 } = await import('etcd3');
    const c = new Etcd3({ hosts: endpoint });
    get = async () => {
      const value = await c.get(KEY).string();
      if (value?.length !== 64) throw new Error('bad answer');
    };
    close = () => c.close();
  }
  const result = await drive(get, concurrency, 1000, seconds * 1000);
  close();
  process.stdout.write(`${JSON.stringify({ client: kind, ...result })}\n`);
}

function runChild(kind: string, endpoint: string, seconds: number, concurrency: number): Promise<Sample> {
  const script = fileURLToPath(import.meta.url);
  const args = ['--import', 'tsx', script, '--child', kind, '--endpoint', endpoint, '--seconds', String(seconds), '--concurrency', String(concurrency)];
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, DEBUG: '' } });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`${kind} child exited with ${code}: ${out}`));
      resolve(JSON.parse(out.trim().split('\n').pop()!) as Sample);
    });
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

async function main(): Promise<void> {
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);
  if (values.child !== undefined) return child(values.child, values.endpoint!, seconds, concurrency);
  const rounds = Number(values.rounds);
  const member = await startEtcd({ enableV2: false });
  try {
    const balancer = new EndpointBalancer({ endpoints: [member.clientUrl], leaderWrites: false });
    const c = new V3Client({ balancer });
    await c.put({ key: Buffer.from(KEY), value: Buffer.from(VALUE) });
    c.close();
    balancer.close();
    const samples: Sample[] = [];
    for (let round = 1; round <= rounds; round++) {
      for (const kind of ['v3client', 'etcd3']) {
        const s = await runChild(kind, member.clientUrl, seconds, concurrency);
        samples.push(s);
        console.log(`round ${round} ${kind.padEnd(8)} ${(s.requests / s.seconds).toFixed(0).padStart(7)} req/s  ${((s.cpuMs / s.requests) * 1000).toFixed(1).padStart(6)} CPU ms/1k req`);
      }
    }
    console.log(`\nRange of one key, 64-byte value, concurrency ${concurrency}, ${seconds} s x ${rounds} rounds (median):`);
    console.log('| client | req/s (median) | CPU ms / 1k req (median) | req/s per round |');
    console.log('|---|---|---|---|');
    for (const kind of ['v3client', 'etcd3']) {
      const mine = samples.filter((s) => s.client === kind);
      const rps = mine.map((s) => s.requests / s.seconds);
      const cpu = mine.map((s) => (s.cpuMs / s.requests) * 1000);
      const label = kind === 'v3client' ? 'V3Client (@grpc/grpc-js + proto-loader)' : 'etcd3 1.1.2';
      console.log(`| ${label} | ${median(rps).toFixed(0)} | ${median(cpu).toFixed(1)} | ${rps.map((x) => x.toFixed(0)).join(', ')} |`);
    }
  } finally {
    await member.stop();
  }
}

await main();
