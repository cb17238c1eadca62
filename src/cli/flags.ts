/**
 * etcd's proxy flags, parsed the way etcd (Go's flag package) reads them:
 * `--flag value`, `--flag=value`, `-flag value`. Commands copied from web
 * pages often carry a typographic dash (`–proxy on`): that is read as `--`
 * with a warning. Anything else that is not a known flag is an error naming it.
 *
 * The same settings can come from etcd's environment variables and config
 * file (sources.ts): {@link resolveSettings} checks them wherever they come
 * from, and its messages name the flag, variable or key the user wrote.
 */
import { isIP } from 'node:net';
import { parseInitialCluster } from '../cluster/initial-cluster.js';
import { MAX_PIPELINE_READS } from '../handler/v2-proxy-handler.js';
import type { CreateProxyOptions } from '../create-proxy.js';

/** A bad command line: the message is one line naming the flag and what is wrong. */
export class FlagError extends Error {
  override name = 'FlagError';
}

/** Where a setting came from: the command line, an `ETCD_*` environment variable or a key of the `--config-file`. */
export type SettingSource = { kind: 'flag' } | { kind: 'env'; variable: string } | { kind: 'file'; path: string; key: string };

/** One setting, by flag name, as the user wrote it. */
export interface Setting {
  value: string;
  source: SettingSource;
}

export interface ParsedFlags {
  help: boolean;
  version: boolean;
  /** Warnings to print (typographic dashes, ignored variables and keys...). */
  warnings: string[];
  name: string;
  /** The config file the settings were read from (`--config-file` or ETCD_CONFIG_FILE), if any. */
  configFile?: string;
  /** How the user wrote the setting of `flag` (`--proxy`, `ETCD_PROXY`, `/etc/etcd/etcd.conf.yml: proxy`), for messages. */
  describe(flag: string): string;
  options: CreateProxyOptions & { dataDir: string; listenClientUrls: string[] };
}

interface FlagSpec {
  group: 'Member' | 'Clustering' | 'Proxy' | 'Security';
  /** Not a setting of the proxy (`--config-file`): read before the others, never from the config file itself. */
  meta?: true;
  /** A Go bool flag: `--flag`, `--flag=true` or `--flag=false`; it takes no separate value. */
  boolean?: true;
  value: string;
  default: string;
  help: string;
}

