/**
 * Faults under a proxy with `backend: 'v3'` on a v3-only 3-member cluster:
 * the member that carries the proxy's v3 watch stream is SIGKILLed while v2
 * watches are open and writes go on (every watcher still gets every event
 * once, in order); the leader is SIGKILLed during a stream of
 * compare-and-swap writes (no write applied twice, none acknowledged and
 * lost, no write reported failed that was applied).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanup, cluster, eventually, form, http, proxy, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd, RawResponse } from './harness.js';
import { OpenWatch } from './v2-scenarios.js';

interface Node {
  key: string;
  value?: string;
  modifiedIndex: number;
  createdIndex: number;
}
interface Answer {
  action: string;
  node: Node;
  prevNode?: Node;
}

/** One request; a connection failure or timeout is an answer of status 0 (the outcome of a write is then unknown). */
async function tryHttp(url: string, options: Parameters<typeof http>[1] = {}): Promise<RawResponse | { status: 0; body: string }> {
  try {
    return await http(url, { timeout: 8000, ...options });
  } catch (err) {
    return { status: 0, body: (err as Error).message };
  }
}

async function v3Proxy(members: readonly LocalEtcd[]): Promise<Awaited<ReturnType<typeof proxy>>> {
  return proxy({ backend: 'v3', initialCluster: members.map((m) => `${m.name}=${m.peerUrl}`).join(','), dataDir: await tempDir() });
}

