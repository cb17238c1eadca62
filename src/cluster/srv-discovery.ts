import { lookup as systemLookup } from 'node:dns';
import type { LookupAddress, LookupOptions } from 'node:dns';
import { Resolver } from 'node:dns/promises';
import type { SrvRecord } from 'node:dns';
import { isIP } from 'node:net';
import type { LookupFunction } from 'node:net';
import createDebug from 'debug';
import { InvalidOptionError, SrvDiscoveryError } from '../errors.js';
import { describe, durationOption, signalOption } from '../validate-options.js';

const debug = createDebug('etcd-v2-proxy:srv');

/**
 * Options of {@link discoverSrv}.
 * @public
 */
export interface SrvDiscoveryOptions {
  /** The domain whose SRV records list the peers, e.g. `example.com`. etcd flag: `--discovery-srv`. Required. */
  domain: string;
  /**
   * Suffix of the SRV service names: `_etcd-server-ssl-<name>._tcp.<domain>`
   * and `_etcd-server-<name>._tcp.<domain>`. etcd flag: `--discovery-srv-name`.
   * Default: none.
   */
  serviceName?: string;
  /**
   * DNS servers to ask, `ip` or `ip:port` (`[ipv6]:port`), e.g.
   * `['127.0.0.1:5353']`; see node's `Resolver.setServers`. Not an etcd
   * flag (etcd asks the system's resolver). Default: the system's servers.
   */
  dnsServers?: readonly string[];
  /** ms for one DNS query; each is tried twice. Not an etcd flag. Default: 5000. */
  timeout?: number;
  /** Aborting it cancels the lookups. */
  signal?: AbortSignal;
}

/**
 * One SRV record that gave a peer URL.
 * @public
 */
export interface SrvPeer {
  /** The SRV name asked, e.g. `_etcd-server._tcp.example.com`. */
  readonly service: string;
  /** The record's target host, without the trailing dot. */
  readonly target: string;
  /** The record's port. */
  readonly port: number;
  /** The peer URL built from it: `https://` for `_etcd-server-ssl`, `http://` for `_etcd-server`. */
  readonly peerUrl: string;
}

/**
 * The peers DNS SRV records gave, as an `--initial-cluster` would list them.
 * @public
 */
export interface SrvCluster {
  /** The domain asked. */
  readonly domain: string;
  /** Every record that gave a peer, https ones first. */
  readonly peers: readonly SrvPeer[];
  /** Member name (`0`, `1`, ...: SRV records carry no names, etcd numbers them too) to its peer URL. */
  readonly members: ReadonlyMap<string, readonly string[]>;
  /** `0=https://host:port,1=http://host:port,...`, as etcd's `--initial-cluster`. */
  readonly initialCluster: string;
  /** Every peer URL, sorted, without duplicates. */
  readonly peerUrls: readonly string[];
}

/**
 * The SRV names etcd looks up for `domain` (etcd flag `--discovery-srv`),
 * https first, with `-<serviceName>` (`--discovery-srv-name`, default none).
 * @public
 */
export function srvServiceNames(domain: string, serviceName?: string): { https: string; http: string } {
  const suffix = serviceName === undefined || serviceName === '' ? '' : `-${serviceName}`;
  const bare = domain.replace(/\.$/, '');
  return { https: `_etcd-server-ssl${suffix}._tcp.${bare}`, http: `_etcd-server${suffix}._tcp.${bare}` };
}

/**
 * Checks `discoverySrv` eagerly: a DNS domain name, not a URL.
 * @throws {@link InvalidOptionError} naming `option`.
 * @internal
 */
