import type { IncomingMessage, ServerResponse } from 'node:http';
import type { EventEmitter } from 'eventemitter3';
import { Gauge, Registry } from 'prom-client';
import type { Metric, RegistryContentType } from 'prom-client';
import type { EndpointBalancer } from '../balancer/endpoint-balancer.js';
import { InvalidOptionError } from '../errors.js';
import type { ClientAbortedEvent, DropReason, DroppedEvent, ForwardedEvent, HedgedEvent, HedgeOutcome, RetriedEvent } from '../handler/proxy-events.js';
import type { MembershipView, V2ProxyHandler } from '../handler/v2-proxy-handler.js';
import { TallyCounter, TallyHistogram } from './tally-metrics.js';
import { PROXY_READY_PATH } from '../handler/v2-proxy-handler.js';
import { balancerValue, describe, signalOption } from '../validate-options.js';
import type { GrpcForwarder } from '../grpc-forwarding/grpc-forwarder.js';
import type { GrpcDropReason, GrpcDroppedEvent, GrpcFinishedEvent, GrpcRetriedEvent } from '../grpc-forwarding/grpc-events.js';
import { routeOf } from '../grpc-forwarding/grpc-routes.js';
import type { GrpcRoute } from '../grpc-forwarding/grpc-routes.js';
import { grpcCodeName } from '../grpc-forwarding/grpc-status.js';

/**
 * Prometheus metrics of the proxy, under etcd's own proxy metric names and
 * labels so that dashboards built for `etcd --proxy on` keep working, fed by
 * the handler's events (nothing is added to the request path but a counter
 * increment per event), plus gauges read at scrape time.
 */

/**
 * The path `createProxy` serves the metrics on, on its client listeners, as
 * etcd's proxy does.
 * @public
 */
export const METRICS_PATH = '/metrics';

/**
 * `proxying_error` label values of `etcd_proxy_dropped_total`. The first
 * three are etcd's:
 *
 * - `zero_endpoints`: no endpoint was known (503).
 * - `failed_sending_request`: one attempt on one endpoint failed; counted
 *   once per failed attempt, as etcd counts each member it tried.
 * - `failed_getting_response`: the request ended without a member's answer
 *   (502, or 504 for a timed-out write), counted once per request.
 *
 * The others are answers etcd's proxy does not count:
 *
 * - `readonly`: a write to a readonly proxy (501; etcd refuses it before counting).
 * - `body_too_large`: the body was over `maxBodyBytes` (413).
 * - `loop_detected`: the request came back through this proxy (508).
 * - `shutting_down`: the proxy was closing (503).
 * - `response_cut_short`: a member's response broke off after it had started.
 * @public
 */
export type ProxyingError =
  | 'zero_endpoints'
  | 'failed_sending_request'
  | 'failed_getting_response'
  | 'readonly'
  | 'body_too_large'
  | 'loop_detected'
  | 'shutting_down'
  | 'response_cut_short';

const DROP_LABEL: Record<DropReason, ProxyingError> = {
  'zero-endpoints': 'zero_endpoints',
  'failed-sending': 'failed_getting_response',
  'timeout': 'failed_getting_response',
  'failed-response': 'response_cut_short',
  'readonly': 'readonly',
  'body-too-large': 'body_too_large',
  'loop': 'loop_detected',
  'shutting-down': 'shutting_down',
};

/**
 * etcd's buckets for `etcd_proxy_handling_duration_seconds`: 0.5 ms doubling
 * 13 times up to 2.048 s, written out so that the `le` labels are the same
 * strings etcd's proxy shows.
 */
const DURATION_BUCKETS = [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048];

/** go-grpc-prometheus's buckets for `grpc_server_handling_seconds` (Prometheus' default ones), as etcd members and grpc-proxy show them. */
const GRPC_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Options of {@link ProxyMetrics}.
 * @public
 */
