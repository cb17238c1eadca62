/**
 * Hedged reads against a real 3-member cluster (issue 19): a member that
 * stops answering (SIGSTOP: a GC pause, a stalled disk, a frozen VM) costs
 * no read, hedging costs little when nothing is wrong, and writes are never
 * hedged nor re-sent. Reads run at 16 concurrent clients with a 1 s client
 * timeout, plain and quorum, through the proxy's own listener.
 */
import assert from 'node:assert/strict';
import { Agent, request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { Endpoint, HedgedEvent, RetriedEvent } from '../../src/index.js';
import { applied, cleanup, cluster, eventually, form, freeze, http, onCleanup, proxy, requestsReceived, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';

const CLIENTS = 16;
const CLIENT_TIMEOUT_MS = 1000;
/** How long a member stays frozen: the fault of the scenario, not a wait for something. */
const FREEZE_MS = 10_000;
/** Three plain reads to one quorum read. */
const PATHS = ['/v2/keys/hedge/a', '/v2/keys/hedge/b', '/v2/keys/hedge?recursive=true', '/v2/keys/hedge/a?quorum=true'];

interface Read {
  /** `performance.now()` when it was sent. */
  readonly start: number;
  readonly ms: number;
  /** A 200 with its whole body within the client timeout. */
  readonly ok: boolean;
  readonly detail: string;
}

/** Reads through `url` from `CLIENTS` clients (keep-alive), each sending its next read when the last one ended, until `stop()`. */
function readLoad(url: string): { reads: Read[]; stop(): Promise<void> } {
  const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });
  const reads: Read[] = [];
  let running = true;
  const one = (path: string): Promise<Read> =>
    new Promise((resolve) => {
      const start = performance.now();
      let settled = false;
      const done = (ok: boolean, detail: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({ start, ms: performance.now() - start, ok, detail });
      };
      const req = httpRequest(`${url}${path}`, { agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => done(res.statusCode === 200 && body.includes('"action":"get"'), `${path}: ${res.statusCode} ${body.slice(0, 120)}`));
        res.on('error', (err) => done(false, `${path}: ${err.message}`));
        res.on('close', () => done(false, `${path}: response cut short`));
      });
      const timer = setTimeout(() => {
        done(false, `${path}: no whole answer within ${CLIENT_TIMEOUT_MS} ms`);
        req.destroy();
      }, CLIENT_TIMEOUT_MS);
      req.on('error', (err) => done(false, `${path}: ${err.message}`));
      req.end();
    });
  const clients = Array.from({ length: CLIENTS }, async (_, c) => {
    for (let i = c; running; i++) reads.push(await one(PATHS[i % PATHS.length]!));
  });
  return {
    reads,
    async stop() {
      running = false;
      await Promise.all(clients);
      agent.destroy();
    },
  };
}

/** The p-th percentile (0-100) of `values`. */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

/** Hedges that went to a second member (the extra upstream requests they cost). */
function sent(events: readonly HedgedEvent[]): HedgedEvent[] {
  return events.filter((e) => e.to !== undefined);
}

function outcomes(events: readonly HedgedEvent[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of events) out[e.outcome] = (out[e.outcome] ?? 0) + 1;
  return out;
}

