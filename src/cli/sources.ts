/**
 * Where etcd reads its settings besides the command line, read the same way
 * for the proxy:
 *
 * - its environment variables: `ETCD_` and the flag name in upper case with
 *   `_` for `-` (`ETCD_PROXY_FAILURE_WAIT` for `--proxy-failure-wait`); an
 *   empty one counts as unset; a flag given on the command line beats its
 *   variable;
 * - its YAML config file (`--config-file`, or `ETCD_CONFIG_FILE`), with the
 *   keys of etcd's sample etcd.conf.yml, TLS under `client-transport-security:`
 *   and `peer-transport-security:`. When there is one, it replaces the flags
 *   and the environment, as in etcd, which are then ignored with a warning
 *   each.
 *
 * A variable or key etcd knows that a proxy has no use for (a member's
 * `ETCD_LISTEN_PEER_URLS`...) is ignored with one warning line naming it, so
 * that a member's /etc/default/etcd does not stop the proxy; so is one etcd
 * does not know (etcd warns about those too). A malformed value is a
 * {@link FlagError} naming the variable or key.
 */
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument } from 'yaml';
import { FLAGS, FlagError, parseArgv, resolveSettings } from './flags.js';
import type { ParsedFlags, Setting } from './flags.js';

/**
 * etcd's own settings (etcd 3.4's flags and config-file keys, and the
 * common ones of 3.5 and 3.6) that a proxy does not use: a variable or key
 * named after one of them gets "ignored: a proxy does not use it".
 */
const ETCD_ONLY = new Set([
  // member
  'wal-dir', 'listen-peer-urls', 'listen-metrics-urls', 'max-snapshots', 'max-wals', 'snapshot-count', 'heartbeat-interval', 'election-timeout',
  'initial-election-tick-advance', 'quota-backend-bytes', 'backend-batch-interval', 'backend-batch-limit', 'max-txn-ops', 'max-request-bytes',
  'grpc-keepalive-min-time', 'grpc-keepalive-interval', 'grpc-keepalive-timeout', 'max-concurrent-streams', 'socket-reuse-port', 'socket-reuse-address',
  'backend-bbolt-freelist-type', 'snapshot-catchup-entries', 'max-learners',
  // clustering
  'initial-advertise-peer-urls', 'advertise-client-urls', 'discovery-fallback', 'initial-cluster-token', 'initial-cluster-state', 'strict-reconfig-check',
  'enable-v2', 'pre-vote', 'auto-compaction-retention', 'auto-compaction-mode', 'v2-deprecation',
  // security
  'client-crl-file', 'client-cert-allowed-hostname', 'auto-tls', 'peer-auto-tls', 'peer-crl-file', 'peer-cert-allowed-cn', 'peer-cert-allowed-hostname',
  'cipher-suites', 'host-whitelist', 'self-signed-cert-validity', 'tls-min-version', 'tls-max-version', 'client-transport-security', 'peer-transport-security',
  // logging, auth, profiling, metrics
  'logger', 'log-output', 'log-outputs', 'debug', 'log-level', 'log-package-levels', 'log-format', 'enable-log-rotation', 'log-rotation-config-json',
  'enable-pprof', 'metrics', 'auth-token', 'bcrypt-cost', 'auth-token-ttl', 'enable-grpc-gateway', 'version', 'unsupported-arch',
  // experimental, unsafe, and the flags etcd accepts and ignores
  'experimental-initial-corrupt-check', 'experimental-corrupt-check-time', 'experimental-enable-v2v3', 'experimental-backend-bbolt-freelist-type',
  'experimental-enable-lease-checkpoint', 'experimental-enable-lease-checkpoint-persist', 'experimental-compaction-batch-limit',
  'experimental-watch-progress-notify-interval', 'experimental-warning-apply-duration', 'experimental-peer-skip-client-san-verification',
  'experimental-enable-distributed-tracing', 'experimental-memory-mlock', 'experimental-txn-mode-write-with-shared-buffer',
  'experimental-compact-hash-check-enabled', 'experimental-compact-hash-check-time', 'experimental-downgrade-check-time',
  'experimental-stop-grpc-service-on-defrag', 'experimental-snapshot-catchup-entries', 'unsafe-no-fsync', 'force-new-cluster',
  'cluster-active-size', 'cluster-remove-delay', 'cluster-sync-interval', 'config', 'force', 'max-result-buffer', 'max-retry-attempts',
  'peer-heartbeat-interval', 'peer-election-timeout', 'retry-interval', 'snapshot', 'v', 'vv',
]);

/** The settings of `--proxy*`-style flags that come from the config file's top level: every flag but the TLS ones (under the transport-security blocks there) and `--config-file`. */
const TLS_FLAGS = new Set(['cert-file', 'key-file', 'client-cert-auth', 'trusted-ca-file', 'peer-cert-file', 'peer-key-file', 'peer-client-cert-auth', 'peer-trusted-ca-file']);