export interface ProxyMetricsOptions {
  /** The handler whose request events are counted. */
  handler: V2ProxyHandler;
  /** For the endpoint gauges. Default: none (those gauges are left out). */
  balancer?: EndpointBalancer;
  /** For the membership gauges, e.g. a {@link ClusterResolver}. Default: none (those gauges are left out). */
  resolver?: MembershipView;
  /** The forwarder of v3 clients' gRPC calls whose calls are counted (the `grpc_server_*` metrics). Default: none (those are left out). */
  grpc?: GrpcForwarder;
  /**
   * The prom-client registry to register the metrics in, e.g. one that also
   * holds your application's metrics or Node's default metrics
   * (`collectDefaultMetrics({ register })`). One ProxyMetrics per registry.
   * Default: a new `Registry`.
   */
  registry?: Registry<RegistryContentType>;
  /** Aborting it closes the metrics, as {@link ProxyMetrics.close} does. */
  signal?: AbortSignal;
}

/**
 * Counts a {@link V2ProxyHandler}'s requests in Prometheus metrics with the
 * names and labels of `etcd --proxy on`:
 *
 * - `etcd_proxy_requests_total{method}`: requests received (not those the
 *   proxy answers from memory: `/v2/config/local/proxy`, `/proxy/ready`, `/metrics`).
 * - `etcd_proxy_handled_total{method,code}`: requests a member answered, by
 *   the member's status code.
 * - `etcd_proxy_dropped_total{method,proxying_error}`: see {@link ProxyingError}.
 * - `etcd_proxy_handling_duration_seconds{method}`: time to the member's
 *   response headers, watches (`wait=true`) left out, with etcd's buckets.
 *
 * plus this library's own (not in etcd): `etcd_v2_proxy_client_aborted_total{method}`,
 * `etcd_v2_proxy_hedged_reads_total{outcome}` (reads that waited past the
 * hedge delay, by {@link HedgeOutcome} with `_` for `-`: `won`, `lost`,
 * `failed` and `cancelled` were sent to a second member, `no_budget` and
 * `no_endpoint` were not), and the gauges `etcd_v2_proxy_hedge_delay_seconds`,
 * `etcd_v2_proxy_endpoints`, `etcd_v2_proxy_available_endpoints`,
 * `etcd_v2_proxy_suspected_endpoints`, `etcd_v2_proxy_members`,
 * `etcd_v2_proxy_membership_stale` and
 * `etcd_v2_proxy_membership_last_refresh_timestamp_seconds`.
 *
 * With a {@link GrpcForwarder} (`grpc`), v3 clients' calls are counted under
 * the names etcd members and `etcd grpc-proxy` use (go-grpc-prometheus), with
 * labels `grpc_type`, `grpc_service` and `grpc_method` (`unknown` for a
 * method that is not etcd's): `grpc_server_started_total`,
 * `grpc_server_handled_total{grpc_code}` (the member's status, or the
 * proxy's own: `Unavailable` when no member could be reached or its
 * connection broke, `Canceled` for a client's cancellation),
 * `grpc_server_handling_seconds` (unary calls, arrival to end, Prometheus'
 * default buckets), plus this library's
 * `etcd_v2_proxy_grpc_dropped_total{grpc_service,grpc_method,reason}`
 * (calls the proxy ended itself, by {@link GrpcDropReason} with `_` for `-`,
 * and `failed_attempt` for each member that could not be reached).
 *
 * The counters and the histogram are kept in tallies the registry reads at
 * scrape time, rendered exactly as prom-client's own; `getSingleMetric()`
 * on the registry returns objects with prom-client's `get()` and `reset()`
 * for them, not `Counter` or `Histogram` instances.
 * @public
 */
export class ProxyMetrics {
  /** The registry the metrics are in. */
  readonly registry: Registry<RegistryContentType>;
  /**
   * Answers `GET`/`HEAD` with the registry's metrics in the Prometheus text
   * format, whatever the path (mount it where you want; `createProxy` serves
   * it on {@link METRICS_PATH}). Bound: pass it around freely.
   */
  readonly handle: (req: IncomingMessage, res: ServerResponse) => void;
  private readonly owned: Metric[] = [];
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.close();
  private readonly detach: Array<() => void> = [];
  private closed = false;

