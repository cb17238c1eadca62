/**
 * HedgeTimers (src/forwarding/hedge-timers.ts): the reads' hedge delays in
 * one sorted list with one timer; items due are expired after the poll
 * phase (a setImmediate), once each, never when removed before.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HedgeTimers } from '../../src/forwarding/hedge-timers.js';
import type { HedgeNode } from '../../src/forwarding/hedge-timers.js';

class Item implements HedgeNode<Item> {
  hedgeAt = 0;
  hedgeQueue: HedgeTimers<Item> | undefined = undefined;
  hedgePrev: Item | undefined = undefined;
  hedgeNext: Item | undefined = undefined;
  hedgeReady = false;
  expiredAt = 0;
  constructor(readonly name: string) {}
}

/** Resolves once `items` have all expired. */
function expiredAll(items: Item[], expired: Item[]): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (items.every((i) => expired.includes(i))) resolve();
      else setTimeout(check, 5);
    };
    check();
  });
}

describe('HedgeTimers', () => {
  it('expires items in due order, each once and not before its time, whatever the order added', async () => {
    const expired: Item[] = [];
    const timers = new HedgeTimers<Item>((item) => {
      item.expiredAt = performance.now();
      expired.push(item);
    });
    const now = performance.now();
    const late = new Item('late');
    const early = new Item('early');
    const middle = new Item('middle');
    timers.add(late, now + 60);
    timers.add(early, now + 20);
    timers.add(middle, now + 40);
    assert.equal(timers.size, 3);
    await expiredAll([late, early, middle], expired);
    assert.deepEqual(expired.map((i) => i.name), ['early', 'middle', 'late']);
    for (const [item, at] of [[early, 20], [middle, 40], [late, 60]] as const) {
      assert.ok(item.expiredAt - now >= at - 1, `${item.name} expired after ${item.expiredAt - now} ms`);
    }
    assert.equal(timers.size, 0);
    assert.equal(late.hedgeQueue, undefined);
    timers.close();
  });

  it('an item removed before its time never expires; the others still do', async () => {
    const expired: Item[] = [];
    const timers = new HedgeTimers<Item>((item) => expired.push(item));
    const now = performance.now();
    const answered = new Item('answered');
    const stuck = new Item('stuck');
    timers.add(answered, now + 10);
    timers.add(stuck, now + 30);
    timers.remove(answered);
    await expiredAll([stuck], expired);
    assert.deepEqual(expired.map((i) => i.name), ['stuck']);
    timers.close();
  });

  it('an item due but answered in the same turn (its answer read in the poll phase) is not expired', async () => {
    const expired: Item[] = [];
    const timers = new HedgeTimers<Item>((item) => expired.push(item));
    const a = new Item('a');
    const b = new Item('b');
    const now = performance.now();
    timers.add(a, now + 5);
    timers.add(b, now + 5);
    // A timer of the same duration set after the hedge timer runs in the same timers phase, after it and before
    // the setImmediate: as the member's answer to `a`, read in the poll phase in between, would.
    const answered = new Promise<void>((resolve) =>
      setTimeout(() => {
        assert.equal(expired.length, 0, 'nothing expired in the timers phase itself');
        timers.remove(a);
        resolve();
      }, 5),
    );
    // A busy proxy: the loop is blocked past both due times.
    const until = performance.now() + 20;
    while (performance.now() < until);
    await answered;
    await expiredAll([b], expired);
    assert.deepEqual(expired.map((i) => i.name), ['b']);
    timers.close();
  });

  it('close() forgets every item: none expires after it', async () => {
    const expired: Item[] = [];
    const timers = new HedgeTimers<Item>((item) => expired.push(item));
    timers.add(new Item('x'), performance.now() + 5);
    timers.close();
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(expired, []);
    assert.equal(timers.size, 0);
  });
});
