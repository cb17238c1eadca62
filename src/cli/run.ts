/**
 * The `etcd-v2-proxy` command, a drop-in for `etcd --proxy on|readonly`:
 * etcd's flags, its ETCD_* environment variables and its --config-file
 * (flags.ts, sources.ts), etcd-style log lines on stderr. main.ts is the
 * installed bin; examples/cli.ts runs the same from a checkout.
 *
 * Exit codes: 0 after SIGINT/SIGTERM, 1 when the proxy cannot start, 2 for a
 * bad command line, environment variable or config file.
 */
import { readFileSync } from 'node:fs';
import { createProxy, EtcdProxyError, InvalidOptionError, srvServiceNames } from '../index.js';
import type { EtcdV2Proxy } from '../index.js';
import { FlagError, helpText } from './flags.js';
import type { ParsedFlags } from './flags.js';
import { parseSettings } from './sources.js';

const PROGRAM = 'etcd-v2-proxy';

/** etcd's capnslog line format: `2006-01-02 15:04:05.000000 I | proxy: ...`. */
function log(level: 'I' | 'N' | 'W' | 'E', message: string): void {
  const d = new Date();
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  const stamp = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}000`;
  process.stderr.write(`${stamp} ${level} | proxy: ${message}\n`);
}

const list = (urls: readonly string[]): string => `[${urls.join(' ')}]`;
const quoted = (urls: readonly string[]): string => `[${urls.map((u) => JSON.stringify(u)).join(' ')}]`;

/** Which flag an option error is about, so that the one-line message names the flag (or variable, or key) the user wrote. */
const FLAG_OF: Record<string, string> = {
  listenClientUrls: 'listen-client-urls',
  initialCluster: 'initial-cluster',
  discovery: 'discovery',
  discoveryProxy: 'discovery-proxy',
  discoverySrv: 'discovery-srv',
  discoverySrvName: 'discovery-srv-name',
  dnsServers: 'discovery-srv-dns-servers',
  dataDir: 'data-dir',
  failureWait: 'proxy-failure-wait',
  refreshInterval: 'proxy-refresh-interval',
  dialTimeout: 'proxy-dial-timeout',
  writeTimeout: 'proxy-write-timeout',
  readTimeout: 'proxy-read-timeout',
  pipelineReads: 'pipeline-reads',
  hedgeDelay: 'hedge-delay',
  backend: 'backend',
  v3Prefix: 'v3-prefix',
  v3Username: 'v3-user',
  v3Password: 'v3-user',
  certFile: 'cert-file',
  keyFile: 'key-file',
  trustedCaFile: 'trusted-ca-file',
  clientCertAuth: 'client-cert-auth',
  peerCertFile: 'peer-cert-file',
  peerKeyFile: 'peer-key-file',
  peerTrustedCaFile: 'peer-trusted-ca-file',
  insecureSkipVerify: 'insecure-skip-tls-verify',
  cors: 'cors',
};

function fail(code: 1 | 2, message: string): never {
  process.stderr.write(`${PROGRAM}: ${message}\n`);
  process.exit(code);
}

/** How {@link runCli} names itself. */
export interface CliOptions {
  /** How `--help` shows the command: `etcd-v2-proxy`, `npx tsx examples/cli.ts`. */
  command: string;
  /** Where `ETCD_*` variables are read from. Default: `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
}

/**
 * The `etcd-v2-proxy` command: `argv` without node and the script. Runs the
 * proxy until SIGINT/SIGTERM (exit 0), or exits 1 when the proxy cannot
 * start, 2 for a bad flag, variable or config key (one line naming it).
 * `migrate ...` runs the v2-to-v3 copy (migrate.ts).
 */
