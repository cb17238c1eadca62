/**
 * How many hedged reads a handler may send: the budget that keeps hedging
 * from doubling the load on a cluster that is slow as a whole.
 *
 * The rule: a hedge is sent only while the hedges sent in the last 10 s
 * number fewer than max(10, 10 % of the reads that could be hedged (plain
 * GETs and HEADs) that started in the last 10 s). The window slides by the
 * second: it is ten one-second buckets, the current one included, so "the
 * last 10 s" is the last 9 to 10 s. The 10 a window always allows let a
 * proxy with few reads still hedge the odd one stuck on a frozen member.
 */

/** The share of reads that may be hedged. */
export const HEDGE_BUDGET_RATIO = 0.1;
/** Hedges a window allows whatever the reads. */
export const HEDGE_BUDGET_MINIMUM = 10;
/** The window, in one-second buckets. */
export const HEDGE_BUDGET_WINDOW_SECONDS = 10;

export class HedgeBudget {
  private readonly reads = new Uint32Array(HEDGE_BUDGET_WINDOW_SECONDS);
  private readonly hedges = new Uint32Array(HEDGE_BUDGET_WINDOW_SECONDS);
  private readSum = 0;
  private hedgeSum = 0;
  /** The second (`floor(now / 1000)`) of the newest bucket. */
  private second = -1;

  /** Counts a read that could be hedged, started at `now` (`performance.now()` ms). */
  read(now: number): void {
    this.advance(now);
    this.reads[this.second % HEDGE_BUDGET_WINDOW_SECONDS]!++;
    this.readSum++;
  }

  /** Whether a hedge may be sent at `now`; if so it is counted. */
  take(now: number): boolean {
    this.advance(now);
    if (this.hedgeSum >= Math.max(HEDGE_BUDGET_MINIMUM, HEDGE_BUDGET_RATIO * this.readSum)) return false;
    this.hedges[this.second % HEDGE_BUDGET_WINDOW_SECONDS]!++;
    this.hedgeSum++;
    return true;
  }

  /** Hedges the window allows now, beyond those sent. */
  left(now: number): number {
    this.advance(now);
    return Math.max(0, Math.ceil(Math.max(HEDGE_BUDGET_MINIMUM, HEDGE_BUDGET_RATIO * this.readSum) - this.hedgeSum));
  }

  /** Moves the window to the second of `now`, emptying the buckets of the seconds that passed. */
  private advance(now: number): void {
    const second = Math.floor(now / 1000);
    if (second === this.second) return;
    if (this.second < 0 || second - this.second >= HEDGE_BUDGET_WINDOW_SECONDS) {
      this.reads.fill(0);
      this.hedges.fill(0);
      this.readSum = 0;
      this.hedgeSum = 0;
    } else if (second > this.second) {
      for (let s = this.second + 1; s <= second; s++) {
        const i = s % HEDGE_BUDGET_WINDOW_SECONDS;
        this.readSum -= this.reads[i]!;
        this.hedgeSum -= this.hedges[i]!;
        this.reads[i] = 0;
        this.hedges[i] = 0;
      }
    } else return; // a clock going back (it does not: performance.now() is monotonic) keeps the window
    this.second = second;
  }
}