/** The keys of `client-transport-security:` / `peer-transport-security:` and the flag each one sets. */
const SECURITY_BLOCKS: Record<string, Record<string, string>> = {
  'client-transport-security': { 'cert-file': 'cert-file', 'key-file': 'key-file', 'client-cert-auth': 'client-cert-auth', 'trusted-ca-file': 'trusted-ca-file' },
  'peer-transport-security': { 'cert-file': 'peer-cert-file', 'key-file': 'peer-key-file', 'client-cert-auth': 'peer-client-cert-auth', 'trusted-ca-file': 'peer-trusted-ca-file' },
};

/** Settings that take a comma-separated list: in the config file, a YAML list of strings is read as that list. */
const LISTS = new Set(['listen-client-urls', 'cors', 'discovery-srv-dns-servers']);

const IGNORED = 'a proxy does not use it';

/** The flag an `ETCD_*` variable stands for (`ETCD_PROXY_FAILURE_WAIT` → `proxy-failure-wait`), undefined for other names. */
function flagOfVariable(variable: string): string | undefined {
  if (!/^ETCD_[A-Z0-9_]+$/.test(variable)) return undefined;
  return variable.slice(5).toLowerCase().replace(/_/g, '-');
}

/** The `ETCD_*` variables that are set (not empty), sorted. */
function etcdVariables(env: Readonly<Record<string, string | undefined>>): Array<[string, string]> {
  return Object.entries(env)
    .filter((e): e is [string, string] => e[0].startsWith('ETCD_') && e[1] !== undefined && e[1] !== '')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Reads the proxy's settings from the `ETCD_*` variables of `env`, skipping
 * those whose flag is in `given` (with a warning each: the flag wins).
 */
export function readEnvironment(env: Readonly<Record<string, string | undefined>>, given: ReadonlySet<string>): { settings: Map<string, Setting>; warnings: string[] } {
  const settings = new Map<string, Setting>();
  const warnings: string[] = [];
  for (const [variable, value] of etcdVariables(env)) {
    if (variable === 'ETCD_CONFIG_FILE') continue;
    const flag = flagOfVariable(variable);
    if (flag !== undefined && Object.hasOwn(FLAGS, flag) && FLAGS[flag]!.meta !== true) {
      if (given.has(flag)) warnings.push(`warning: ${variable} is ignored: --${flag} is given on the command line, and a flag beats its variable`);
      else settings.set(flag, { value, source: { kind: 'env', variable } });
    } else if (flag !== undefined && ETCD_ONLY.has(flag)) {
      warnings.push(`warning: ${variable} is ignored: ${IGNORED} (it is an etcd member's setting)`);
    } else {
      warnings.push(`warning: ${variable} is ignored: not an environment variable etcd or this proxy reads`);
    }
  }
  return { settings, warnings };
}

type Yaml = null | string | number | boolean | Yaml[] | { [key: string]: Yaml };

/** A scalar config value as the string a flag would carry. */
function scalar(path: string, key: string, flag: string, value: Yaml): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  if (typeof value === 'boolean') {
    // etcd reads YAML 1.1, where `proxy: on` is a bool: read it as the word.
    if (flag === 'proxy') return value ? 'on' : 'off';
    if (FLAGS[flag]!.boolean === true) return String(value);
    throw new FlagError(`${path}: ${key}: expected ${FLAGS[flag]!.value}, got ${value}`);
  }
  if (Array.isArray(value) && LISTS.has(flag) && value.every((v) => typeof v === 'string')) return value.join(',');
  throw new FlagError(`${path}: ${key}: expected ${FLAGS[flag]!.value}, got a YAML ${Array.isArray(value) ? 'list' : 'mapping'}`);
}

/**
 * Reads etcd's YAML config file: the proxy's settings, and a warning for
 * each key it ignores. Throws {@link FlagError} for a file that cannot be
 * read or parsed, and for a malformed value, naming the file and the key.
 */