export async function runCli(argv: readonly string[], options: CliOptions): Promise<void> {
  if (argv[0] === 'migrate') {
    // `migrate --from <v2 member> --to <v3 member> ...`: copies a v2 store into the v3 layout (migrate.ts).
    const { migrateMain } = await import('./migrate.js');
    process.exitCode = await migrateMain(argv.slice(1), `${options.command} migrate`);
    return;
  }
  let flags: ParsedFlags;
  try {
    flags = parseSettings(argv, options.env ?? process.env);
  } catch (err) {
    if (err instanceof FlagError) fail(2, err.message);
    throw err;
  }
  for (const w of flags.warnings) process.stderr.write(`${PROGRAM}: ${w}\n`);
  if (flags.help) {
    process.stdout.write(`${helpText(options.command)}\n`);
    return;
  }
  if (flags.version) {
    // src/cli/ in a checkout, dist/cli/ in the package: package.json is two levels up from both.
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`${PROGRAM} ${pkg.version}\n`);
    return;
  }

  // Nothing is printed before createProxy: a bad option must stay a one-line error.
  const { discovery, discoveryProxy, discoverySrv, discoverySrvName, dnsServers } = flags.options;
  let proxy: EtcdV2Proxy;
  try {
    proxy = await createProxy({
      ...flags.options,
      listeners: {
        warning: (message) => log('W', message),
        discoveryRetry: (r) => log('W', `discovery: ${r.step}: ${r.error.message}; retrying in ${r.delay} ms (attempt ${r.attempt})`),
        discoveryWaiting: (p) => log('N', `discovery: found ${p.registered.length} peer(s), waiting for ${p.missing} more`),
        // etcd logs the same as "embed: rejected connection from ...".
        tlsClientError: (e) => log('W', `rejected connection from "${e.remoteAddress ?? 'unknown'}" (${e.message})`),
      },
    });
  } catch (err) {
    if (err instanceof InvalidOptionError) {
      const flag = FLAG_OF[err.option.replace(/\[\d+\]$/, '')];
      fail(2, flag === undefined ? err.message : `${flags.describe(flag)}: ${err.message.replace(/^invalid option [^:]+: /, '')}`);
    }
    if (err instanceof EtcdProxyError) fail(1, err.message);
    throw err;
  }

  if (flags.configFile !== undefined) log('I', `loaded the configuration from "${flags.configFile}"; command-line flags and ETCD_* variables are ignored, as in etcd`);
  if (flags.options.backend === 'v3') log('N', `serving the v2 API from the cluster's v3 API, v2 tree under v3 prefix "${proxy.v3Backend?.prefix}"`);
  else log('N', 'this proxy supports v2 API only!');
  if (proxy.peerUrlsSource === 'discovery' && discoveryProxy !== undefined) log('I', `discovery went through proxy "${discoveryProxy}"`);
  const srvNames = discoverySrv === undefined ? undefined : srvServiceNames(discoverySrv, discoverySrvName);
  const source = {
    'cluster-file': ` from cluster file "${proxy.clusterFile}"`,
    'initial-cluster': '',
    'discovery': ` from discovery URL ${discovery}`,
    'discovery-srv': ` from DNS SRV records ${srvNames?.https} and ${srvNames?.http}${dnsServers === undefined ? '' : ` (asked DNS server(s) ${dnsServers.join(' ')})`}`,
  }[proxy.peerUrlsSource];
  log('I', `using peer urls ${list(proxy.bootstrapPeerUrls)}${source}`);
  log('I', `endpoints found ${quoted(proxy.balancer.endpoints.map((e) => e.url))}`);
  proxy.resolver.on('members', (now, before) => {
    if (before !== undefined) log('N', `members changed: client urls ${list(before.clientUrls)} -> ${list(now.clientUrls)}`);
  });
  proxy.resolver.on('error', (err) => log('W', `membership refresh failed, keeping the last known endpoints: ${err.message}`));
  proxy.resolver.on('stale', (_err, last) =>
    log('W', `membership is stale: no peer answers /members; forwarding to the last known client urls ${list(last?.clientUrls ?? [])}, asking every second`),
  );
  proxy.resolver.on('fresh', (now) => log('N', `membership is fresh again: client urls ${list(now.clientUrls)}`));
  proxy.balancer.on('endpointDown', (e, reason) => log('W', `marked endpoint ${e.url} unavailable (${reason.message})`));
  proxy.balancer.on('endpointUp', (e) => log('I', `marked endpoint ${e.url} available, to retest connectivity`));
  proxy.on('clusterFileWritten', (path, peers) => log('N', `updated peer urls in cluster file "${path}" to ${list(peers)}`));
  proxy.on('clusterFileError', (err) => log('E', `cannot write the cluster file: ${err.message}`));
  for (const a of proxy.addresses) log('I', `listening for client requests on ${a.url}`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log('W', `received ${signal} again, exiting now`);
      process.exit(1);
    }
    stopping = true;
    log('N', `received ${signal}, shutting down`);
    proxy.close().then(
      () => process.exit(0),
      (err: Error) => fail(1, `error while closing: ${err.message}`),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
