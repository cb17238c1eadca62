/**
 * Differential suite of the v3 backend: every scenario of v2-scenarios.ts
 * runs, in order, against native v2 (a fresh etcd 3.4 member with
 * `--enable-v2`, asked directly) and against `createProxy({ backend: 'v3' })`
 * in front of a fresh v3-only member; the answers, normalised (indexes to
 * their rank, ttl/expiration to checked markers), must be the same, but for
 * the differences listed in INTENDED_DIFFERENCES.
 *
 * V3_DIFFERENTIAL_SELF_CHECK=1 runs the v3 side on a second native member
 * instead (the normalisation must then leave no difference at all).
 * V3_DIFFERENTIAL_DUMP=<file> writes both raw transcripts there (JSON).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { cleanup, etcdctlV3, eventually, http, member, proxy, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';
import { compare, INTENDED_DIFFERENCES, intendedFor, monotonicProblems, normalise, runScenarioLockstep, SCENARIOS } from './v2-scenarios.js';
import type { Answer, Difference, IntendedDifference, Target } from './v2-scenarios.js';

const selfCheck = process.env.V3_DIFFERENTIAL_SELF_CHECK === '1';
const dumpFile = process.env.V3_DIFFERENTIAL_DUMP;
const dump: Record<string, { native: unknown; v3: unknown }> = {};
/** Long values (the 2 MiB one) cut short in the dump. */
const cut = (_k: string, v: unknown): unknown => (typeof v === 'string' && v.length > 200 ? `${v.slice(0, 50)}... (${v.length} chars)` : v);

/** Waits until a fresh member stopped writing to its own store (cluster version decided, attributes published). */
async function settled(m: LocalEtcd): Promise<void> {
  await eventually(
    async () => {
      const v = (await http(`${m.clientUrl}/version`)).json() as { etcdcluster?: string };
      return v.etcdcluster !== undefined && v.etcdcluster !== 'not_decided';
    },
    10000,
    `${m.name} to decide its cluster version`,
  );
}

function show(d: Difference): string {
  const s = (v: unknown): string => {
    const text = JSON.stringify(v);
    return text === undefined ? 'undefined' : text.length > 300 ? `${text.slice(0, 300)}...` : text;
  };
  return `  [${d.scenario}] ${d.step} :: ${d.field}\n      native: ${s(d.native)}\n      v3:     ${s(d.v3)}`;
}

describe(`v2 differential: native v2 vs ${selfCheck ? 'native v2 (self-check)' : 'the v3 backend'}`, { skip: skipWithoutEtcd }, () => {
  let native: Target;
  let v3: Target;
  const used = new Set<IntendedDifference>();
  let completed = 0;

  before(async () => {
    const [n, m] = await Promise.all([member(), member(selfCheck ? {} : { enableV2: false })]);
    await Promise.all([settled(n), settled(m)]);
    native = { label: 'native', url: n.clientUrl, compact: async () => undefined };
    if (selfCheck) {
      v3 = { label: 'native (2)', url: m.clientUrl, compact: async () => undefined };
      return;
    }
    const p = await proxy({ backend: 'v3', initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() });
    v3 = {
      label: 'v3',
      url: p.url,
      async compact(rev) {
        const r = await etcdctlV3(m.clientUrl, ['compaction', String(rev)]);
        assert.equal(r.code, 0, `etcdctl compaction ${rev}: ${r.stderr}`);
      },
    };
  });
  after(cleanup);

  for (const scenario of SCENARIOS) {
    it(`${scenario.name} (${scenario.covers})`, { timeout: 90000 }, async () => {
      const [a, b] = (await runScenarioLockstep([native, v3], scenario)) as [Answer[], Answer[]];
      if (dumpFile !== undefined) {
        dump[scenario.name] = { native: a, v3: b };
        writeFileSync(dumpFile, JSON.stringify(dump, cut, 1));
      }
      const own = [...monotonicProblems(a).map((p) => `native: ${p}`), ...monotonicProblems(b).map((p) => `v3: ${p}`)];
      assert.deepEqual(own, [], 'X-Raft-Index / X-Raft-Term went back');
      const nb = normalise(b);
      const diffs = compare(scenario.name, normalise(a), nb);
      const unexpected = diffs.filter((d) => {
        const e = intendedFor(d, nb);
        if (e !== undefined) used.add(e);
        return e === undefined;
      });
      if (unexpected.length > 0) assert.fail(`${unexpected.length} unexpected difference(s):\n${unexpected.map(show).join('\n')}`);
      completed++;
    });
  }

  it('every entry of INTENDED_DIFFERENCES still occurs', { skip: selfCheck ? 'self-check' : false }, () => {
    if (completed < SCENARIOS.length) return; // a failed scenario may hide some; only judged on a full pass
    const stale = INTENDED_DIFFERENCES.filter((e) => e.documentOnly !== true && !used.has(e));
    assert.deepEqual(stale, [], 'intended differences that no longer occur: remove them from v2-scenarios.ts');
  });
});