  constructor(options: ProxyMetricsOptions) {
    if (options === null || typeof options !== 'object') {
      throw new InvalidOptionError('options', `expected an object with a handler, got ${describe(options)}`);
    }
    const { handler, balancer, resolver, grpc } = options;
    if (handler === null || typeof handler !== 'object' || typeof handler.handle !== 'function' || typeof handler.on !== 'function') {
      throw new InvalidOptionError('handler', `expected a V2ProxyHandler, got ${describe(handler)}`);
    }
    if (balancer !== undefined) balancerValue(balancer);
    if (resolver !== undefined && (resolver === null || typeof resolver !== 'object' || !('lastRefresh' in resolver))) {
      throw new InvalidOptionError('resolver', `expected a ClusterResolver, got ${describe(resolver)}`);
    }
    const registry: Registry<RegistryContentType> = options.registry ?? new Registry();
    if (registry === null || typeof registry !== 'object' || typeof registry.registerMetric !== 'function' || typeof registry.metrics !== 'function') {
      throw new InvalidOptionError('registry', `expected a prom-client Registry, got ${describe(registry)}`);
    }
    if (grpc !== undefined && (grpc === null || typeof grpc !== 'object' || typeof grpc.handle !== 'function' || typeof grpc.on !== 'function')) {
      throw new InvalidOptionError('grpc', `expected a GrpcForwarder, got ${describe(grpc)}`);
    }
    this.signal = signalOption(options.signal);
    this.registry = registry;

    // Updated per request or per failure: tallies (src/metrics/tally-metrics.ts), read by the registry at scrape time.
    const requests = this.tally(new TallyCounter('etcd_proxy_requests_total', 'Requests received by the v2 proxy, by method.'));
    const handled = this.tally(new TallyCounter('etcd_proxy_handled_total', 'Requests answered by a member, by method and the member\'s status code.'));
    const dropped = this.tally(
      new TallyCounter('etcd_proxy_dropped_total', 'Requests (or attempts) the proxy could not get a member\'s answer for, by method and cause.'),
    );
    const duration = this.tally(
      new TallyHistogram(
        'etcd_proxy_handling_duration_seconds',
        'Seconds from a request\'s arrival to the member\'s response headers, watches excluded, by method.',
        DURATION_BUCKETS,
      ),
    );
    const aborted = this.tally(
      new TallyCounter('etcd_v2_proxy_client_aborted_total', 'Requests whose client went away before the response was complete, by method.'),
    );
    const hedged = this.tally(
      new TallyCounter(
        'etcd_v2_proxy_hedged_reads_total',
        'Reads with no response head after the hedge delay, by outcome (won, lost, failed, cancelled: sent to a second member; no_budget, no_endpoint: not sent).',
      ),
    );
    this.add(
      new Gauge({
        name: 'etcd_v2_proxy_hedge_delay_seconds',
        help: 'The hedge delay now (0: hedging off).',
        registers: [],
        collect() {
          this.set(typeof handler.hedgeDelay === 'number' ? handler.hedgeDelay / 1000 : 0);
        },
      }),
    );
    if (balancer !== undefined) {
      this.add(new Gauge({ name: 'etcd_v2_proxy_endpoints', help: 'Client URLs known, available or not.', registers: [], collect() { this.set(balancer.endpoints.length); } }));
      this.add(new Gauge({ name: 'etcd_v2_proxy_available_endpoints', help: 'Client URLs not marked down.', registers: [], collect() { this.set(balancer.available.length); } }));
      this.add(
        new Gauge({
          name: 'etcd_v2_proxy_suspected_endpoints',
          help: 'Client URLs suspected of being stuck (they lost a hedged read): reads avoid them until they answer.',
          registers: [],
          collect() {
            this.set(balancer.endpoints.filter((e) => e.suspected).length);
          },
        }),
      );
    }
    if (resolver !== undefined) {
      this.add(new Gauge({ name: 'etcd_v2_proxy_members', help: 'Members in the latest member list.', registers: [], collect() { this.set(resolver.snapshot?.members.length ?? 0); } }));
      this.add(new Gauge({ name: 'etcd_v2_proxy_membership_stale', help: '1 while no peer answers /members and the last known members are used.', registers: [], collect() { this.set(resolver.stale ? 1 : 0); } }));
      this.add(
        new Gauge({
          name: 'etcd_v2_proxy_membership_last_refresh_timestamp_seconds',
          help: 'Unix time of the latest successful /members answer (0: none yet).',
          registers: [],
          collect() {
            this.set((resolver.lastRefresh?.getTime() ?? 0) / 1000);
          },
        }),
      );
    }
    const attachGrpc = grpc === undefined ? undefined : this.countGrpc(grpc);
    const taken = this.owned.map((m) => metricName(m)).filter((name) => registry.getSingleMetric(name) !== undefined);
    if (taken.length > 0) {
      throw new InvalidOptionError('registry', `already has ${taken.join(', ')}: use one ProxyMetrics per registry (close() the other first)`);
    }
    for (const m of this.owned) registry.registerMetric(m);
    attachGrpc?.();

    // A series is looked up once per label set, then counted with an addition.
    const requestsOf = memo((method: string) => requests.cell({ method }));
    const handledOf = memo((method: string) => memo((code: number) => handled.cell({ method, code: String(code) })));
    const durationOf = memo((method: string) => duration.cell({ method }));
    const droppedOf = memo((method: string) => memo((error: ProxyingError) => dropped.cell({ method, proxying_error: error })));
    const abortedOf = memo((method: string) => aborted.cell({ method }));
    const hedgedOf = memo((outcome: HedgeOutcome) => hedged.cell({ outcome: outcome.replace('-', '_') }));
    const onRequest = (method: string, url: string): void => {
      if (isLocalPath(url)) return;
      requestsOf(method).value++;
    };
    const onForwarded = (e: ForwardedEvent): void => {
      handledOf(e.method)(e.status).value++;
      if (!e.watch) durationOf(e.method).observe(e.durationMs / 1000);
    };
    const onRetried = (e: RetriedEvent): void => {
      droppedOf(e.method)('failed_sending_request').value++;
    };
    const onDropped = (e: DroppedEvent): void => {
      // As etcd: the last failed attempt counts as failed_sending_request, the request as failed_getting_response.
      if (e.reason === 'failed-sending' || e.reason === 'timeout') droppedOf(e.method)('failed_sending_request').value++;
      droppedOf(e.method)(DROP_LABEL[e.reason]).value++;
    };
    const onAborted = (e: ClientAbortedEvent): void => {
      abortedOf(e.method).value++;
    };
    const onHedged = (e: HedgedEvent): void => {
      hedgedOf(e.outcome).value++;
    };
    this.listen(handler, { request: onRequest, forwarded: onForwarded, retried: onRetried, dropped: onDropped, clientAborted: onAborted, hedged: onHedged });

    this.handle = (req, res) => this.serve(req, res);
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (this.signal?.aborted) this.close();
  }

