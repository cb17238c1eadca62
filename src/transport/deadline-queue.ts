/**
 * Deadlines that all have the same duration, kept without a timer per item.
 *
 * Every item added gets `now + duration`, so items expire in the order they
 * were added: a FIFO is a sorted list. The items are the list's nodes (they
 * carry their own links), so adding and removing allocate nothing, and one
 * unref'd timer, armed for the head, serves them all. The forwarder adds each
 * request to one queue per phase (dial, write, response headers) instead of
 * creating and clearing two `setTimeout`s per request.
 */

/** The fields a queued item carries; owned by the queue. */
export interface DeadlineNode<T extends DeadlineNode<T>> {
  /** `performance.now()` value at which the item expires; 0 when in no queue. */
  dueAt: number;
  /** The queue the item is in, if any. */
  dueQueue: DeadlineQueue<T> | undefined;
  dueBefore: T | undefined;
  dueAfter: T | undefined;
}

export class DeadlineQueue<T extends DeadlineNode<T>> {
  private head: T | undefined = undefined;
  private tail: T | undefined = undefined;
  private timer: NodeJS.Timeout | undefined = undefined;
  private closed = false;

  /**
   * @param duration - ms from `add()` to expiry, at least 1.
   * @param expire - called once for an item whose deadline passed, after it left the queue.
   */
  constructor(
    readonly duration: number,
    private readonly expire: (item: T) => void,
  ) {}

  /** Starts `item`'s deadline (moving it out of any other queue). */
  add(item: T): void {
    if (item.dueQueue !== undefined) item.dueQueue.remove(item);
    if (this.closed) return;
    item.dueAt = performance.now() + this.duration;
    item.dueQueue = this;
    item.dueBefore = this.tail;
    item.dueAfter = undefined;
    if (this.tail === undefined) this.head = item;
    else this.tail.dueAfter = item;
    this.tail = item;
    this.timer ??= setTimeout(this.onTimer, this.duration).unref();
  }

  /** Ends `item`'s deadline without expiring it; no-op when it is not in this queue. */
  remove(item: T): void {
    if (item.dueQueue !== this) return;
    if (item.dueBefore === undefined) this.head = item.dueAfter;
    else item.dueBefore.dueAfter = item.dueAfter;
    if (item.dueAfter === undefined) this.tail = item.dueBefore;
    else item.dueAfter.dueBefore = item.dueBefore;
    item.dueQueue = item.dueBefore = item.dueAfter = undefined;
    item.dueAt = 0;
  }

  /** Stops the timer; items left are forgotten, never expired. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    while (this.head !== undefined) this.remove(this.head);
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    const now = performance.now();
    let item = this.head;
    // Timers count whole milliseconds: one may fire a fraction early.
    while (item !== undefined && item.dueAt <= now + 1) {
      this.remove(item);
      this.expire(item);
      item = this.head;
    }
    // An expiry may have added an item (a retry) and armed a timer: one timer, for the head.
    clearTimeout(this.timer);
    this.timer = undefined;
    if (item !== undefined && !this.closed) this.timer = setTimeout(this.onTimer, Math.max(1, Math.ceil(item.dueAt - now))).unref();
  };
}