export function parseSrvDomain(raw: unknown, option = 'discoverySrv'): string {
  if (typeof raw !== 'string' || raw === '') throw new InvalidOptionError(option, `expected a domain name such as example.com, got ${describe(raw)}`);
  if (raw.includes('://') || raw.includes('/')) throw new InvalidOptionError(option, `${describe(raw)} is a URL: give the domain alone, e.g. example.com`);
  if (!/^(?=.{1,253}\.?$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.?$/i.test(raw)) {
    throw new InvalidOptionError(option, `${describe(raw)} is not a DNS domain name`);
  }
  return raw;
}

/**
 * Checks `discoverySrvName` eagerly: letters, digits and dashes.
 * @throws {@link InvalidOptionError} naming `option`.
 * @internal
 */
export function parseSrvName(raw: unknown, option = 'discoverySrvName'): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (typeof raw !== 'string' || !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/i.test(raw)) {
    throw new InvalidOptionError(option, `expected letters, digits and dashes (the SRV service suffix), got ${describe(raw)}`);
  }
  return raw;
}

/**
 * Checks `dnsServers` eagerly and returns a resolver asking them.
 * @throws {@link InvalidOptionError} naming the bad entry.
 * @internal
 */
export function dnsResolver(servers: unknown, timeout = 5000, option = 'dnsServers'): Resolver {
  const resolver = new Resolver({ timeout, tries: 2 });
  if (servers === undefined) return resolver;
  if (!Array.isArray(servers) || servers.length === 0) {
    throw new InvalidOptionError(option, `expected a non-empty array of "ip" or "ip:port", got ${describe(servers)}`);
  }
  servers.forEach((s: unknown, i) => {
    try {
      if (typeof s !== 'string') throw new Error(`${describe(s)} is not a string`);
      // node's setServers aborts the process (a failed C++ assertion) on port 0 and wraps ports above 65535.
      const port = /^(?:\[[^\]]*\]|[^:]*):(\d+)$/.exec(s)?.[1];
      if (port !== undefined && !(Number(port) >= 1 && Number(port) <= 65535)) throw new Error(`port ${port} is not 1-65535`);
      resolver.setServers([s]);
    } catch (err) {
      throw new InvalidOptionError(`${option}[${i}]`, `expected "ip" or "ip:port" ("[ipv6]:port"), got ${describe(s)} (${(err as Error).message})`);
    }
  });
  resolver.setServers(servers as string[]);
  return resolver;
}

/**
 * Finds the peers from DNS SRV records, as etcd's `--discovery-srv` does:
 * looks up `_etcd-server-ssl._tcp.<domain>` (https peers) and
 * `_etcd-server._tcp.<domain>` (http peers), with `-<serviceName>` after
 * `etcd-server[-ssl]` when a service name is given, and builds each peer URL
 * from a record's target and port. Records of both names are used (etcd 3.4
 * drops the http ones when https ones exist, a bug fixed in 3.5).
 *
 * The URLs keep the target host names; to reach peers whose names only the
 * `dnsServers` know, give the resolver {@link createDnsLookup}.
 *
 * @throws {@link InvalidOptionError} for bad options (before any lookup).
 * @throws {@link SrvDiscoveryError} when neither name has a usable record,
 *   naming both names and what each lookup answered.
 * @public
 */
