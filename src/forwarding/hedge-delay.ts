import { InvalidOptionError } from '../errors.js';
import { describe } from '../validate-options.js';

/**
 * How long a plain read waits for a member's response head before it is
 * sent to a second member as well (a hedged read, see forward-request.ts).
 *
 * The rule of `hedgeDelay: 'auto'` (the default):
 *
 *   delay = clamp(2 × p99, 10 ms, 500 ms)
 *
 * where p99 is the 99th percentile of the time from an attempt sent to its
 * response head, over the last 1,024 response heads of reads (every member,
 * hedges included; the highest when fewer than 100 came). Before the first
 * head the delay is the ceiling, 500 ms. With a p99 of 2 ms (a healthy LAN
 * cluster) the delay is the 10 ms floor; with 30 ms (a loaded one) it is
 * 60 ms. The p99 comes from a histogram with steps of 19 % (2^(1/4)), read
 * again every 16 heads: the delay is rounded up to the step above.
 *
 * Why these numbers: a read waits past twice the p99 in well under 1 % of
 * cases on a healthy cluster, so hedging adds well under 1 % of requests
 * (and the budget, hedge-budget.ts, caps them at 10 %); the floor keeps
 * ordinary jitter (a GC pause of the member or of this proxy) from being
 * hedged; the ceiling bounds what a frozen member costs a read while the
 * rest of the cluster is slow too.
 *
 * Only the answers that came are counted: a request aborted because the
 * other one won is not (its time is not known), so a frozen member does
 * not drag the delay up while it is frozen.
 */

/** The multiple of the p99 the delay is. */
export const HEDGE_P99_MULTIPLE = 2;
/** The shortest automatic delay, ms. */
export const HEDGE_DELAY_FLOOR = 10;
/** The longest automatic delay (and the one before any answer), ms. */
export const HEDGE_DELAY_CEILING = 500;
/** How many of the latest response heads the p99 is taken over. */
export const HEDGE_SAMPLES = 1024;

/** Histogram buckets: bucket `b` holds times up to `BASE × 2^(b/4)` ms; the last one everything above. */
const BASE = 1 / 16;
const BUCKETS = 96;
const STEPS_PER_DOUBLING = 4;
/** The p99 is read again after this many new samples. */
const REFRESH = 16;

/** The upper bound, in ms, of bucket `b`. */
function bucketTop(b: number): number {
  return BASE * 2 ** (b / STEPS_PER_DOUBLING);
}

function bucketOf(ms: number): number {
  if (!(ms > BASE)) return 0;
  const b = Math.ceil(Math.log2(ms / BASE) * STEPS_PER_DOUBLING - 1e-9);
  return b >= BUCKETS ? BUCKETS - 1 : b;
}

/**
 * `hedgeDelay` as the handler takes it: `'auto'` (or undefined), or a whole
 * number of milliseconds >= 0 (0 turns hedging off).
 */
export function hedgeDelayOption(value: unknown): number | 'auto' {
  if (value === undefined || value === 'auto') return 'auto';
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidOptionError('hedgeDelay', `expected "auto" or a whole number of milliseconds >= 0, got ${describe(value)}`);
  }
  return value;
}

/** The hedge delay of one handler: fixed, or following the rule above. */
export class HedgeDelay {
  /** Bucket of each of the latest samples, oldest overwritten first. */
  private readonly ring = new Uint8Array(HEDGE_SAMPLES);
  private readonly counts = new Uint16Array(BUCKETS);
  private samples = 0;
  private next = 0;
  private sinceRefresh = 0;
  private delay: number;

  /** @param setting - a fixed delay in ms (> 0), or `'auto'`. */
  constructor(readonly setting: number | 'auto') {
    this.delay = setting === 'auto' ? HEDGE_DELAY_CEILING : setting;
  }

  /** The delay now, in ms. */
  get current(): number {
    if (this.sinceRefresh > 0 && (this.sinceRefresh >= REFRESH || this.samples < 100)) this.refresh();
    return this.delay;
  }

  /** The p99 now, in ms (rounded up to its histogram step); 0 before any sample. */
  get p99(): number {
    const n = this.samples;
    if (n === 0) return 0;
    const rank = Math.ceil(n * 0.99);
    let seen = 0;
    for (let b = 0; b < BUCKETS; b++) {
      seen += this.counts[b]!;
      if (seen >= rank) return bucketTop(b);
    }
    return bucketTop(BUCKETS - 1);
  }

  /** Records the time, in ms, from an attempt sent to its response head. */
  observe(ms: number): void {
    if (this.setting !== 'auto') return;
    const b = bucketOf(ms);
    if (this.samples === HEDGE_SAMPLES) this.counts[this.ring[this.next]!]!--;
    else this.samples++;
    this.ring[this.next] = b;
    this.counts[b]!++;
    this.next = (this.next + 1) % HEDGE_SAMPLES;
    this.sinceRefresh++;
  }

  private refresh(): void {
    this.sinceRefresh = 0;
    const wanted = HEDGE_P99_MULTIPLE * this.p99;
    this.delay = Math.min(HEDGE_DELAY_CEILING, Math.max(HEDGE_DELAY_FLOOR, Math.ceil(wanted)));
  }
}