describe('hedged reads against a real 3-member cluster', { skip: skipWithoutEtcd }, () => {
  let members: LocalEtcd[];
  let initialCluster: string;

  before(async () => {
    members = await cluster(3);
    initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
    for (const key of ['a', 'b']) assert.equal((await http(`${members[0]!.clientUrl}/v2/keys/hedge/${key}?value=${key}`, { method: 'PUT' })).status, 201);
    await applied(members, 'hedge/a');
    await applied(members, 'hedge/b');
  });
  after(cleanup);

  /** A proxy on the cluster, its hedged and retried events, and once known, the leader's member. */
  async function hedgingProxy(options: { responseTimeout?: number } = {}) {
    const p = await proxy({ initialCluster, dataDir: await tempDir(), hedgeDelay: 'auto', ...options });
    const hedged: HedgedEvent[] = [];
    const retried: RetriedEvent[] = [];
    p.handler.on('hedged', (e) => hedged.push(e));
    p.handler.on('retried', (e) => retried.push(e));
    await eventually(() => p.balancer.leader !== undefined, 10000, 'the proxy to learn the leader');
    const leader = members.find((m) => m.clientUrl === p.balancer.leader!.url)!;
    const endpoint = (m: LocalEtcd): Endpoint => p.balancer.endpoints.find((e) => e.url === m.clientUrl)!;
    return { p, hedged, retried, leader, endpoint };
  }

  test('no fault: every read answered, under 2 % extra upstream requests', async (t) => {
    const { p, hedged, retried } = await hedgingProxy();
    const load = readLoad(p.url);
    // Run until the cluster answered enough reads for a stable ratio (and for the delay to have learnt from them).
    await eventually(() => load.reads.length >= 8000, 60000, '8,000 reads');
    await load.stop();
    const failed = load.reads.filter((r) => !r.ok);
    const extra = sent(hedged).length + retried.length;
    const ratio = extra / load.reads.length;
    t.diagnostic(
      `${load.reads.length} reads, p50 ${percentile(load.reads.map((r) => r.ms), 50).toFixed(1)} ms, p99 ${percentile(load.reads.map((r) => r.ms), 99).toFixed(1)} ms; ` +
        `hedge delay ${p.handler.hedgeDelay} ms; hedges ${JSON.stringify(outcomes(hedged))}, retries ${retried.length}: ${(ratio * 100).toFixed(2)} % extra`,
    );
    assert.deepEqual(failed.slice(0, 5).map((r) => r.detail), []);
    assert.ok(ratio < 0.02, `${extra} extra upstream requests for ${load.reads.length} reads (${(ratio * 100).toFixed(2)} %)`);
  });

  test('a follower frozen for 10 s, twice (each follower once): 0 failed reads, p99 under 1 s during the freeze', async (t) => {
    const { p, hedged, leader, endpoint } = await hedgingProxy();
    const suspected: string[] = [];
    p.balancer.on('endpointSuspected', (e) => suspected.push(e.url));
    for (const follower of members.filter((m) => m !== leader)) {
      const load = readLoad(p.url);
      const hedgedBefore = hedged.length;
      onCleanup(() => follower.signal('SIGCONT'));
      let frozenAt: number;
      let thawedAt: number;
      try {
        // The delay learns from answers first.
        await eventually(() => load.reads.length >= 500, 30000, '500 reads before the freeze');
        frozenAt = performance.now();
        await freeze(follower);
        await new Promise((r) => setTimeout(r, FREEZE_MS));
      } finally {
        follower.signal('SIGCONT');
        thawedAt = performance.now();
      }
      // Reads go back to it once it answers again (its probe or a read).
      await eventually(() => !endpoint(follower).suspected, 10000, `${follower.name} to answer again`);
      await load.stop();
      const during = load.reads.filter((r) => r.start >= frozenAt && r.start <= thawedAt);
      const failed = load.reads.filter((r) => !r.ok);
      const p99 = percentile(during.map((r) => r.ms), 99);
      const mine = hedged.slice(hedgedBefore);
      t.diagnostic(
        `${follower.name} frozen ${((thawedAt - frozenAt) / 1000).toFixed(1)} s: ${during.length} reads during the freeze, ` +
          `p50 ${percentile(during.map((r) => r.ms), 50).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${percentile(during.map((r) => r.ms), 100).toFixed(1)} ms; ` +
          `${load.reads.length} reads in all, ${failed.length} failed; hedges ${JSON.stringify(outcomes(mine))}`,
      );
      assert.deepEqual(failed.slice(0, 5).map((r) => r.detail), [], `${failed.length} failed reads`);
      assert.ok(during.length > 1000, `only ${during.length} reads during the freeze`);
      assert.ok(p99 < 1000, `p99 ${p99} ms during the freeze`);
      // Not vacuous: reads did wait on the frozen member, and hedging got them round it.
      assert.ok(mine.some((e) => e.outcome === 'won' && e.from === follower.clientUrl), `hedges: ${JSON.stringify(outcomes(mine))}`);
      assert.ok(suspected.includes(follower.clientUrl), `${follower.name} was never suspected`);
    }
    assert.ok(hedged.every((e) => e.method === 'GET'), 'only reads are hedged');
    // The metrics count what the events said (once every member answered again).
    await eventually(() => p.balancer.endpoints.every((e) => !e.suspected), 5000, 'every member to answer again');
    const text = (await http(`${p.url}/metrics`)).body;
    for (const outcome of ['won', 'lost'] as const) {
      const line = new RegExp(`^etcd_v2_proxy_hedged_reads_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text);
      assert.equal(Number(line?.[1] ?? 0), hedged.filter((e) => e.outcome === outcome).length, `${outcome} in:\n${text}`);
    }
    assert.match(text, new RegExp(`^etcd_v2_proxy_hedge_delay_seconds ${p.handler.hedgeDelay / 1000}$`, 'm'));
    assert.match(text, /^etcd_v2_proxy_suspected_endpoints 0$/m);
  });

  test('a frozen leader: writes are never hedged nor re-sent (504 or another member, as without hedging)', async (t) => {
    const { p, hedged, retried, leader } = await hedgingProxy({ responseTimeout: 2000 });
    const postsBefore = await Promise.all(members.map((m) => requestsReceived(m.clientUrl, 'POST')));
    onCleanup(() => leader.signal('SIGCONT'));
    const statuses: number[] = [];
    const POSTS = 4;
    try {
      await freeze(leader);
      for (let i = 0; i < POSTS; i++) {
        const res = await http(`${p.url}/v2/keys/hedge-queue`, { method: 'POST', body: form({ value: `w${i}` }), timeout: 8000 });
        statuses.push(res.status);
        if (res.status === 504) assert.match((res.json() as { message: string }).message, /may have reached etcd.*not re-sent to another endpoint/);
      }
    } finally {
      leader.signal('SIGCONT');
    }
    t.diagnostic(`POST statuses with the leader frozen: ${statuses.join(', ')}`);
    assert.equal(statuses[0], 504, 'the first POST went to the frozen leader and timed out');
    assert.deepEqual(hedged.filter((e) => e.method !== 'GET' && e.method !== 'HEAD'), [], 'no write is hedged');
    assert.deepEqual(retried.filter((e) => e.method === 'POST' && e.error.phase !== 'connect'), [], 'no POST that may have reached etcd is re-sent');
    // Each POST reached exactly one member: the frozen leader reads its own once it runs again.
    const received = async (): Promise<number> =>
      (await Promise.all(members.map((m) => requestsReceived(m.clientUrl, 'POST')))).reduce((sum, n, i) => sum + n - postsBefore[i]!, 0);
    await eventually(async () => (await received()) >= POSTS, 15000, `the members to have read the ${POSTS} POSTs`);
    assert.equal(await received(), POSTS);
  });
});
