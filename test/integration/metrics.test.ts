/**
 * GET /metrics (Prometheus text format) and GET /proxy/ready, against real
 * members; the etcd_proxy_* names, types, labels and buckets are compared
 * with those of a live `etcd --proxy on` (etcd's Go proxy) given the same
 * requests.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Counter, Registry } from 'prom-client';
import { EndpointBalancer, GrpcForwarder, PROXY_READY_PATH, ProxyMetrics, V2ProxyHandler } from '../../src/index.js';
import type { ProxyReadiness } from '../../src/index.js';
import {
  cleanup,
  eventually,
  form,
  freePort,
  http,
  member,
  onCleanup,
  proxy,
  serveHandler,
  skipWithoutEtcd,
  tempDir,
} from './harness.js';
import type { LocalEtcd } from './harness.js';

/** `etcd --proxy on` (etcd's own Go proxy) on a free 127.0.0.1 port; stopped by its PID in cleanup(). */
async function goProxy(initialCluster: string): Promise<string> {
  const url = `http://127.0.0.1:${await freePort()}`;
  const child = spawn('etcd', ['--proxy', 'on', '--listen-client-urls', url, '--initial-cluster', initialCluster, '--data-dir', await tempDir('etcd-go-proxy-')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  onCleanup(async () => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    process.kill(child.pid, 'SIGTERM');
    const kill = setTimeout(() => child.pid !== undefined && child.exitCode === null && process.kill(child.pid, 'SIGKILL'), 5000);
    await exited;
    clearTimeout(kill);
  });
  await eventually(
    async () => {
      try {
        const res = await http(`${url}/v2/config/local/proxy`, { timeout: 1000 });
        return ((res.json() as { endpoints?: unknown[] }).endpoints ?? []).length > 0;
      } catch {
        return false;
      }
    },
    15000,
    `etcd --proxy on at ${url} to know its endpoints\n${output.slice(-1000)}`,
  );
  return url;
}

interface Family {
  type: string;
  /** Label names of its samples (`le` left out), sorted. */
  labels: string[];
  /** Values of each label, `le` included. */
  values: Map<string, Set<string>>;
  /** Sample lines: `name{labels}` -> value. */
  samples: Map<string, number>;
}

/** Parses the Prometheus text format into families, keeping those whose name starts with `prefix`. */
function parseMetrics(text: string, prefix: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const familyOf = (sample: string): Family | undefined => {
    for (const suffix of ['', '_bucket', '_sum', '_count']) {
      if (suffix !== '' && !sample.endsWith(suffix)) continue;
      const f = families.get(sample.slice(0, sample.length - suffix.length));
      if (f !== undefined) return f;
    }
    return undefined;
  };
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type !== null) {
      if (type[1]!.startsWith(prefix)) families.set(type[1]!, { type: type[2]!, labels: [], values: new Map(), samples: new Map() });
      continue;
    }
    if (line.startsWith('#') || line.trim() === '') continue;
    const sample = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (sample === null) continue;
    const f = familyOf(sample[1]!);
    if (f === undefined) continue;
    const labels = [...(sample[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1]!, m[2]!] as const);
    for (const [name, value] of labels) {
      if (!f.values.has(name)) f.values.set(name, new Set());
      f.values.get(name)!.add(value);
      if (name !== 'le' && !f.labels.includes(name)) f.labels.push(name), f.labels.sort();
    }
    const key = `${sample[1]}{${labels.filter(([n]) => n !== 'le').map(([n, v]) => `${n}=${v}`).sort().join(',')}${labels.some(([n]) => n === 'le') ? `,le=${labels.find(([n]) => n === 'le')![1]}` : ''}}`;
    f.samples.set(key, Number(sample[3]));
  }
  return families;
}

async function scrape(url: string): Promise<{ text: string; contentType: string | undefined }> {
  const res = await http(`${url}/metrics`);
  assert.equal(res.status, 200);
  return { text: res.body, contentType: res.headers['content-type'] };
}

