/**
 * etcd's proxy flags, parsed the way etcd (Go's flag package) reads them:
 * `--flag value`, `--flag=value`, `-flag value`. Commands copied from web
 * pages often carry a typographic dash (`–proxy on`): that is read as `--`
 * with a warning. Anything else that is not a known flag is an error naming it.
 */
import { parseInitialCluster } from '../src/index.js';
import type { CreateProxyOptions } from '../src/index.js';

/** A bad command line: the message is one line naming the flag and what is wrong. */
export class FlagError extends Error {
  override name = 'FlagError';
}

export interface ParsedFlags {
  help: boolean;
  version: boolean;
  /** Warnings to print (typographic dashes). */
  warnings: string[];
  name: string;
  options: CreateProxyOptions & { dataDir: string; listenClientUrls: string[] };
}

interface FlagSpec {
  group: 'Member' | 'Clustering' | 'Proxy';
  value: string;
  default: string;
  help: string;
}

/** The flags, in `etcd --help` groups, with etcd's defaults. */
export const FLAGS: Record<string, FlagSpec> = {
  'name': { group: 'Member', value: 'name', default: 'default', help: 'Human-readable name; the default data dir is <name>.etcd.' },
  'data-dir': { group: 'Member', value: 'path', default: '${name}.etcd', help: 'Where the proxy keeps the cluster file (proxy/cluster).' },
  'listen-client-urls': { group: 'Member', value: 'urls', default: 'http://localhost:2379', help: 'Comma-separated URLs to serve v2 clients on.' },
  'initial-cluster': { group: 'Clustering', value: 'name=url,...', default: 'default=http://localhost:2380', help: "The cluster's members, as their peer URLs. A cluster file in the data dir wins." },
  'proxy': { group: 'Proxy', value: 'on|readonly', default: 'on', help: "'on' forwards everything; 'readonly' forwards GET and HEAD and answers other methods with 501." },
  'proxy-failure-wait': { group: 'Proxy', value: 'ms', default: '5000', help: 'Time an endpoint is skipped after a failure.' },
  'proxy-refresh-interval': { group: 'Proxy', value: 'ms', default: '30000', help: 'Time between membership refreshes.' },
  'proxy-dial-timeout': { group: 'Proxy', value: 'ms', default: '1000', help: 'Time allowed to connect to an endpoint.' },
  'proxy-write-timeout': { group: 'Proxy', value: 'ms', default: '5000', help: 'Time allowed to write a request to an endpoint (0 = no limit).' },
  'proxy-read-timeout': { group: 'Proxy', value: 'ms', default: '0', help: 'Time an endpoint may stay silent after a request (0 = no limit, for watches).' },
};

const BOOLEAN = new Set(['help', 'h', 'version']);
const TYPOGRAPHIC = /^[\u2010-\u2015\u2212]+/;

/** Parses argv (without node and the script). Throws {@link FlagError}. */
export function parseFlags(argv: readonly string[]): ParsedFlags {
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
    if (!(flag in FLAGS)) {
      const hint = flag === 'discovery' || flag === 'discovery-srv' ? ' (not supported yet: use --initial-cluster)' : '';
      throw new FlagError(`unknown flag --${flag}${hint} (see --help)`);
    }
    let value: string;
    if (eq !== -1) value = body.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('-') && next.length > 1) || TYPOGRAPHIC.test(next)) {
        throw new FlagError(`--${flag} needs a value (${FLAGS[flag]!.value})`);
      }
      value = next;
      i++;
    }
    if (values.has(flag)) throw new FlagError(`--${flag} is given twice ("${values.get(flag)}" and "${value}")`);
    values.set(flag, value);
  }

  const name = values.get('name') ?? 'default';
  if (name === '') throw new FlagError('--name must not be empty');
  const proxyFlag = values.get('proxy') ?? 'on';
  if (proxyFlag === 'off') {
    throw new FlagError('--proxy off means running an etcd member, which this program does not do: use --proxy on or --proxy readonly (or run etcd itself)');
  }
  if (proxyFlag !== 'on' && proxyFlag !== 'readonly') throw new FlagError(`--proxy must be on or readonly, got "${proxyFlag}"`);

  const initialCluster = values.get('initial-cluster') ?? 'default=http://localhost:2380';
  try {
    parseInitialCluster(initialCluster);
  } catch (err) {
    throw new FlagError(`--initial-cluster: ${(err as Error).message.replace(/^invalid initialCluster:? ?/, '')}`);
  }
  const listenClientUrls = (values.get('listen-client-urls') ?? 'http://localhost:2379').split(',').map((s) => s.trim());
  if (listenClientUrls.some((u) => u === '')) throw new FlagError('--listen-client-urls has an empty entry');
  const dataDir = values.get('data-dir') ?? `${name}.etcd`;
  if (dataDir === '') throw new FlagError('--data-dir must not be empty');

  return {
    help,
    version,
    warnings,
    name,
    options: {
      mode: proxyFlag === 'readonly' ? 'readonly' : 'readwrite',
      listenClientUrls,
      initialCluster,
      dataDir,
      failureWait: ms(values, 'proxy-failure-wait', 1),
      refreshInterval: ms(values, 'proxy-refresh-interval', 1),
      dialTimeout: ms(values, 'proxy-dial-timeout', 1),
      writeTimeout: ms(values, 'proxy-write-timeout', 0),
      readTimeout: ms(values, 'proxy-read-timeout', 0),
    },
  };
}

function ms(values: Map<string, string>, flag: string, min: number): number {
  const raw = values.get(flag) ?? FLAGS[flag]!.default;
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    throw new FlagError(`--${flag}: "${raw}" is not a whole number of milliseconds`);
  }
  const n = Number(raw);
  if (n < min) throw new FlagError(`--${flag}: must be at least ${min} ms, got ${raw}`);
  return n;
}

/** `--help` text, grouped like `etcd --help`. */
export function helpText(program: string): string {
  const lines = [
    `Usage: ${program} [flags]`,
    '',
    'An etcd v2 API proxy: a stand-in for `etcd --proxy on|readonly` (etcd 2.x-3.4).',
    'Flags are etcd\'s own: --flag value, --flag=value or -flag value. Durations are in ms.',
  ];
  for (const group of ['Member', 'Clustering', 'Proxy'] as const) {
    lines.push('', `${group}:`);
    for (const [flag, spec] of Object.entries(FLAGS)) {
      if (spec.group !== group) continue;
      lines.push(`  --${flag} <${spec.value}>`, `      ${spec.help} default: '${spec.default}'`);
    }
  }
  lines.push('', 'Other:', '  --help, -h', '      Print this text.', '  --version', '      Print the version.', '');
  lines.push('Logging: DEBUG=etcd-v2-proxy:* shows what the library does per request.');
  return lines.join('\n');
}
