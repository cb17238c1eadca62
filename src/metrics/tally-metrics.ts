import type { Metric } from 'prom-client';

/**
 * Counters and a histogram that prom-client's `Registry` renders like its
 * own, for the metrics {@link ProxyMetrics} updates on every request.
 *
 * Why not prom-client's `Counter` and `Histogram`: each `inc()` or
 * `observe()` hashes its label set into a string key to find the series,
 * about 0.1 and 0.4 µs a call, which is a few percent of this proxy's CPU
 * per forwarded request (docs/benchmarks.md). Here a series is a plain
 * object ("cell") the caller looks up once per label set and keeps; an
 * update is an addition. The registry asks for the values at scrape time
 * through `get()`, the one method it calls on a metric (with `reset()` for
 * `registry.resetMetrics()`).
 */

type Labels = Readonly<Record<string, string>>;

/** One series of a {@link TallyCounter}. */
export interface CounterCell {
  value: number;
}

/** What a registry reads of a metric (prom-client's `MetricObjectWithValues`). */
interface Snapshot {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  aggregator: 'sum';
  values: Array<{ labels: Record<string, string | number>; value: number; metricName?: string }>;
}

/** A counter whose series are {@link CounterCell}s. */
export class TallyCounter {
  readonly type = 'counter';
  readonly aggregator = 'sum';
  private readonly cells: Array<{ labels: Labels; cell: CounterCell }> = [];

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  /** A new series with these labels, starting at 0 (ask once per label set, and keep it). */
  cell(labels: Labels): CounterCell {
    const cell = { value: 0 };
    this.cells.push({ labels, cell });
    return cell;
  }

  get(): Promise<Snapshot> {
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: this.cells.map(({ labels, cell }) => ({ labels: { ...labels }, value: cell.value })),
    });
  }

  /** Sets every series back to 0 (they stay listed). */
  reset(): void {
    for (const { cell } of this.cells) cell.value = 0;
  }

  /** As the registry takes it. */
  asMetric(): Metric {
    return this as unknown as Metric;
  }
}

/** One series of a {@link TallyHistogram}. */
export class HistogramCell {
  /** Observations per bucket (not cumulative); the last one is over every bound. */
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    const { bounds } = this;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

/** A histogram whose series are {@link HistogramCell}s, rendered with `le` buckets, `_sum` and `_count` as prom-client's. */
export class TallyHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly cells: Array<{ labels: Labels; cell: HistogramCell }> = [];

  constructor(
    readonly name: string,
    readonly help: string,
    /** Upper bounds, ascending. */
    readonly bounds: readonly number[],
  ) {}

  /** A new series with these labels, empty (ask once per label set, and keep it). */
  cell(labels: Labels): HistogramCell {
    const cell = new HistogramCell(this.bounds);
    this.cells.push({ labels, cell });
    return cell;
  }

  get(): Promise<Snapshot> {
    const values: Snapshot['values'] = [];
    for (const { labels, cell } of this.cells) {
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += cell.counts[i]!;
        values.push({ labels: { le: i < this.bounds.length ? this.bounds[i]! : '+Inf', ...labels }, value: cumulative, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: { ...labels }, value: cell.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...labels }, value: cell.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  /** Empties every series (they stay listed). */
  reset(): void {
    for (const { cell } of this.cells) {
      cell.counts.fill(0);
      cell.sum = 0;
      cell.count = 0;
    }
  }

  /** As the registry takes it. */
  asMetric(): Metric {
    return this as unknown as Metric;
  }
}
