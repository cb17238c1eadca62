/**
 * The hedge budget (src/forwarding/hedge-budget.ts): hedges sent in the
 * last 10 s stay under max(10, 10 % of the reads of the last 10 s). The
 * clock is given to it: no timers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HEDGE_BUDGET_MINIMUM, HEDGE_BUDGET_RATIO, HEDGE_BUDGET_WINDOW_SECONDS, HedgeBudget } from '../../src/forwarding/hedge-budget.js';

/** Hedges `budget` grants at `now`, asking until it refuses (at most `max`). */
function drain(budget: HedgeBudget, now: number, max = 100_000): number {
  let granted = 0;
  while (granted < max && budget.take(now)) granted++;
  return granted;
}

describe('HedgeBudget', () => {
  it('the rule: 10 % of the reads over a 10 s window, at least 10', () => {
    assert.equal(HEDGE_BUDGET_RATIO, 0.1);
    assert.equal(HEDGE_BUDGET_MINIMUM, 10);
    assert.equal(HEDGE_BUDGET_WINDOW_SECONDS, 10);
  });

  it('a proxy with few reads may still hedge 10 per window', () => {
    const b = new HedgeBudget();
    for (let i = 0; i < 5; i++) b.read(1000);
    assert.equal(drain(b, 1000), 10);
  });

  it('with many reads, grants 10 % of them and then refuses', () => {
    const b = new HedgeBudget();
    for (let i = 0; i < 2000; i++) b.read(5000 + i); // 2,000 reads over 2 s
    assert.equal(b.left(7000), 200);
    assert.equal(drain(b, 7000), 200);
    assert.equal(b.take(7000), false);
    // More reads make room again, one hedge per 10 reads.
    for (let i = 0; i < 100; i++) b.read(7100);
    assert.equal(drain(b, 7100), 10);
  });

  it('the window slides by the second: hedges and reads older than 10 s no longer count', () => {
    const b = new HedgeBudget();
    for (let i = 0; i < 1000; i++) b.read(0);
    assert.equal(drain(b, 0), 100);
    // 9.9 s later the same second's hedges and reads still count.
    assert.equal(b.take(9900), false);
    // At 10 s that second left the window: reads of now count, no hedge of then.
    for (let i = 0; i < 300; i++) b.read(10_000);
    assert.equal(drain(b, 10_000), 30);
  });

  it('a cluster slow as a whole (every read past the delay) gets 10 % more reads, not twice as many', () => {
    const b = new HedgeBudget();
    let reads = 0;
    let hedges = 0;
    // 60 s at 200 reads/s, each asking for a hedge.
    for (let ms = 0; ms < 60_000; ms += 5) {
      b.read(ms);
      reads++;
      if (b.take(ms)) hedges++;
    }
    assert.ok(hedges / reads <= 0.1 + 10 / reads, `${hedges} hedges for ${reads} reads`);
    assert.ok(hedges / reads > 0.09, `${hedges} hedges for ${reads} reads: the budget is used`);
  });

  it('a long quiet spell empties the window', () => {
    const b = new HedgeBudget();
    for (let i = 0; i < 100; i++) b.read(0);
    assert.equal(drain(b, 0), 10);
    assert.equal(drain(b, 3_600_000), 10);
  });
});
