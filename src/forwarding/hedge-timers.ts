/**
 * The hedge delays of the reads in flight, kept without a timer per read
 * (the way deadline-queue.ts keeps the forwarder's fixed deadlines).
 *
 * Unlike those deadlines, the hedge delay changes as the p99 moves
 * (hedge-delay.ts), so items are kept sorted by due time: an item is
 * inserted from the tail, where it nearly always belongs. One unref'd timer
 * is armed for the head.
 *
 * When the timer fires, the items due are not expired at once but in a
 * `setImmediate`: after the event loop's poll phase, so that a
 * member's answer already received while this proxy was busy (a GC pause,
 * a burst) is read first and removes its read from the queue, rather than
 * being hedged for nothing.
 */

/** The fields a queued item carries; owned by the queue. */
export interface HedgeNode<T extends HedgeNode<T>> {
  /** `performance.now()` value at which the item is due. */
  hedgeAt: number;
  /** The queue the item is in, if any. */
  hedgeQueue: HedgeTimers<T> | undefined;
  hedgePrev: T | undefined;
  hedgeNext: T | undefined;
  /** True once due: it waits in the ready list for the `setImmediate`. */
  hedgeReady: boolean;
}

export class HedgeTimers<T extends HedgeNode<T>> {
  private head: T | undefined = undefined;
  private tail: T | undefined = undefined;
  /** Items due, waiting for the `setImmediate`, in due order. */
  private readyHead: T | undefined = undefined;
  private readyTail: T | undefined = undefined;
  private timer: NodeJS.Timeout | undefined = undefined;
  /** The `hedgeAt` the timer is armed for. */
  private timerAt = 0;
  private immediate: NodeJS.Immediate | undefined = undefined;
  private closed = false;

  /** @param expire - called once for an item whose time came, after it left the queue. */
  constructor(private readonly expire: (item: T) => void) {}

  /** Items waiting (due or not). */
  size = 0;

  /** Makes `item` due at `at` (`performance.now()` ms), moving it if it was queued. */
  add(item: T, at: number): void {
    if (item.hedgeQueue !== undefined) item.hedgeQueue.remove(item);
    if (this.closed) return;
    item.hedgeAt = at;
    item.hedgeQueue = this;
    item.hedgeReady = false;
    let before = this.tail;
    while (before !== undefined && before.hedgeAt > at) before = before.hedgePrev;
    item.hedgePrev = before;
    item.hedgeNext = before === undefined ? this.head : before.hedgeNext;
    if (item.hedgeNext === undefined) this.tail = item;
    else item.hedgeNext.hedgePrev = item;
    if (before === undefined) this.head = item;
    else before.hedgeNext = item;
    this.size++;
    if (this.head === item) this.arm(performance.now());
  }

  /** Takes `item` out without expiring it; no-op when it is not in this queue. */
  remove(item: T): void {
    if (item.hedgeQueue !== this) return;
    const prev = item.hedgePrev;
    const next = item.hedgeNext;
    if (item.hedgeReady) {
      if (prev === undefined) this.readyHead = next;
      else prev.hedgeNext = next;
      if (next === undefined) this.readyTail = prev;
      else next.hedgePrev = prev;
    } else {
      if (prev === undefined) this.head = next;
      else prev.hedgeNext = next;
      if (next === undefined) this.tail = prev;
      else next.hedgePrev = prev;
    }
    item.hedgeQueue = item.hedgePrev = item.hedgeNext = undefined;
    item.hedgeReady = false;
    this.size--;
  }

  /** Stops the timers; items left are forgotten, never expired. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.immediate = undefined;
    while (this.head !== undefined) this.remove(this.head);
    while (this.readyHead !== undefined) this.remove(this.readyHead);
  }

  /** Arms the timer for the head, unless it is armed for it already. */
  private arm(now: number): void {
    const head = this.head;
    if (head === undefined || this.closed) return;
    if (this.timer !== undefined) {
      if (this.timerAt <= head.hedgeAt) return;
      clearTimeout(this.timer);
    }
    this.timerAt = head.hedgeAt;
    this.timer = setTimeout(this.onTimer, Math.max(1, Math.ceil(head.hedgeAt - now))).unref();
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    const now = performance.now();
    let item = this.head;
    // Timers count whole milliseconds: one may fire a fraction early.
    while (item !== undefined && item.hedgeAt <= now + 1) {
      const next = item.hedgeNext;
      this.head = next;
      if (next === undefined) this.tail = undefined;
      else next.hedgePrev = undefined;
      item.hedgeReady = true;
      item.hedgePrev = this.readyTail;
      item.hedgeNext = undefined;
      if (this.readyTail === undefined) this.readyHead = item;
      else this.readyTail.hedgeNext = item;
      this.readyTail = item;
      item = next;
    }
    // Not unref'd: node makes the poll phase wait for I/O when only unref'd immediates are pending, and the
    // hedges would go out only when something else woke the loop. It runs in this same turn of the loop, so it
    // keeps nothing alive.
    if (this.readyHead !== undefined && this.immediate === undefined) this.immediate = setImmediate(this.onImmediate);
    this.arm(now);
  };

  private readonly onImmediate = (): void => {
    this.immediate = undefined;
    let item = this.readyHead;
    while (item !== undefined) {
      this.remove(item);
      this.expire(item);
      item = this.readyHead;
    }
  };
}