  /** The gRPC calls' metrics (see the class's comment); the returned function starts feeding them from the forwarder's events. */
  private countGrpc(grpc: GrpcForwarder): () => void {
    const started = this.tally(new TallyCounter('grpc_server_started_total', 'gRPC calls of v3 clients received by the proxy.'));
    const handled = this.tally(new TallyCounter('grpc_server_handled_total', 'gRPC calls of v3 clients completed, by status code (the member\'s, or the proxy\'s own).'));
    const handling = this.tally(
      new TallyHistogram('grpc_server_handling_seconds', 'Seconds from a unary gRPC call\'s arrival to its end.', GRPC_DURATION_BUCKETS),
    );
    const dropped = this.tally(
      new TallyCounter('etcd_v2_proxy_grpc_dropped_total', 'gRPC calls the proxy ended itself, by reason; failed_attempt: a member that could not be reached.'),
    );
    const labels = (r: GrpcRoute): Record<string, string> => ({ grpc_type: r.type, grpc_service: r.service, grpc_method: r.method });
    const startedOf = memo((r: GrpcRoute) => started.cell(labels(r)));
    const handledOf = memo((r: GrpcRoute) => memo((code: number) => handled.cell({ ...labels(r), grpc_code: grpcCodeName(code) })));
    const handlingOf = memo((r: GrpcRoute) => handling.cell(labels(r)));
    const droppedOf = memo((r: GrpcRoute) => memo((reason: GrpcDropReason | 'failed-attempt') => dropped.cell({ grpc_service: r.service, grpc_method: r.method, reason: reason.replaceAll('-', '_') })));
    const onCall = (method: string): void => {
      startedOf(routeOf(method)).value++;
    };
    const onFinished = (e: GrpcFinishedEvent): void => {
      const route = routeOf(e.method);
      handledOf(route)(e.grpcStatus).value++;
      if (route.type === 'unary') handlingOf(route).observe(e.durationMs / 1000);
    };
    const onDropped = (e: GrpcDroppedEvent): void => {
      droppedOf(routeOf(e.method))(e.reason).value++;
    };
    const onRetried = (e: GrpcRetriedEvent): void => {
      droppedOf(routeOf(e.method))('failed-attempt').value++;
    };
    return () => this.listen(grpc, { call: onCall, finished: onFinished, dropped: onDropped, retried: onRetried });
  }