export async function discoverSrv(options: SrvDiscoveryOptions): Promise<SrvCluster> {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError('options', `expected an object with domain, got ${describe(options)}`);
  }
  const domain = parseSrvDomain(options.domain, 'domain');
  const serviceName = parseSrvName(options.serviceName, 'serviceName');
  const timeout = durationOption('timeout', options.timeout, 5000, 1);
  const resolver = dnsResolver(options.dnsServers, timeout);
  const signal = signalOption(options.signal);
  signal?.throwIfAborted();
  const onAbort = (): void => resolver.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  const names = srvServiceNames(domain, serviceName);
  const asked = [
    { service: names.https, scheme: 'https' },
    { service: names.http, scheme: 'http' },
  ] as const;
  let results: PromiseSettledResult<SrvRecord[]>[];
  try {
    results = await Promise.allSettled(asked.map((a) => resolver.resolveSrv(a.service)));
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  signal?.throwIfAborted();

  const peers: SrvPeer[] = [];
  const lookups: { name: string; answer: string }[] = [];
  asked.forEach((a, i) => {
    const result = results[i]!;
    if (result.status === 'rejected') {
      lookups.push({ name: a.service, answer: dnsErrorText(result.reason) });
      debug('%s: %s', a.service, dnsErrorText(result.reason));
      return;
    }
    const usable: string[] = [];
    const sorted = [...result.value].sort((x, y) => x.priority - y.priority || y.weight - x.weight);
    for (const record of sorted) {
      const target = record.name.replace(/\.$/, '');
      // A target of "." says the service is not offered here (RFC 2782).
      if (target === '' || record.port <= 0) continue;
      const host = isIP(target) === 6 ? `[${target}]` : target;
      const peerUrl = `${a.scheme}://${host}:${record.port}`;
      usable.push(`${target}:${record.port}`);
      peers.push({ service: a.service, target, port: record.port, peerUrl });
    }
    lookups.push({ name: a.service, answer: usable.length === 0 ? 'no usable record (target ".")' : `${usable.length} record(s): ${usable.join(', ')}` });
    debug('%s: %o', a.service, usable);
  });
  if (peers.length === 0) {
    throw new SrvDiscoveryError(domain, lookups, options.dnsServers === undefined ? undefined : resolver.getServers());
  }
  const members = new Map<string, string[]>();
  const seen = new Set<string>();
  for (const p of peers) {
    if (seen.has(p.peerUrl)) continue;
    seen.add(p.peerUrl);
    members.set(String(members.size), [p.peerUrl]);
  }
  const initialCluster = [...members].map(([name, urls]) => `${name}=${urls[0]}`).join(',');
  return { domain, peers, members, initialCluster, peerUrls: [...seen].sort() };
}

/**
 * A `lookup` function (for node:net and node:http) that resolves host names
 * through the given DNS servers (A and AAAA records) and falls back to the
 * system's `dns.lookup` for names they do not know. Use it when peer host
 * names from SRV records are only known to those servers (split-horizon DNS).
 * `createProxy` uses it for the peers when `dnsServers` is given.
 * @param servers - `ip` or `ip:port` (`[ipv6]:port`), as `dnsServers`.
 * @param timeout - ms for one query (tried twice). Default: 5000.
 * @throws {@link InvalidOptionError} naming a bad entry of `servers`.
 * @public
 */
export function createDnsLookup(servers: readonly string[], timeout = 5000): LookupFunction {
  const resolver = dnsResolver(servers, timeout);
  const lookup = (hostname: string, options: LookupOptions, callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void): void => {
    const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : (options.family ?? 0);
    const v4 = family === 6 ? Promise.resolve([]) : resolver.resolve4(hostname).catch(() => [] as string[]);
    const v6 = family === 4 ? Promise.resolve([]) : resolver.resolve6(hostname).catch(() => [] as string[]);
    void Promise.all([v4, v6]).then(([a, aaaa]) => {
      const found: LookupAddress[] = [...a.map((address) => ({ address, family: 4 })), ...aaaa.map((address) => ({ address, family: 6 }))];
      if (found.length === 0) {
        systemLookup(hostname, { ...options, all: options.all === true } as LookupOptions & { all: boolean }, callback as never);
        return;
      }
      if (options.all === true) callback(null, found);
      else callback(null, found[0]!.address, found[0]!.family);
    });
  };
  return lookup as unknown as LookupFunction;
}

function dnsErrorText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const meaning: Record<string, string> = {
    ENOTFOUND: 'no such name (NXDOMAIN)',
    ENODATA: 'no SRV records',
    EREFUSED: 'the server refused the query',
    ETIMEOUT: 'no answer (timeout)',
    ECONNREFUSED: 'connection refused',
    ESERVFAIL: 'server failure (SERVFAIL)',
    ECANCELLED: 'cancelled',
  };
  if (code !== undefined && meaning[code] !== undefined) return `${code}, ${meaning[code]}`;
  return err instanceof Error ? err.message : String(err);
}
