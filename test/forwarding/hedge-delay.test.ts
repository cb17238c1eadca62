/**
 * The hedge delay rule of hedgeDelay: 'auto' (src/forwarding/hedge-delay.ts):
 * clamp(2 × p99 of the latest 1,024 response heads, 10 ms, 500 ms), and
 * the option's checks. No network, no timers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  HEDGE_DELAY_CEILING,
  HEDGE_DELAY_FLOOR,
  HEDGE_SAMPLES,
  HedgeDelay,
  hedgeDelayOption,
} from '../../src/forwarding/hedge-delay.js';
import { EndpointBalancer, InvalidOptionError, V2ProxyHandler } from '../../src/index.js';

/** The histogram step: the p99 is rounded up to a bound 2^(1/4) apart from the next. */
const STEP = 2 ** 0.25;

describe('HedgeDelay (hedgeDelay: auto)', () => {
  it('is the 500 ms ceiling before any answer', () => {
    assert.equal(new HedgeDelay('auto').current, HEDGE_DELAY_CEILING);
    assert.equal(HEDGE_DELAY_CEILING, 500);
  });

  it('is twice the p99 of the answers, rounded up to its histogram step', () => {
    const d = new HedgeDelay('auto');
    // 990 answers at 20 ms, 10 at 40 ms: the p99 is 20 ms (the 990th of 1,000 is 20).
    for (let i = 0; i < 990; i++) d.observe(20);
    for (let i = 0; i < 10; i++) d.observe(40);
    assert.ok(d.p99 >= 20 && d.p99 < 20 * STEP, `p99 ${d.p99}`);
    assert.ok(d.current >= 40 && d.current <= Math.ceil(40 * STEP), `delay ${d.current}`);
    // 20 more slow answers: now over 1 % of the 1,020 are at 40 ms, and the p99 is 40 ms.
    for (let i = 0; i < 20; i++) d.observe(40);
    assert.ok(d.p99 >= 40 && d.p99 < 40 * STEP, `p99 ${d.p99}`);
    assert.ok(d.current >= 80 && d.current <= Math.ceil(80 * STEP), `delay ${d.current}`);
  });

  it('with fewer than 100 answers, takes the slowest of them', () => {
    const d = new HedgeDelay('auto');
    d.observe(3);
    d.observe(30);
    d.observe(4);
    assert.ok(d.current >= 60 && d.current <= Math.ceil(60 * STEP), `delay ${d.current}`);
  });

  it('never goes under the 10 ms floor nor over the 500 ms ceiling', () => {
    const fast = new HedgeDelay('auto');
    for (let i = 0; i < 2000; i++) fast.observe(0.3);
    assert.equal(fast.current, HEDGE_DELAY_FLOOR);
    assert.equal(HEDGE_DELAY_FLOOR, 10);
    const slow = new HedgeDelay('auto');
    for (let i = 0; i < 2000; i++) slow.observe(900);
    assert.equal(slow.current, HEDGE_DELAY_CEILING);
  });

  it('forgets answers older than the latest 1,024: it follows the cluster back down', () => {
    const d = new HedgeDelay('auto');
    for (let i = 0; i < HEDGE_SAMPLES; i++) d.observe(100);
    assert.ok(d.current >= 200, `delay ${d.current} after slow answers`);
    for (let i = 0; i < HEDGE_SAMPLES - 5; i++) d.observe(5);
    // 5 slow answers of 1,024 left: under 1 %, the p99 is 5 ms again.
    assert.ok(d.current >= 10 && d.current <= Math.ceil(10 * STEP), `delay ${d.current}`);
  });

  it('a fixed delay stays what it was given, whatever the answers', () => {
    const d = new HedgeDelay(75);
    for (let i = 0; i < 500; i++) d.observe(400);
    assert.equal(d.current, 75);
  });
});

describe('hedgeDelay option', () => {
  it("takes 'auto' (the default), 0 (off) and whole milliseconds", () => {
    assert.equal(hedgeDelayOption(undefined), 'auto');
    assert.equal(hedgeDelayOption('auto'), 'auto');
    assert.equal(hedgeDelayOption(0), 0);
    assert.equal(hedgeDelayOption(25), 25);
  });

  for (const bad of [-1, 1.5, Number.NaN, '50', 'fast', null, true]) {
    it(`refuses ${String(bad)} (${typeof bad}) with a message naming the option`, () => {
      assert.throws(
        () => hedgeDelayOption(bad),
        (err: unknown) =>
          err instanceof InvalidOptionError &&
          err.message.includes('hedgeDelay') &&
          err.message.includes('expected "auto" or a whole number of milliseconds >= 0, got'),
      );
    });
  }

  it('the handler checks it when built and reports the delay it uses (0: off)', (t) => {
    const balancer = new EndpointBalancer();
    t.after(() => balancer.close());
    assert.throws(() => new V2ProxyHandler({ balancer, hedgeDelay: -5 }), /hedgeDelay.*got -5/);
    const byDefault = new V2ProxyHandler({ balancer });
    const auto = new V2ProxyHandler({ balancer, hedgeDelay: 'auto' });
    const off = new V2ProxyHandler({ balancer, hedgeDelay: 0 });
    const fixed = new V2ProxyHandler({ balancer, hedgeDelay: 30 });
    t.after(() => [byDefault, auto, off, fixed].forEach((h) => h.close()));
    assert.equal(byDefault.hedgeDelay, 500, "'auto' by default: 500 ms before the first answer");
    assert.equal(auto.hedgeDelay, 500);
    assert.equal(off.hedgeDelay, 0);
    assert.equal(fixed.hedgeDelay, 30);
  });
});