  /** Attaches `listeners` (event name to listener) to `emitter`; close() takes them off. */
  private listen<E extends EventEmitter.ValidEventTypes>(
    emitter: EventEmitter<E>,
    listeners: { [K in EventEmitter.EventNames<E>]?: EventEmitter.EventListener<E, K> },
  ): void {
    const pairs = Object.entries(listeners) as Array<[EventEmitter.EventNames<E>, EventEmitter.EventListener<E, EventEmitter.EventNames<E>>]>;
    for (const [name, fn] of pairs) emitter.on(name, fn);
    this.detach.push(() => {
      for (const [name, fn] of pairs) emitter.off(name, fn);
    });
  }

  /** The registry's metrics in the Prometheus text format. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  /**
   * Stops counting and removes this object's metrics from the registry
   * (other metrics in it stay). Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    for (const undo of this.detach) undo();
    for (const m of this.owned) {
      const name = metricName(m);
      if (this.registry.getSingleMetric(name) === m) this.registry.removeSingleMetric(name);
    }
  }

  private add<M extends Metric>(metric: M): M {
    this.owned.push(metric);
    return metric;
  }

  private tally<T extends TallyCounter | TallyHistogram>(metric: T): T {
    this.owned.push(metric.asMetric());
    return metric;
  }

  private serve(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
      res.end('Method Not Allowed\n');
      return;
    }
    this.registry.metrics().then(
      (text) => {
        if (res.destroyed) return;
        res.writeHead(200, { 'Content-Type': this.registry.contentType, 'Content-Length': Buffer.byteLength(text) });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: Error) => {
        if (res.destroyed || res.headersSent) return;
        const body = `collecting metrics failed: ${err.message}\n`;
        res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
      },
    );
  }
}

/** Paths answered from memory, which etcd's proxy does not count either. */
function isLocalPath(url: string): boolean {
  return url.startsWith('/v2/config/local/proxy') || url.startsWith(PROXY_READY_PATH) || url.startsWith(METRICS_PATH);
}

function metricName(metric: Metric): string {
  return (metric as unknown as { name: string }).name;
}

/** Caches `make(key)` per key. */
function memo<K, V>(make: (key: K) => V): (key: K) => V {
  const cache = new Map<K, V>();
  return (key) => {
    let value = cache.get(key);
    if (value === undefined) {
      value = make(key);
      cache.set(key, value);
    }
    return value;
  };
}