/** The flags, in `etcd --help` groups, with etcd's defaults. */
export const FLAGS: Record<string, FlagSpec> = {
  'config-file': {
    group: 'Member',
    meta: true,
    value: 'path',
    default: '',
    help: "etcd's YAML config file (etcd.conf.yml keys, client-transport-security: included). When given, other flags and ETCD_* variables are ignored, with a warning each, as in etcd.",
  },
  'name': { group: 'Member', value: 'name', default: 'default', help: 'Human-readable name; the default data dir is <name>.etcd.' },
  'data-dir': { group: 'Member', value: 'path', default: '${name}.etcd', help: 'Where the proxy keeps the cluster file (proxy/cluster).' },
  'listen-client-urls': { group: 'Member', value: 'urls', default: 'http://localhost:2379', help: 'Comma-separated URLs to serve v2 clients on.' },
  'initial-cluster': { group: 'Clustering', value: 'name=url,...', default: 'default=http://localhost:2380', help: "The cluster's members, as their peer URLs. A cluster file in the data dir wins." },
  'discovery': { group: 'Clustering', value: 'url', default: '', help: "Discovery URL (etcd's v2 discovery protocol) to learn the cluster from, instead of --initial-cluster." },
  'discovery-proxy': { group: 'Clustering', value: 'url', default: '', help: 'HTTP proxy for the discovery traffic.' },
  'discovery-srv': { group: 'Clustering', value: 'domain', default: '', help: 'Domain whose DNS SRV records (_etcd-server-ssl._tcp, _etcd-server._tcp) list the peers.' },
  'discovery-srv-name': { group: 'Clustering', value: 'name', default: '', help: 'Suffix of the SRV names: _etcd-server-<name>._tcp.<domain>.' },
  'discovery-srv-dns-servers': {
    group: 'Clustering',
    value: 'ip[:port],...',
    default: '',
    help: "Not an etcd flag (etcd asks the system's resolver): comma-separated DNS servers (ip, ip:port or [ipv6]:port) to ask for the --discovery-srv records and the peers' host names. Unset: the system's resolver.",
  },
  'proxy': { group: 'Proxy', value: 'on|readonly', default: 'on', help: "'on' forwards everything; 'readonly' forwards GET and HEAD and answers other methods with 501." },
  'proxy-failure-wait': { group: 'Proxy', value: 'ms', default: '5000', help: 'Time an endpoint is skipped after a failure.' },
  'proxy-refresh-interval': { group: 'Proxy', value: 'ms', default: '30000', help: 'Time between membership refreshes.' },
  'proxy-dial-timeout': { group: 'Proxy', value: 'ms', default: '1000', help: 'Time allowed to connect to an endpoint.' },
  'proxy-write-timeout': { group: 'Proxy', value: 'ms', default: '5000', help: 'Time allowed to write a request to an endpoint (0 = no limit).' },
  'proxy-read-timeout': { group: 'Proxy', value: 'ms', default: '0', help: 'Time an endpoint may stay silent after a request (0 = no limit, for watches).' },
  'pipeline-reads': {
    group: 'Proxy',
    value: 'n',
    default: '1',
    help: 'Not an etcd flag: most plain key reads (GET under /v2/keys, no wait, no quorum) arriving together that are pipelined on one connection to a member (1 = no pipelining; 8 saves CPU under load).',
  },
  'hedge-delay': {
    group: 'Proxy',
    value: 'ms|auto',
    default: 'auto',
    help: 'Not an etcd flag: a plain read (GET or HEAD, no wait) with no answer after this long is sent to a second member as well, the first answer wins (0 = off; auto = twice the p99 of recent answers, 10 to 500 ms; at most 10 % of reads).',
  },
  'backend': {
    group: 'Proxy',
    value: 'v2|v3',
    default: 'v2',
    help: "Not an etcd flag. 'v2' forwards v2 requests to the members' v2 API (etcd 3.4, 3.5 with --enable-v2); 'v3' serves the v2 API from the cluster's v3 API (etcd 3.5, 3.6). Every proxy of a cluster must use the same.",
  },
  'v3-prefix': {
    group: 'Proxy',
    value: 'prefix',
    default: '/v2',
    help: "Not an etcd flag; with --backend v3: the v3 key prefix of the v2 tree, in the layout of etcd's --experimental-enable-v2v3 <prefix>.",
  },
  'v3-user': {
    group: 'Proxy',
    value: 'name:password',
    default: '',
    help: 'Not an etcd flag; with --backend v3 on a cluster with v3 auth on: the v3 user the proxy signs in as (a client certificate: --cert-file/--key-file).',
  },
  'v3-clients': {
    group: 'Proxy',
    value: 'forward|refuse',
    default: 'forward',
    help: "Not an etcd flag. 'forward': etcd v3 (gRPC) clients on the same listeners are forwarded to the members; 'refuse': they are answered at once with UNIMPLEMENTED (the v2 API only).",
  },
  'cert-file': { group: 'Security', value: 'path', default: '', help: 'PEM certificate of the https:// listeners; also shown to members on https:// client URLs.' },
  'key-file': { group: 'Security', value: 'path', default: '', help: 'PEM key of --cert-file.' },
  'client-cert-auth': { group: 'Security', value: 'bool', default: 'false', boolean: true, help: 'Refuse https clients without a certificate signed by --trusted-ca-file, at the handshake.' },
  'trusted-ca-file': { group: 'Security', value: 'path', default: '', help: "CA of the clients' certificates (turns on --client-cert-auth, as in etcd) and of the members' client URLs." },
  'peer-cert-file': { group: 'Security', value: 'path', default: '', help: 'PEM client certificate for https:// peer URLs (/members), and client URLs when --cert-file is not set.' },
  'peer-key-file': { group: 'Security', value: 'path', default: '', help: 'PEM key of --peer-cert-file.' },
  'peer-trusted-ca-file': { group: 'Security', value: 'path', default: '', help: "CA of the peers' certificates." },
  'peer-client-cert-auth': { group: 'Security', value: 'bool', default: 'false', boolean: true, help: 'Accepted for etcd command lines and ignored: a proxy has no peer listener.' },
  'insecure-skip-tls-verify': { group: 'Security', value: 'bool', default: 'false', boolean: true, help: "Do not verify the cluster's certificates (tests only: anyone on the path can read and change the traffic)." },
  'cors': {
    group: 'Security',
    value: 'origins',
    default: '*',
    help: "Comma-separated origins allowed by CORS, or '*' (empty: '*', as in etcd). The proxy's own answers and the forwarded ones carry the proxy's CORS headers (the members' are replaced, never doubled).",
  },
};

