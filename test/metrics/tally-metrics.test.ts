/**
 * The tallies ProxyMetrics counts requests in render exactly as
 * prom-client's own Counter and Histogram given the same updates, so that
 * a scrape can't tell them apart.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Counter, Histogram, Registry } from 'prom-client';
import { TallyCounter, TallyHistogram } from '../../src/metrics/tally-metrics.js';

const BOUNDS = [0.0005, 0.001, 0.002, 0.004, 0.008];

describe('tally metrics', () => {
  it('a counter renders as prom-client\'s Counter with the same increments', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const tally = new TallyCounter('x_total', 'Things.');
    ours.registerMetric(tally.asMetric());
    const counter = new Counter({ name: 'x_total', help: 'Things.', labelNames: ['method', 'code'], registers: [theirs] });
    const get200 = tally.cell({ method: 'GET', code: '200' });
    const put201 = tally.cell({ method: 'PUT', code: '201' });
    for (let i = 0; i < 5; i++) {
      get200.value++;
      counter.inc({ method: 'GET', code: '200' });
    }
    put201.value++;
    counter.inc({ method: 'PUT', code: '201' });
    assert.equal(await ours.metrics(), await theirs.metrics());
    assert.match(await ours.metrics(), /^x_total\{method="GET",code="200"\} 5$/m);
  });

  it('a histogram renders as prom-client\'s Histogram with the same observations, bounds included in their bucket', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const tally = new TallyHistogram('d_seconds', 'Durations.', BOUNDS);
    ours.registerMetric(tally.asMetric());
    const histogram = new Histogram({ name: 'd_seconds', help: 'Durations.', labelNames: ['method'], buckets: BOUNDS, registers: [theirs] });
    const values = [0.0001, 0.0005, 0.0007, 0.001, 0.003, 0.008, 0.0081, 2.5, 0];
    for (const [method, share] of [['GET', 1], ['PUT', 3]] as const) {
      const cell = tally.cell({ method });
      for (let i = 0; i < values.length; i += share) {
        cell.observe(values[i]!);
        histogram.observe({ method }, values[i]!);
      }
    }
    assert.equal(await ours.metrics(), await theirs.metrics());
    assert.match(await ours.metrics(), /^d_seconds_bucket\{le="0\.0005",method="GET"\} 3$/m);
    assert.match(await ours.metrics(), /^d_seconds_bucket\{le="\+Inf",method="GET"\} 9$/m);
    assert.deepEqual(
      (await ours.getMetricsAsJSON())[0]!.values.filter((v) => v.labels['method'] === 'PUT').map((v) => v.value),
      (await theirs.getMetricsAsJSON())[0]!.values.filter((v) => v.labels['method'] === 'PUT').map((v) => v.value),
    );
  });

  it('registry.resetMetrics() sets the series back to zero and counting goes on from there', async () => {
    const registry = new Registry();
    const counter = new TallyCounter('r_total', 'R.');
    const histogram = new TallyHistogram('r_seconds', 'R.', BOUNDS);
    registry.registerMetric(counter.asMetric());
    registry.registerMetric(histogram.asMetric());
    const c = counter.cell({ method: 'GET' });
    const h = histogram.cell({ method: 'GET' });
    c.value += 3;
    h.observe(0.003);
    registry.resetMetrics();
    c.value++;
    const text = await registry.metrics();
    assert.match(text, /^r_total\{method="GET"\} 1$/m);
    assert.match(text, /^r_seconds_count\{method="GET"\} 0$/m);
    assert.match(text, /^r_seconds_sum\{method="GET"\} 0$/m);
  });
});
