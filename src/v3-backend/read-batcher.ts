/**
 * Read transactions that arrive in the same turn of the event loop share one
 * v3 Txn: a gRPC call costs the proxy about as much CPU as the rest of a v2
 * GET together, so under load the calls, not the reads, are what to save.
 *
 * Each read keeps its own answer (its slice of the Txn's responses) and its
 * consistency: a Txn of serializable ranges is served by the member as each
 * of them would be, and a linearizable Txn is started after every read in it
 * arrived, so each still sees every write acknowledged before it. The reads
 * of one Txn see one revision, as one read would. Reads pinned to a revision
 * are not batched (their caller pins them for a reason).
 *
 * A batch is sent once the turn's I/O is handled (`setImmediate`), so a lone
 * read waits for nothing; while `maxInFlight` batched Txns are out already,
 * reads wait for one of them to come back and then go together (under load
 * the batches grow instead of the calls). If a batched Txn fails, each of its
 * reads is sent again alone, so one read's failure is its own.
 */
import { MAX_TXN_OPS } from './rpc-types.js';
import type { RequestOp, TxnRequest, TxnResponse } from './rpc-types.js';

/** Sends one Txn: the store's call (its signal, its member choice). */
export type SendTxn = (txn: TxnRequest, serializable: boolean) => Promise<TxnResponse>;

interface Waiting {
  ops: RequestOp[];
  resolve: (r: TxnResponse) => void;
  reject: (err: unknown) => void;
}

export class ReadBatcher {
  /** Txns sent, and reads answered through them (for tests and the bench). */
  readonly stats = { txns: 0, reads: 0 };
  private readonly queues: [Waiting[], Waiting[]] = [[], []];
  private scheduled = false;
  /** Batched Txns out, not yet answered. */
  private inFlight = 0;

  /** `maxInFlight`: batched Txns out at once before reads wait for one to return. Default: 4. */
  constructor(
    private readonly send: SendTxn,
    private readonly maxInFlight = 4,
  ) {}

  /** One read-only Txn of `ops` (range requests): answered alone or in a batch. */
  read(ops: RequestOp[], serializable: boolean): Promise<TxnResponse> {
    if (ops.length > MAX_TXN_OPS / 2) return this.sendAlone(ops, serializable);
    return new Promise<TxnResponse>((resolve, reject) => {
      this.queues[serializable ? 1 : 0].push({ ops, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    for (const serializable of [false, true]) {
      const queue = this.queues[serializable ? 1 : 0];
      if (queue.length === 0) continue;
      this.queues[serializable ? 1 : 0] = [];
      let group: Waiting[] = [];
      let ops = 0;
      for (const w of queue) {
        if (ops + w.ops.length > MAX_TXN_OPS) {
          this.sendGroup(group, serializable);
          group = [];
          ops = 0;
        }
        group.push(w);
        ops += w.ops.length;
      }
      this.sendGroup(group, serializable);
    }
  }

  private sendAlone(ops: RequestOp[], serializable: boolean): Promise<TxnResponse> {
    this.stats.txns++;
    this.stats.reads++;
    return this.send({ compare: [], success: ops, failure: [] }, serializable);
  }

  private sendGroup(group: Waiting[], serializable: boolean): void {
    this.inFlight++;
    const done = (): void => {
      this.inFlight--;
      if (this.queues[0].length > 0 || this.queues[1].length > 0) this.schedule();
    };
    if (group.length === 1) {
      const w = group[0]!;
      this.sendAlone(w.ops, serializable).then(
        (res) => {
          done();
          w.resolve(res);
        },
        (err: unknown) => {
          done();
          w.reject(err);
        },
      );
      return;
    }
    this.stats.txns++;
    this.stats.reads += group.length;
    const success = group.flatMap((w) => w.ops);
    this.send({ compare: [], success, failure: [] }, serializable).finally(done).then(
      (res) => {
        let at = 0;
        for (const w of group) {
          w.resolve({ header: res.header, succeeded: res.succeeded, responses: res.responses.slice(at, at + w.ops.length) });
          at += w.ops.length;
        }
      },
      () => {
        // Each on its own: whatever failed, fails for its own read only.
        for (const w of group) this.sendAlone(w.ops, serializable).then(w.resolve, w.reject);
      },
    );
  }
}