const BOOLEAN = new Set(['help', 'h', 'version']);
const TYPOGRAPHIC = /^[\u2010-\u2015\u2212]+/;

/** What the command line says, before any check of the values. */
export interface Argv {
  help: boolean;
  version: boolean;
  /** Typographic dashes read as `--`. */
  warnings: string[];
  /** The flags given (bool flags as `true`/`false`), by name. */
  values: Map<string, string>;
}

/** Reads argv (without node and the script) into flag values. Throws {@link FlagError}. */
export function parseArgv(argv: readonly string[]): Argv {
  const warnings: string[] = [];
  const values = new Map<string, string>();
  let help = false;
  let version = false;
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i]!;
    const typo = TYPOGRAPHIC.exec(arg);
    if (typo !== null) {
      const fixed = `--${arg.slice(typo[0].length)}`;
      warnings.push(`warning: "${arg}" starts with a typographic dash (${[...typo[0]].map((c) => `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`).join(' ')}); reading it as "${fixed}"`);
      arg = fixed;
    }
    if (!arg.startsWith('-') || arg === '-' || arg === '--') {
      throw new FlagError(`unexpected argument "${arg}": flags are --name value or --name=value (see --help)`);
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const flag = eq === -1 ? body : body.slice(0, eq);
    if (BOOLEAN.has(flag)) {
      if (eq !== -1) throw new FlagError(`--${flag} takes no value`);
      if (flag === 'version') version = true;
      else help = true;
      continue;
    }
    if (!Object.hasOwn(FLAGS, flag)) throw new FlagError(`unknown flag --${flag} (see --help)`);
    let value: string;
    if (FLAGS[flag]!.boolean === true) {
      // Go's bool flags: --flag alone is true; a value needs "=" (strconv.ParseBool's spellings).
      value = eq === -1 ? 'true' : goBool(`--${flag}`, body.slice(eq + 1));
    } else if (eq !== -1) value = body.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('-') && next.length > 1) || TYPOGRAPHIC.test(next)) {
        throw new FlagError(`--${flag} needs a value (${FLAGS[flag]!.value})`);
      }
      value = next;
      i++;
    }
    // As etcd (Go's flag package): the last one counts. Said, since a wrapper may have meant the first.
    if (values.has(flag)) warnings.push(`warning: --${flag} is given twice ("${values.get(flag)}", then "${value}"): the last is used, as in etcd`);
    values.set(flag, value);
  }
  return { help, version, warnings, values };
}

/** strconv.ParseBool's spellings, as `true` or `false`. */
export function goBool(label: string, raw: string): 'true' | 'false' {
  if (/^(1|t|T|TRUE|true|True)$/.test(raw)) return 'true';
  if (/^(0|f|F|FALSE|false|False)$/.test(raw)) return 'false';
  throw new FlagError(`${label}: "${raw}" is not true or false`);
}

/** How the user wrote the setting of `flag`, given where it came from (`--flag` when it was not given at all). */
export function settingName(flag: string, source: SettingSource | undefined): string {
  if (source === undefined || source.kind === 'flag') return `--${flag}`;
  if (source.kind === 'env') return source.variable;
  return `${source.path}: ${source.key}`;
}

