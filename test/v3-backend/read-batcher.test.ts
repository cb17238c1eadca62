/**
 * ReadBatcher's scheduling, with a recording `send` in place of the gRPC
 * call: which reads share a Txn, how the answers are split, and what happens
 * when a shared Txn fails (a real member cannot be made to fail one batched
 * Txn and not the same reads sent alone; test/integration/v3-store.test.ts
 * checks batched GETs against a real member).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ReadBatcher } from '../../src/v3-backend/read-batcher.js';
import type { RequestOp, TxnRequest, TxnResponse } from '../../src/v3-backend/rpc-types.js';

const op = (key: string): RequestOp => ({ requestRange: { key: Buffer.from(key) } });
const keyOf = (o: RequestOp): string => o.requestRange!.key.toString();

/** Answers each range op with one kv holding its key, at revision = the number of Txns sent so far. */
function recorder(fail?: (txn: TxnRequest) => boolean): { sent: Array<{ keys: string[]; serializable: boolean }>; send: (txn: TxnRequest, s: boolean) => Promise<TxnResponse> } {
  const sent: Array<{ keys: string[]; serializable: boolean }> = [];
  return {
    sent,
    send: async (txn, serializable) => {
      sent.push({ keys: txn.success.map(keyOf), serializable });
      if (fail?.(txn)) throw new Error(`failed: ${txn.success.map(keyOf).join(',')}`);
      return {
        header: { clusterId: '1', memberId: '1', revision: sent.length, raftTerm: 2 },
        succeeded: true,
        responses: txn.success.map((o) => ({ response: 'responseRange', responseRange: { header: { clusterId: '1', memberId: '1', revision: sent.length, raftTerm: 2 }, kvs: [{ key: o.requestRange!.key, createRevision: 1, modRevision: 1, version: 1, value: Buffer.from('v'), lease: 0 }], more: false, count: 1 } })),
      } as unknown as TxnResponse;
    },
  };
}

describe('ReadBatcher', () => {
  test('reads of one turn share one Txn; each gets its own responses, in its order, and the shared header', async () => {
    const r = recorder();
    const b = new ReadBatcher(r.send);
    const answers = await Promise.all([b.read([op('a1'), op('a2')], true), b.read([op('b1')], true), b.read([op('c1'), op('c2'), op('c3')], true)]);
    assert.deepEqual(r.sent, [{ keys: ['a1', 'a2', 'b1', 'c1', 'c2', 'c3'], serializable: true }]);
    assert.deepEqual(answers.map((a) => a.responses.map((x) => x.responseRange!.kvs[0]!.key.toString())), [['a1', 'a2'], ['b1'], ['c1', 'c2', 'c3']]);
    assert.ok(answers.every((a) => a.header.revision === 1));
    assert.deepEqual(b.stats, { txns: 1, reads: 3 });
  });

  test('a lone read is sent alone; reads of a later turn go in a later Txn', async () => {
    const r = recorder();
    const b = new ReadBatcher(r.send);
    await b.read([op('x')], true);
    await Promise.all([b.read([op('y')], true), b.read([op('z')], true)]);
    assert.deepEqual(r.sent.map((s) => s.keys), [['x'], ['y', 'z']]);
  });

  test('serializable and linearizable reads are never mixed', async () => {
    const r = recorder();
    const b = new ReadBatcher(r.send);
    await Promise.all([b.read([op('s1')], true), b.read([op('l1')], false), b.read([op('s2')], true), b.read([op('l2')], false)]);
    assert.deepEqual(r.sent, [
      { keys: ['l1', 'l2'], serializable: false },
      { keys: ['s1', 's2'], serializable: true },
    ]);
  });

  test("a Txn never holds more than etcd's default --max-txn-ops (128); a read of over 64 ops goes alone", async () => {
    const r = recorder();
    const b = new ReadBatcher(r.send);
    const reads = Array.from({ length: 50 }, (_, i) => b.read([op(`k${i}a`), op(`k${i}b`), op(`k${i}c`)], true));
    const big = b.read(Array.from({ length: 65 }, (_, i) => op(`big${i}`)), true);
    const answers = await Promise.all([...reads, big]);
    assert.ok(r.sent.every((s) => s.keys.length <= 128), r.sent.map((s) => s.keys.length).join(','));
    assert.deepEqual(r.sent.map((s) => s.keys.length).sort((x, y) => x - y), [24, 65, 126]);
    for (const [i, a] of answers.slice(0, 50).entries()) assert.deepEqual(a.responses.map((x) => x.responseRange!.kvs[0]!.key.toString()), [`k${i}a`, `k${i}b`, `k${i}c`]);
  });

  test('a failed shared Txn: each read is sent again alone and gets its own outcome', async () => {
    const r = recorder((txn) => txn.success.length > 1 || keyOf(txn.success[0]!) === 'bad');
    const b = new ReadBatcher(r.send);
    const outcomes = await Promise.allSettled([b.read([op('good')], true), b.read([op('bad')], true), b.read([op('fine')], true)]);
    assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.match(String((outcomes[1] as PromiseRejectedResult).reason), /failed: bad/);
    assert.deepEqual(r.sent.map((s) => s.keys), [['good', 'bad', 'fine'], ['good'], ['bad'], ['fine']]);
  });

  test('while maxInFlight batched Txns are out, later reads wait and then go together', async () => {
    const sent: string[][] = [];
    const held: Array<() => void> = [];
    const b = new ReadBatcher(async (txn) => {
      sent.push(txn.success.map(keyOf));
      await new Promise<void>((resolve) => held.push(resolve));
      return { header: { clusterId: '1', memberId: '1', revision: 1, raftTerm: 1 }, succeeded: true, responses: txn.success.map(() => ({})) } as unknown as TxnResponse;
    }, 1);
    const first = b.read([op('a')], true);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(sent, [['a']]);
    const later = [b.read([op('b')], true), b.read([op('c')], true)];
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(sent, [['a']], 'b and c wait while the one allowed Txn is out');
    held.shift()!();
    await first;
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(sent, [['a'], ['b', 'c']]);
    held.shift()!();
    await Promise.all(later);
  });
});