describe('metrics: GET /metrics with etcd\'s proxy metric names', { skip: skipWithoutEtcd }, () => {
  after(cleanup);

  it('names, types, labels and buckets of etcd_proxy_* are those of a live `etcd --proxy on` given the same requests', async () => {
    const m = await member();
    const cluster = `${m.name}=${m.peerUrl}`;
    const go = await goProxy(cluster);
    const ours = (await proxy({ initialCluster: cluster, dataDir: await tempDir(), refreshInterval: 500 })).url;

    for (const [i, url] of [go, ours].entries()) {
      assert.equal((await http(`${url}/v2/keys/metrics/a${i}`, { method: 'PUT', body: form({ value: '1' }) })).status, 201);
      assert.equal((await http(`${url}/v2/keys/metrics/a${i}`)).status, 200);
      assert.equal((await http(`${url}/v2/keys/metrics/absent`)).status, 404);
    }
    await m.stop();
    for (const url of [go, ours]) assert.equal((await http(`${url}/v2/keys/metrics/a`)).status, 502);
    // etcd's proxy now skips its only endpoint for --proxy-failure-wait: zero endpoints.
    assert.equal((await http(`${go}/v2/keys/metrics/a`)).status, 503);
    // This one still tries a failed endpoint when it has no other: its zero_endpoints comes from a handler that knows none.
    const balancer = new EndpointBalancer();
    const handler = new V2ProxyHandler({ balancer });
    const empty = new ProxyMetrics({ handler });
    const server = createServer(handler.handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    onCleanup(() => new Promise<void>((resolve) => {
      empty.close();
      handler.close();
      balancer.close();
      server.close(() => resolve());
      server.closeAllConnections();
    }));
    assert.equal((await http(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/keys/x`)).status, 503);

    const goFamilies = parseMetrics((await scrape(go)).text, 'etcd_proxy_');
    const ourScrape = await scrape(ours);
    const ourFamilies = parseMetrics(ourScrape.text, 'etcd_proxy_');
    const zeroFamilies = parseMetrics(await empty.metrics(), 'etcd_proxy_');

    assert.deepEqual([...ourFamilies.keys()].sort(), [...goFamilies.keys()].sort());
    assert.deepEqual([...goFamilies.keys()].sort(), [
      'etcd_proxy_dropped_total',
      'etcd_proxy_handled_total',
      'etcd_proxy_handling_duration_seconds',
      'etcd_proxy_requests_total',
    ]);
    for (const [name, theirs] of goFamilies) {
      const mine = ourFamilies.get(name)!;
      assert.equal(mine.type, theirs.type, `${name} type`);
      assert.deepEqual(mine.labels, theirs.labels, `${name} label names`);
      assert.deepEqual(mine.values.get('method'), theirs.values.get('method'), `${name} method values`);
    }
    assert.deepEqual(goFamilies.get('etcd_proxy_requests_total')!.labels, ['method']);
    assert.deepEqual(goFamilies.get('etcd_proxy_handled_total')!.labels, ['code', 'method']);
    assert.deepEqual(goFamilies.get('etcd_proxy_dropped_total')!.labels, ['method', 'proxying_error']);
    assert.deepEqual(goFamilies.get('etcd_proxy_handling_duration_seconds')!.labels, ['method']);
    // The same le strings, in the same order.
    const le = (f: Map<string, Family>): string[] => [...f.get('etcd_proxy_handling_duration_seconds')!.values.get('le')!];
    assert.deepEqual(le(ourFamilies), le(goFamilies));
    assert.equal(le(goFamilies).length, 14);
    // Every proxying_error etcd gave, this proxy gives for the same situation.
    const errors = (f: Map<string, Family>): string[] => [...(f.get('etcd_proxy_dropped_total')?.values.get('proxying_error') ?? [])].sort();
    assert.deepEqual(errors(goFamilies), ['failed_getting_response', 'failed_sending_request', 'zero_endpoints']);
    assert.deepEqual([...new Set([...errors(ourFamilies), ...errors(zeroFamilies)])].sort(), errors(goFamilies));
    // Same counts for the same requests (the 503 went to etcd's proxy only; ours had one more 502 instead).
    const sample = (f: Map<string, Family>, family: string, key: string): number | undefined => f.get(family)!.samples.get(key);
    for (const key of ['etcd_proxy_handled_total{code=200,method=GET}', 'etcd_proxy_handled_total{code=201,method=PUT}', 'etcd_proxy_handled_total{code=404,method=GET}']) {
      assert.equal(sample(ourFamilies, 'etcd_proxy_handled_total', key), 1, key);
      assert.equal(sample(goFamilies, 'etcd_proxy_handled_total', key), 1, key);
    }
    assert.equal(sample(ourFamilies, 'etcd_proxy_requests_total', 'etcd_proxy_requests_total{method=PUT}'), 1);
    assert.equal(sample(goFamilies, 'etcd_proxy_requests_total', 'etcd_proxy_requests_total{method=GET}'), 4);
    assert.equal(sample(ourFamilies, 'etcd_proxy_requests_total', 'etcd_proxy_requests_total{method=GET}'), 3);
    for (const f of [ourFamilies, goFamilies]) {
      assert.equal(sample(f, 'etcd_proxy_handling_duration_seconds', 'etcd_proxy_handling_duration_seconds_count{method=GET}'), 2);
      assert.equal(sample(f, 'etcd_proxy_dropped_total', 'etcd_proxy_dropped_total{method=GET,proxying_error=failed_sending_request}'), 1);
      assert.equal(sample(f, 'etcd_proxy_dropped_total', 'etcd_proxy_dropped_total{method=GET,proxying_error=failed_getting_response}'), 1);
    }
    assert.equal(ourScrape.contentType, 'text/plain; version=0.0.4; charset=utf-8');

    // With its member gone, the proxy is not ready, and says the membership is stale.
    await eventually(async () => (await http(`${ours}${PROXY_READY_PATH}`)).status === 503 && ((await http(`${ours}${PROXY_READY_PATH}`)).json() as ProxyReadiness).stale === true, 5000, 'ready: false, stale: true');
    const gauges = parseMetrics((await scrape(ours)).text, 'etcd_v2_proxy_');
    assert.equal(gauges.get('etcd_v2_proxy_membership_stale')!.samples.get('etcd_v2_proxy_membership_stale{}'), 1);
    assert.equal(gauges.get('etcd_v2_proxy_available_endpoints')!.samples.get('etcd_v2_proxy_available_endpoints{}'), 0);
  });

  describe('with a running member', () => {
    let m: LocalEtcd;
    let p: Awaited<ReturnType<typeof proxy>>;
    before(async () => {
      m = await member();
      p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() });
    });

    it('serves /metrics itself (not forwarded, not counted), with the gauges of endpoints and members', async () => {
      let requests = 0;
      p.handler.on('request', () => requests++);
      const first = await scrape(p.url);
      const head = await http(`${p.url}/metrics`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.body, '');
      assert.equal((await http(`${p.url}/metrics`, { method: 'POST' })).status, 405);
      assert.equal(requests, 0, 'the handler never saw /metrics');
      assert.ok(!first.text.includes('etcd_server_'), 'not the member\'s metrics');
      const own = parseMetrics(first.text, 'etcd_v2_proxy_');
      const value = (name: string): number | undefined => own.get(name)?.samples.get(`${name}{}`);
      assert.equal(value('etcd_v2_proxy_endpoints'), 1);
      assert.equal(value('etcd_v2_proxy_available_endpoints'), 1);
      assert.equal(value('etcd_v2_proxy_members'), 1);
      assert.equal(value('etcd_v2_proxy_membership_stale'), 0);
      const refreshed = value('etcd_v2_proxy_membership_last_refresh_timestamp_seconds')!;
      assert.ok(Math.abs(Date.now() / 1000 - refreshed) < 60, String(refreshed));
    });

    it('leaves watches out of the duration histogram and counts clients that went away', async () => {
      const text = async (): Promise<Map<string, Family>> => parseMetrics((await scrape(p.url)).text, 'etcd_');
      const count = (f: Map<string, Family>, family: string, key: string): number => f.get(family)?.samples.get(key) ?? 0;
      const before = await text();
      // A watch answered by a write, then one whose client leaves.
      const watch = http(`${p.url}/v2/keys/metrics/w?wait=true`);
      await eventually(() => p.handler.inFlight === 1, 5000, 'the watch to reach the member');
      assert.equal((await http(`${m.clientUrl}/v2/keys/metrics/w`, { method: 'PUT', body: form({ value: 'x' }) })).status, 201);
      assert.equal((await watch).status, 200);
      await new Promise<void>((resolve) => {
        const req = httpRequest(`${p.url}/v2/keys/metrics/w2?wait=true`, { agent: false });
        req.on('response', () => {
          req.destroy();
          resolve();
        });
        req.on('error', () => undefined);
        req.end();
      });
      await eventually(() => p.handler.inFlight === 0, 5000, 'the abandoned watch to be aborted');
      const after = await text();
      const key = 'etcd_proxy_handled_total{code=200,method=GET}';
      assert.equal(count(after, 'etcd_proxy_handled_total', key) - count(before, 'etcd_proxy_handled_total', key), 2, 'both watches were answered by the member');
      const hist = 'etcd_proxy_handling_duration_seconds_count{method=GET}';
      assert.equal(count(after, 'etcd_proxy_handling_duration_seconds', hist), count(before, 'etcd_proxy_handling_duration_seconds', hist), 'no watch in the histogram');
      const aborted = 'etcd_v2_proxy_client_aborted_total{method=GET}';
      assert.equal(count(after, 'etcd_v2_proxy_client_aborted_total', aborted) - count(before, 'etcd_v2_proxy_client_aborted_total', aborted), 1);
    });

    it('an embedder\'s own registry: the proxy\'s metrics beside the application\'s; retries and 501s counted with their label', async () => {
      const registry = new Registry();
      const mine = new Counter({ name: 'app_things_total', help: 'Things.', registers: [registry] });
      mine.inc(3);
      const dead = `http://127.0.0.1:${await freePort()}`;
      const balancer = new EndpointBalancer({
        endpoints: [dead, m.clientUrl],
        strategy: { name: 'dead-first', pick: (c) => c.find((e) => e.url === dead) ?? c[0]! },
        leaderWrites: false,
      });
      const handler = new V2ProxyHandler({ balancer, mode: 'readonly' });
      const grpc = new GrpcForwarder({ balancer, mode: 'readonly' });
      const metrics = new ProxyMetrics({ handler, balancer, registry, grpc });
      const server = createServer(handler.handle);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
      onCleanup(() => new Promise<void>((resolve) => {
        metrics.close();
        handler.close();
        grpc.close();
        balancer.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      assert.equal((await http(`${url}/v2/keys/`)).status, 200);
      assert.equal((await http(`${url}/v2/keys/x`, { method: 'PUT', body: form({ value: 'no' }) })).status, 501);
      const families = parseMetrics(await registry.metrics(), '');
      assert.equal(families.get('app_things_total')!.samples.get('app_things_total{}'), 3);
      const dropped = families.get('etcd_proxy_dropped_total')!.samples;
      assert.equal(dropped.get('etcd_proxy_dropped_total{method=GET,proxying_error=failed_sending_request}'), 1, 'the attempt on the dead endpoint');
      assert.equal(dropped.get('etcd_proxy_dropped_total{method=GET,proxying_error=failed_getting_response}'), undefined, 'the request itself was answered');
      assert.equal(dropped.get('etcd_proxy_dropped_total{method=PUT,proxying_error=readonly}'), 1);
      assert.equal(families.get('etcd_proxy_handled_total')!.samples.get('etcd_proxy_handled_total{code=200,method=GET}'), 1);
      assert.equal(families.get('etcd_v2_proxy_available_endpoints')!.samples.get('etcd_v2_proxy_available_endpoints{}'), 1);
      assert.equal(families.get('etcd_v2_proxy_endpoints')!.samples.get('etcd_v2_proxy_endpoints{}'), 2);
      const counted = ['request', 'forwarded', 'retried', 'dropped', 'clientAborted', 'hedged'] as const;
      assert.deepEqual(counted.map((e) => handler.listenerCount(e)), [1, 1, 1, 1, 1, 1], 'one listener of each event the metrics count');
      assert.deepEqual((['call', 'finished', 'dropped', 'retried'] as const).map((e) => grpc.listenerCount(e)), [1, 1, 1, 1]);
      metrics.close();
      assert.equal(registry.getSingleMetric('etcd_proxy_requests_total'), undefined, 'close() takes them out');
      assert.deepEqual(counted.map((e) => handler.listenerCount(e)), [0, 0, 0, 0, 0, 0], 'and their listeners off the handler');
      assert.deepEqual((['call', 'finished', 'dropped', 'retried'] as const).map((e) => grpc.listenerCount(e)), [0, 0, 0, 0], 'and off the gRPC forwarder');
      assert.ok(registry.getSingleMetric('app_things_total') !== undefined, 'and leaves the application\'s');
    });
  });
});

describe(`readiness: GET ${PROXY_READY_PATH}`, { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  before(async () => {
    m = await member();
  });
  after(cleanup);

  it('answers from memory: 200 with the endpoints, members and last refresh; HEAD too; not forwarded', async () => {
    for (const mode of ['readwrite', 'readonly'] as const) {
      const p = await proxy({ mode, initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir() });
      let forwarded = 0;
      p.handler.on('forwarded', () => forwarded++);
      const res = await http(`${p.url}${PROXY_READY_PATH}`);
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-type'], 'application/json');
      assert.equal(res.headers['cache-control'], 'no-store');
      const report = res.json() as ProxyReadiness;
      assert.deepEqual({ ...report, lastRefresh: undefined, lastRefreshAgeMs: undefined }, {
        ready: true,
        availableEndpoints: 1,
        endpoints: 1,
        members: 1,
        lastRefresh: undefined,
        lastRefreshAgeMs: undefined,
        stale: false,
        closing: false,
      });
      assert.ok(Math.abs(Date.parse(report.lastRefresh!) - Date.now()) < 60000, report.lastRefresh!);
      assert.ok(report.lastRefreshAgeMs! >= 0 && report.lastRefreshAgeMs! < 60000);
      const head = await http(`${p.url}${PROXY_READY_PATH}`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.body, '');
      assert.equal((await http(`${p.url}${PROXY_READY_PATH}`, { method: 'POST' })).status, 405);
      assert.equal(forwarded, 0);
      // GET /health, by contrast, is the cluster's answer, forwarded as etcd's proxy does.
      const health = await http(`${p.url}/health`);
      assert.equal(health.status, 200);
      assert.deepEqual(health.json(), (await http(`${m.clientUrl}/health`)).json());
      assert.equal(forwarded, 1);
      // The member does not know this path: it is the proxy's own.
      assert.equal((await http(`${m.clientUrl}${PROXY_READY_PATH}`)).status, 404);
    }
  });

  it('503 and ready: false while no endpoint is known (an embedded handler without a resolver)', async () => {
    const balancer = new EndpointBalancer();
    const handler = new V2ProxyHandler({ balancer });
    const url = await serveHandler(handler, balancer);
    const res = await http(`${url}${PROXY_READY_PATH}`);
    assert.equal(res.status, 503);
    assert.deepEqual(res.json(), {
      ready: false,
      availableEndpoints: 0,
      endpoints: 0,
      members: null,
      lastRefresh: null,
      lastRefreshAgeMs: null,
      stale: null,
      closing: false,
    });
  });
});