/** The variable etcd reads for `flag` (`proxy-failure-wait` → `ETCD_PROXY_FAILURE_WAIT`). */
export function variableOf(flag: string): string {
  return `ETCD_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** A `name:password` value (the password may hold colons), or a FlagError naming `label`. */
export function nameAndPassword(label: string, raw: string): { name: string; password: string } {
  const colon = raw.indexOf(':');
  if (colon <= 0) throw new FlagError(`${label}: expected name:password`);
  return { name: raw.slice(0, colon), password: raw.slice(colon + 1) };
}

/** `flag` set to `value`, written the way settings are written in `source`'s kind (`--proxy on`, `ETCD_PROXY=on`, `proxy: on`). */
function spelled(flag: string, value: string, source: SettingSource | undefined): string {
  if (source === undefined || source.kind === 'flag') return `--${flag} ${value}`;
  if (source.kind === 'env') return `${variableOf(flag)}=${value}`;
  return `${flag}: ${value}`;
}

/**
 * Checks the settings, wherever they came from, and turns them into
 * createProxy options with etcd's defaults. Throws {@link FlagError}, whose
 * one-line message names the flag, variable or key as the user wrote it.
 */
export function resolveSettings(settings: ReadonlyMap<string, Setting>, warnings: string[] = [], configFile?: string): Omit<ParsedFlags, 'help' | 'version'> {
  const values = new Map<string, string>();
  for (const [flag, s] of settings) if (FLAGS[flag]?.meta !== true) values.set(flag, s.value);
  const source = (flag: string): SettingSource | undefined => settings.get(flag)?.source;
  const n = (flag: string): string => settingName(flag, source(flag));
  /** `flag` needs `other` (named in the same kind of setting as `flag`). */
  const needs = (flag: string, other: string, value?: string): string => {
    const s = source(flag);
    if (value !== undefined) return `${n(flag)} needs ${spelled(other, value, s)}`;
    return `${n(flag)} needs ${s?.kind === 'env' ? variableOf(other) : s?.kind === 'file' ? other : `--${other}`}`;
  };
  for (const [flag, spec] of Object.entries(FLAGS)) {
    const raw = values.get(flag);
    if (spec.boolean === true && raw !== undefined && source(flag)?.kind !== 'flag') values.set(flag, goBool(n(flag), raw));
  }

  const name = values.get('name') ?? 'default';
  if (name === '') throw new FlagError(`${n('name')} must not be empty`);
  const proxyFlag = values.get('proxy') ?? 'on';
  if (proxyFlag === 'off') {
    const off = source('proxy')?.kind === 'file' ? `${n('proxy')}: off` : spelled('proxy', 'off', source('proxy'));
    throw new FlagError(`${off} means running an etcd member, which this program does not do: use --proxy on or --proxy readonly (or run etcd itself)`);
  }
  if (proxyFlag !== 'on' && proxyFlag !== 'readonly') throw new FlagError(`${n('proxy')} must be on or readonly, got "${proxyFlag}"`);

  // As etcd: exactly one way to find the cluster; the default --initial-cluster
  // only applies when neither discovery flag is given.
  const bootstrapFlags = ['initial-cluster', 'discovery', 'discovery-srv'].filter((f) => values.has(f));
  if (bootstrapFlags.length > 1) {
    throw new FlagError(`${bootstrapFlags.map(n).join(' and ')} are both given: choose one of --initial-cluster, --discovery or --discovery-srv`);
  }
  for (const f of ['discovery', 'discovery-proxy', 'discovery-srv', 'discovery-srv-name']) {
    if (values.get(f) === '') throw new FlagError(`${n(f)} must not be empty`);
  }
  if (values.has('discovery-proxy') && !values.has('discovery')) throw new FlagError(needs('discovery-proxy', 'discovery'));
  if (values.has('discovery-srv-name') && !values.has('discovery-srv')) throw new FlagError(needs('discovery-srv-name', 'discovery-srv'));
  if (values.has('discovery-srv-dns-servers') && !values.has('discovery-srv')) throw new FlagError(needs('discovery-srv-dns-servers', 'discovery-srv'));
  const dnsServers = values.has('discovery-srv-dns-servers') ? parseDnsServers(n('discovery-srv-dns-servers'), values.get('discovery-srv-dns-servers')!) : undefined;
  const discovering = values.has('discovery') || values.has('discovery-srv');
  const initialCluster = discovering ? undefined : (values.get('initial-cluster') ?? 'default=http://localhost:2380');
  if (initialCluster !== undefined) {
    try {
      parseInitialCluster(initialCluster);
    } catch (err) {
      throw new FlagError(`${n('initial-cluster')}: ${(err as Error).message.replace(/^invalid initialCluster:? ?/, '')}`);
    }
  }
  const listenClientUrls = (values.get('listen-client-urls') ?? 'http://localhost:2379').split(',').map((s) => s.trim());
  if (listenClientUrls.some((u) => u === '')) throw new FlagError(`${n('listen-client-urls')} has an empty entry`);
  const dataDir = values.get('data-dir') ?? `${name}.etcd`;
  if (dataDir === '') throw new FlagError(`${n('data-dir')} must not be empty`);
  for (const f of ['cert-file', 'key-file', 'trusted-ca-file', 'peer-cert-file', 'peer-key-file', 'peer-trusted-ca-file']) {
    if (values.get(f) === '') throw new FlagError(`${n(f)} must not be empty`);
  }
  // etcd: "empty or * means allow all", and that is its default.
  const cors = values.get('cors')?.trim() || '*';
  const backend = values.get('backend') ?? 'v2';
  if (backend !== 'v2' && backend !== 'v3') throw new FlagError(`${n('backend')}: expected v2 or v3, got "${backend}"`);
  for (const f of ['v3-prefix', 'v3-user']) {
    if (values.has(f) && backend !== 'v3') throw new FlagError(needs(f, 'backend', 'v3'));
  }
  const v3Clients = values.get('v3-clients') ?? 'forward';
  if (v3Clients !== 'forward' && v3Clients !== 'refuse') throw new FlagError(`${n('v3-clients')}: expected forward or refuse, got "${v3Clients}"`);
  const v3UserRaw = values.get('v3-user');
  const v3User = v3UserRaw === undefined ? undefined : nameAndPassword(n('v3-user'), v3UserRaw);
  if (values.get('peer-client-cert-auth') === 'true') warnings.push(`warning: ${n('peer-client-cert-auth')} is ignored: a proxy has no peer listener`);
  const ms = (flag: string, min: number): number => milliseconds(n(flag), values.get(flag) ?? FLAGS[flag]!.default, min);

  return {
    warnings,
    name,
    ...(configFile === undefined ? {} : { configFile }),
    describe: n,
    options: {
      mode: proxyFlag === 'readonly' ? 'readonly' : 'readwrite',
      listenClientUrls,
      ...(initialCluster === undefined ? {} : { initialCluster }),
      ...optional('discovery', values.get('discovery')),
      ...optional('discoveryProxy', values.get('discovery-proxy')),
      ...optional('discoverySrv', values.get('discovery-srv')),
      ...optional('discoverySrvName', values.get('discovery-srv-name')),
      ...(dnsServers === undefined ? {} : { dnsServers }),
      dataDir,
      // 0 as in etcd: a failed endpoint is tried again at once.
      failureWait: ms('proxy-failure-wait', 0),
      refreshInterval: ms('proxy-refresh-interval', 1),
      dialTimeout: ms('proxy-dial-timeout', 1),
      writeTimeout: ms('proxy-write-timeout', 0),
      readTimeout: ms('proxy-read-timeout', 0),
      pipelineReads: count(n('pipeline-reads'), values.get('pipeline-reads') ?? FLAGS['pipeline-reads']!.default, 1, MAX_PIPELINE_READS),
      hedgeDelay: hedgeDelay(n('hedge-delay'), values.get('hedge-delay') ?? 'auto'),
      ...(backend === 'v3' ? { backend: 'v3' as const } : {}),
      ...optional('v3Prefix', values.get('v3-prefix')),
      ...(v3Clients === 'refuse' ? { v3Clients: 'refuse' as const } : {}),
      ...(v3User === undefined ? {} : { v3Username: v3User.name, v3Password: v3User.password }),
      ...optional('certFile', values.get('cert-file')),
      ...optional('keyFile', values.get('key-file')),
      ...optional('trustedCaFile', values.get('trusted-ca-file')),
      ...(values.has('client-cert-auth') ? { clientCertAuth: values.get('client-cert-auth') === 'true' } : {}),
      ...optional('peerCertFile', values.get('peer-cert-file')),
      ...optional('peerKeyFile', values.get('peer-key-file')),
      ...optional('peerTrustedCaFile', values.get('peer-trusted-ca-file')),
      ...(values.has('insecure-skip-tls-verify') ? { insecureSkipVerify: values.get('insecure-skip-tls-verify') === 'true' } : {}),
      cors,
    },
  };
}

function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: string };
}

/**
 * `--discovery-srv-dns-servers`: comma-separated `ip`, `ip:port` or
 * `[ipv6]:port` (what node's `Resolver.setServers` reads), each port 1-65535.
 * Addresses only: the servers are asked before any name can be resolved.
 */
function parseDnsServers(flag: string, raw: string): string[] {
  const servers = raw.split(',').map((s) => s.trim());
  if (raw.trim() === '') throw new FlagError(`${flag} must not be empty`);
  for (const server of servers) {
    if (server === '') throw new FlagError(`${flag} has an empty entry in "${raw}"`);
    // A bare IPv6 address; with a port it takes brackets, as in [::1]:53.
    if (isIP(server) === 6) continue;
    const m = /^\[([^\]]*)\](?::(\d*))?$/.exec(server) ?? /^([^:[\]]*)(?::(\d*))?$/.exec(server);
    if (m === null || isIP(m[1]!) !== (server.startsWith('[') ? 6 : 4)) {
      throw new FlagError(`${flag}: "${server}" is not an IP address, ip:port or [ipv6]:port (DNS servers are given by address)`);
    }
    const port = m[2];
    if (port !== undefined && (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)) {
      throw new FlagError(`${flag}: "${server}": the port must be 1-65535, got "${port}"`);
    }
  }
  return servers;
}

function milliseconds(label: string, raw: string, min: number): number {
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    throw new FlagError(`${label}: "${raw}" is not a whole number of milliseconds`);
  }
  const n = Number(raw);
  if (n < min) throw new FlagError(`${label}: must be at least ${min} ms, got ${raw}`);
  return n;
}

/** `--hedge-delay`: `auto` or a whole number of ms (0 turns hedging off). */
function hedgeDelay(label: string, raw: string): number | 'auto' {
  if (raw === 'auto') return 'auto';
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    throw new FlagError(`${label}: expected auto or a whole number of milliseconds (0 = off), got "${raw}"`);
  }
  return Number(raw);
}

function count(label: string, raw: string, min: number, max: number): number {
  const n = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(n >= min && n <= max)) throw new FlagError(`${label}: expected a whole number from ${min} to ${max}, got "${raw}"`);
  return n;
}

/** `--help` text, grouped like `etcd --help`. */
export function helpText(program: string): string {
  const lines = [
    `Usage: ${program} [flags]`,
    '',
    'An etcd v2 API proxy: a stand-in for `etcd --proxy on|readonly` (etcd 2.x-3.4).',
    'Flags are etcd\'s own: --flag value, --flag=value or -flag value. Durations are in ms.',
    'Each flag can also be set by etcd\'s environment variable for it: ETCD_ and the flag in upper case,',
    '"-" as "_" (ETCD_PROXY, ETCD_INITIAL_CLUSTER...); a flag beats its variable. --config-file (or',
    'ETCD_CONFIG_FILE) reads etcd\'s YAML config file instead of both. Variables and keys etcd knows',
    'but a proxy does not use (ETCD_LISTEN_PEER_URLS...) are ignored with a warning.',
  ];
  for (const group of ['Member', 'Clustering', 'Proxy', 'Security'] as const) {
    lines.push('', `${group}:`);
    for (const [flag, spec] of Object.entries(FLAGS)) {
      if (spec.group !== group) continue;
      lines.push(spec.boolean === true ? `  --${flag}` : `  --${flag} <${spec.value}>`, `      ${spec.help} default: '${spec.default}'`);
    }
  }
  lines.push('', 'Other:', '  --help, -h', '      Print this text.', '  --version', '      Print the version.', '');
  lines.push('Logging: DEBUG=etcd-v2-proxy:* shows what the library does per request.');
  return lines.join('\n');
}