describe('SIGKILL of the member under the proxy\'s watch stream, watches open, writes going on', { skip: skipWithoutEtcd }, () => {
  let members: LocalEtcd[];
  let p: Awaited<ReturnType<typeof proxy>>;
  before(async () => {
    members = await cluster(3, { enableV2: false });
    p = await v3Proxy(members);
  });
  after(cleanup);

  it('every watcher gets every event once, in index order (stream watches, and waitIndex re-polls as etcdctl watch --forever)', { timeout: 120000 }, async () => {
    const N = 150;
    const KILL_AT = 50;
    const base = await http(`${p.url}/v2/keys/f`, { method: 'PUT', body: form({ dir: true }) });
    assert.equal(base.status, 201, base.body);
    const startIndex = (base.json() as Answer).node.modifiedIndex;

    /** A stream watcher that, like a v2 client, re-opens with waitIndex=last+1 when its answer ends. */
    const streamWatcher = async (): Promise<{ events: Answer[]; reopened: number }> => {
      const events: Answer[] = [];
      let reopened = -1;
      const deadline = Date.now() + 90000;
      while (events.length < N && Date.now() < deadline) {
        reopened++;
        const from = events.length === 0 ? startIndex + 1 : events.at(-1)!.node.modifiedIndex + 1;
        const w = new OpenWatch(`${p.url}/v2/keys/f?wait=true&recursive=true&stream=true&waitIndex=${from}`);
        try {
          const h = await w.headers;
          if (h.status !== 200) continue;
          for (;;) {
            const line = await w.next(Math.max(1, deadline - Date.now())).catch(() => undefined);
            if (line === undefined) break;
            events.push(JSON.parse(line) as Answer);
            if (events.length >= N) break;
          }
        } catch {
          // connection refused or reset: re-poll
        } finally {
          w.close();
        }
      }
      return { events, reopened };
    };

    /** etcdctl watch --forever: one-shot waits, each from the index after the last event seen. */
    const pollingWatcher = async (): Promise<{ events: Answer[]; errors: number }> => {
      const events: Answer[] = [];
      let errors = 0;
      let next = startIndex + 1;
      const deadline = Date.now() + 90000;
      while (events.length < N && Date.now() < deadline) {
        const res = await tryHttp(`${p.url}/v2/keys/f?wait=true&recursive=true&waitIndex=${next}`, { timeout: 30000 });
        if (res.status !== 200 || res.body === '') {
          errors++;
          continue;
        }
        const ev = JSON.parse(res.body) as Answer;
        events.push(ev);
        next = ev.node.modifiedIndex + 1;
      }
      return { events, errors };
    };

    const streams = [streamWatcher(), streamWatcher(), streamWatcher()];
    const polling = pollingWatcher();
    await eventually(() => p.v3Backend!.watchCount >= 3, 10000, 'the stream watches to be registered');

    // The writer: creates /f/n1..nN in order; a create whose answer was lost is retried, a 105 then means it was applied.
    let victim: LocalEtcd | undefined;
    let failedAnswers = 0;
    for (let i = 1; i <= N; i++) {
      if (i === KILL_AT) {
        const endpoint = p.v3Backend!.watchEndpoint;
        victim = members.find((m) => m.clientUrl === endpoint);
        assert.ok(victim !== undefined, `the watch stream's endpoint ${endpoint} is none of the members`);
        victim.signal('SIGKILL');
        await victim.exited;
      }
      const deadline = Date.now() + 30000;
      for (;;) {
        const res = await tryHttp(`${p.url}/v2/keys/f/n${i}`, { method: 'PUT', body: form({ value: String(i), prevExist: false }) });
        if (res.status === 201) break;
        if (res.status === 412 && (JSON.parse(res.body) as { errorCode: number }).errorCode === 105) break;
        failedAnswers++;
        assert.ok(Date.now() < deadline, `write ${i} still failing after 30 s: ${res.status} ${res.body}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.ok(p.v3Backend!.watchEndpoint !== victim!.clientUrl, 'the watch stream moved to another member');

    const expected = Array.from({ length: N }, (_, i) => `/f/n${i + 1}`);
    const results = await Promise.all(streams);
    for (const [i, r] of results.entries()) {
      assert.deepEqual(
        r.events.map((e) => e.node.key),
        expected,
        `stream watcher ${i} (re-opened ${r.reopened} times) got ${r.events.length} events`,
      );
      for (const e of r.events) assert.equal(e.action, 'create');
      const idx = r.events.map((e) => e.node.modifiedIndex);
      assert.ok(idx.every((x, j) => j === 0 || x > idx[j - 1]!), 'indexes strictly increasing');
    }
    const polled = await polling;
    assert.deepEqual(
      polled.events.map((e) => e.node.key),
      expected,
      `polling watcher (${polled.errors} failed polls) got ${polled.events.length} events`,
    );
    assert.deepEqual(
      polled.events.map((e) => e.node.modifiedIndex),
      results[0]!.events.map((e) => e.node.modifiedIndex),
      'the same indexes on every watcher',
    );
    // The number of times a stream had to be re-opened is what a client sees of the failover.
    assert.equal(results.filter((r) => r.reopened > 0).length, 0, `stream watches were ended by the failover (re-opened: ${results.map((r) => r.reopened).join(', ')}); the proxy should resume them on another member`);
    void failedAnswers;
  });
});

describe('SIGKILL of the leader during a stream of compare-and-swap writes', { skip: skipWithoutEtcd }, () => {
  let members: LocalEtcd[];
  let p: Awaited<ReturnType<typeof proxy>>;
  before(async () => {
    members = await cluster(3, { enableV2: false });
    p = await v3Proxy(members);
  });
  after(cleanup);

  it('no write applied twice, none acknowledged and lost, none reported failed (412) that was applied', { timeout: 150000 }, async () => {
    const seed = await http(`${p.url}/v2/keys/counter`, { method: 'PUT', body: form({ value: '0:seed' }) });
    assert.equal(seed.status, 201, seed.body);
    const seedIndex = (seed.json() as Answer).node.modifiedIndex;
    const CLIENTS = 4;
    const PER_CLIENT = 30;
    const KILL_AFTER = 40;
    const acked = new Set<string>();
    const refused = new Set<string>(); // 412 answers: the proxy says not applied
    const unknown = new Set<string>(); // 5xx, timeouts, resets: outcome unknown
    let killed: LocalEtcd | undefined;
    let killing: Promise<void> | undefined;

    const leader = async (): Promise<LocalEtcd> => {
      const res = await http(`${p.url}/v2/members/leader`);
      assert.equal(res.status, 200, res.body);
      const name = (res.json() as { name: string }).name;
      const m = members.find((x) => x.name === name);
      assert.ok(m !== undefined, `leader ${name} is none of the members`);
      return m;
    };

    const client = async (id: number): Promise<void> => {
      let done = 0;
      let attempt = 0;
      const deadline = Date.now() + 120000;
      while (done < PER_CLIENT) {
        assert.ok(Date.now() < deadline, `client ${id} did only ${done} increments in 120 s`);
        if (acked.size >= KILL_AFTER && killing === undefined) {
          killing = (async () => {
            killed = await leader();
            killed.signal('SIGKILL');
            await killed.exited;
          })();
        }
        const get = await tryHttp(`${p.url}/v2/keys/counter?quorum=true`);
        if (get.status !== 200) {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        const node = (JSON.parse(get.body) as Answer).node;
        const n = Number(node.value!.split(':')[0]);
        const value = `${n + 1}:c${id}:a${attempt++}`;
        const cas = await tryHttp(`${p.url}/v2/keys/counter`, { method: 'PUT', body: form({ value, prevIndex: node.modifiedIndex }) });
        if (cas.status === 200) {
          assert.equal((JSON.parse(cas.body) as Answer).node.value, value);
          acked.add(value);
          done++;
        } else if (cas.status === 412) {
          assert.equal((JSON.parse(cas.body) as { errorCode: number }).errorCode, 101, cas.body);
          refused.add(value);
        } else {
          unknown.add(value);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)));
    await killing;
    assert.ok(killed !== undefined, 'the leader was killed during the writes');

    // Every write applied, from the cluster's history: walk the v2 events of /counter after the seed with waitIndex.
    const applied: Answer[] = [];
    const final = (await http(`${p.url}/v2/keys/counter?quorum=true`)).json() as Answer;
    for (let next = seedIndex + 1; next <= final.node.modifiedIndex; ) {
      const res = await http(`${p.url}/v2/keys/counter?wait=true&waitIndex=${next}`, { timeout: 10000 });
      assert.equal(res.status, 200, res.body);
      const ev = JSON.parse(res.body) as Answer;
      applied.push(ev);
      next = ev.node.modifiedIndex + 1;
    }
    const values = applied.map((e) => e.node.value!);
    // A chain: each applied write increments the one before it by exactly one (no double apply).
    values.forEach((v, i) => assert.equal(Number(v.split(':')[0]), i + 1, `applied write ${i}: ${v}`));
    assert.equal(Number(final.node.value!.split(':')[0]), applied.length);
    assert.equal(new Set(values).size, values.length, 'no value applied twice');
    for (const v of acked) assert.ok(values.includes(v), `acknowledged write ${v} is not in the history (lost)`);
    for (const v of refused) assert.ok(!values.includes(v), `write ${v} was answered 412 but was applied`);
    for (const v of values) assert.ok(acked.has(v) || unknown.has(v), `applied write ${v} was neither acknowledged nor left unknown`);
    assert.equal(acked.size, CLIENTS * PER_CLIENT);
    assert.ok(applied.length >= acked.size && applied.length <= acked.size + unknown.size);
  });
});