export function readConfigFile(path: string): { settings: Map<string, Setting>; warnings: string[] } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new FlagError(`--config-file: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  // etcd reads its config with a YAML 1.1 parser (yes/no/on/off are bools there).
  const lines = new LineCounter();
  const doc = parseDocument(text, { version: '1.1', prettyErrors: false, lineCounter: lines });
  const error = doc.errors[0];
  if (error !== undefined) {
    const at = lines.linePos(error.pos[0]);
    throw new FlagError(`${path}: not valid YAML at line ${at.line}, column ${at.col}: ${error.message.split('\n')[0]}`);
  }
  let top: Yaml | undefined;
  try {
    top = doc.toJS({ maxAliasCount: 100 }) as Yaml | undefined;
  } catch (err) {
    // e.g. more alias expansions than maxAliasCount (a "billion laughs" file)
    throw new FlagError(`${path}: cannot be read as etcd's settings: ${(err as Error).message.split('\n')[0]}`);
  }
  const settings = new Map<string, Setting>();
  const warnings: string[] = [];
  if (top === null || top === undefined) return { settings, warnings };
  if (typeof top !== 'object' || Array.isArray(top)) throw new FlagError(`${path}: expected a YAML mapping of etcd's settings (key: value), got a ${Array.isArray(top) ? 'list' : 'single value'}`);
  const set = (key: string, flag: string, value: Yaml): void => {
    // etcd leaves a setting with no value (`data-dir:`) at its default.
    if (value === null) return;
    settings.set(flag, { value: scalar(path, key, flag, value), source: { kind: 'file', path, key } });
  };
  for (const [key, value] of Object.entries(top)) {
    const block = Object.hasOwn(SECURITY_BLOCKS, key) ? SECURITY_BLOCKS[key] : undefined;
    if (block !== undefined) {
      if (value === null) continue;
      if (typeof value !== 'object' || Array.isArray(value)) throw new FlagError(`${path}: ${key}: expected a mapping (cert-file, key-file, client-cert-auth, trusted-ca-file)`);
      for (const [inner, v] of Object.entries(value)) {
        const flag = Object.hasOwn(block, inner) ? block[inner] : undefined;
        if (flag !== undefined) set(`${key}.${inner}`, flag, v);
        else if (inner === 'auto-tls' && v === true) warnings.push(`warning: ${path}: ${key}.auto-tls is ignored: the proxy makes no certificates; give cert-file and key-file`);
        else if (v !== null && v !== false) warnings.push(`warning: ${path}: ${key}.${inner} is ignored: ${IGNORED}`);
      }
      continue;
    }
    if (Object.hasOwn(FLAGS, key) && !TLS_FLAGS.has(key) && FLAGS[key]!.meta !== true) set(key, key, value);
    else if (value === null) continue; // a key with no value sets nothing: nothing to warn about
    else if (TLS_FLAGS.has(key)) warnings.push(`warning: ${path}: ${key} is ignored: etcd reads it under ${key.startsWith('peer-') ? 'peer' : 'client'}-transport-security:`);
    else if (ETCD_ONLY.has(key)) warnings.push(`warning: ${path}: ${key} is ignored: ${IGNORED}`);
    else warnings.push(`warning: ${path}: ${key} is ignored: not a key etcd or this proxy reads`);
  }
  return { settings, warnings };
}

/**
 * The whole of the proxy's configuration, as etcd reads its own: the
 * command line, then either the config file (`--config-file` or
 * ETCD_CONFIG_FILE), which replaces the flags and the environment, or the
 * `ETCD_*` variables under the flags. Throws {@link FlagError}.
 */
export function parseSettings(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = {}): ParsedFlags {
  const args = parseArgv(argv);
  const warnings = [...args.warnings];
  if (args.help || args.version) {
    return { help: args.help, version: args.version, warnings, name: 'default', describe: (f) => `--${f}`, options: { listenClientUrls: [], dataDir: '' } };
  }
  const fromFlag = args.values.get('config-file');
  if (fromFlag === '') throw new FlagError('--config-file must not be empty');
  const configFile = fromFlag ?? (env.ETCD_CONFIG_FILE === '' ? undefined : env.ETCD_CONFIG_FILE);
  let settings: Map<string, Setting>;
  if (configFile !== undefined) {
    const how = fromFlag === undefined ? `ETCD_CONFIG_FILE=${configFile}` : `--config-file ${configFile}`;
    const read = readConfigFile(configFile);
    settings = read.settings;
    for (const flag of args.values.keys()) {
      if (flag !== 'config-file') warnings.push(`warning: --${flag} is ignored: ${how} replaces flags and environment variables (as in etcd)`);
    }
    for (const [variable, value] of etcdVariables(env)) {
      if (variable === 'ETCD_CONFIG_FILE' && (fromFlag === undefined || value === fromFlag)) continue;
      warnings.push(`warning: ${variable} is ignored: ${how} replaces flags and environment variables (as in etcd)`);
    }
    warnings.push(...read.warnings);
  } else {
    settings = new Map<string, Setting>();
    for (const [flag, value] of args.values) settings.set(flag, { value, source: { kind: 'flag' } });
    const read = readEnvironment(env, new Set(args.values.keys()));
    for (const [flag, s] of read.settings) settings.set(flag, s);
    warnings.push(...read.warnings);
  }
  return { help: false, version: false, ...resolveSettings(settings, warnings, configFile) };
}
