/**
 * Copies a live v2 store into the v3 layout of `--backend v3`, before an
 * upgrade to etcd 3.6 (which has no v2 store):
 *
 *   etcd-v2-proxy migrate --from http://v2member:2379 --to http://v3member:2379 \
 *       [--v3-prefix /v2] [--dry-run] [--force] [--prune] [--hidden /_a,/dir/*\/_b] \
 *       [--v2-user root:pw] [--v3-user name:pw] [--cacert ca.pem] [--cert c.pem --key k.pem]
 *
 * (from a checkout: `npx tsx examples/cli.ts migrate ...`). Progress on stderr, the
 * report on stdout. Exit codes: 0 done, 1 the copy failed (source or target
 * unreachable, no v2 API at the source, a non-empty target without
 * --force), 2 a bad command line.
 */
import { EndpointBalancer } from '../balancer/endpoint-balancer.js';
import { EtcdProxyError, InvalidOptionError } from '../errors.js';
import type { UpstreamTlsOptions } from '../tls-options.js';
import { parseHostPortUrl } from '../validate-options.js';
import { migrateV2Store } from '../v3-backend/migrate-v2-store.js';
import type { MigrationProgress, MigrationReport } from '../v3-backend/migrate-v2-store.js';
import { MAX_TXN_OPS } from '../v3-backend/rpc-types.js';
import { V3Client } from '../v3-backend/v3-client.js';
import { FlagError, nameAndPassword } from './flags.js';

const PROGRAM = 'etcd-v2-proxy migrate';

interface FlagSpec {
  readonly value?: string;
  readonly help: string;
}

const FLAGS: Record<string, FlagSpec> = {
  'from': { value: 'url[,url...]', help: 'client URL(s) of the v2 store to copy: an etcd member with the v2 API (3.4, 3.5 with --enable-v2). Required.' },
  'to': { value: 'url[,url...]', help: 'client URL(s) of the target cluster (v3 API). Required.' },
  'v3-prefix': { value: 'prefix', help: 'v3 key prefix of the v2 tree, the proxies\' --v3-prefix. Default: /v2.' },
  'hidden': {
    value: 'path[,path...]',
    help: 'hidden nodes (a "_" name) to copy, with their subtrees: v2 never lists them, so name them; a "*" segment matches every child, e.g. /_etcd/registry/*/_config.',
  },
  'dry-run': { help: 'read both sides and report what would be written; write nothing.' },
  'force': { help: 'copy into a target prefix that holds keys not equal to the source.' },
  'prune': { help: 'delete target nodes the source does not have (hidden ones only under a --hidden path).' },
  'no-match-index': {
    help: "leave the target's v2 index behind the source's (by default empty revisions are written until it is not: v2 clients' waitIndex and new in-order keys need it).",
  },
  'v2-user': { value: 'name:password', help: 'v2 user to read the source as, when v2 auth is on (root).' },
  'v3-user': { value: 'name:password', help: 'v3 user to write the target as, when v3 auth is on.' },
  'cacert': { value: 'path', help: 'PEM CA bundle that https:// members (source and target) chain to.' },
  'cert': { value: 'path', help: 'PEM client certificate shown to https:// members.' },
  'key': { value: 'path', help: 'PEM key of --cert.' },
  'insecure-skip-tls-verify': { help: 'accept any certificate from https:// members (tests only).' },
  'batch-ops': { value: 'n', help: 'operations per v3 transaction, the action key included (2-128; etcd --max-txn-ops is 128). Default: 100.' },
  'help': { help: 'print this help.' },
};

/** The usage text. */
function migrateHelp(command = 'etcd-v2-proxy migrate'): string {
  const lines = [`Usage: ${command} --from <v2 url> --to <v3 url> [flags]`, '', 'Copies a v2 store (values, directories, hidden nodes named with --hidden, remaining TTLs) into the v3 layout of --backend v3.', ''];
  for (const [name, spec] of Object.entries(FLAGS)) {
    lines.push(`  --${name}${spec.value === undefined ? '' : ` ${spec.value}`}`, `      ${spec.help}`);
  }
  return lines.join('\n');
}

interface MigrateFlags {
  readonly help: boolean;
  readonly from: readonly string[];
  readonly to: readonly string[];
  readonly prefix: string | undefined;
  readonly hidden: readonly string[];
  readonly dryRun: boolean;
  readonly force: boolean;
  readonly prune: boolean;
  readonly matchIndex: boolean;
  readonly v2User: { name: string; password: string } | undefined;
  readonly v3User: { name: string; password: string } | undefined;
  readonly tls: UpstreamTlsOptions | undefined;
  readonly batchOps: number | undefined;
}

function parseMigrateFlags(argv: readonly string[]): MigrateFlags {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--') || arg === '--') throw new FlagError(`unexpected argument "${arg}": flags are --name value or --name=value (see --help)`);
    const body = arg.slice(2);
    const eq = body.indexOf('=');
    const flag = eq === -1 ? body : body.slice(0, eq);
    const spec = FLAGS[flag];
    if (spec === undefined) throw new FlagError(`unknown flag --${flag} (see --help)`);
    let value: string;
    if (spec.value === undefined) {
      if (eq !== -1) throw new FlagError(`--${flag} takes no value`);
      value = 'true';
    } else if (eq !== -1) {
      value = body.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new FlagError(`--${flag} needs a value (${spec.value})`);
      value = next;
      i++;
    }
    if (values.has(flag)) throw new FlagError(`--${flag} is given twice`);
    if (value === '') throw new FlagError(`--${flag} must not be empty`);
    values.set(flag, value);
  }
  const help = values.has('help');
  const urls = (flag: string): string[] => {
    const raw = values.get(flag);
    if (raw === undefined) {
      if (help) return [];
      throw new FlagError(`--${flag} is required (${FLAGS[flag]!.value}; see --help)`);
    }
    return raw.split(',').map((u) => {
      const parsed = parseHostPortUrl(u.trim());
      if (parsed.error !== undefined) throw new FlagError(`--${flag}: ${parsed.error}`);
      return parsed.url;
    });
  };
  const user = (flag: string): { name: string; password: string } | undefined => {
    const raw = values.get(flag);
    return raw === undefined ? undefined : nameAndPassword(`--${flag}`, raw);
  };
  // Checked by migrateV2Store, whose message names --v3-prefix (FLAG_OF).
  const prefix = values.get('v3-prefix');
  let batchOps: number | undefined;
  const batchRaw = values.get('batch-ops');
  if (batchRaw !== undefined) {
    batchOps = Number(batchRaw);
    if (!/^\d+$/.test(batchRaw) || batchOps < 2 || batchOps > MAX_TXN_OPS) throw new FlagError(`--batch-ops: expected a whole number 2-${MAX_TXN_OPS}, got "${batchRaw}"`);
  }
  if (values.has('cert') !== values.has('key')) throw new FlagError(values.has('cert') ? '--cert needs --key' : '--key needs --cert');
  const tlsGiven = ['cacert', 'cert', 'key', 'insecure-skip-tls-verify'].some((f) => values.has(f));
  return {
    help,
    from: urls('from'),
    to: urls('to'),
    prefix,
    hidden: values.get('hidden')?.split(',').map((p) => p.trim()) ?? [],
    dryRun: values.has('dry-run'),
    force: values.has('force'),
    prune: values.has('prune'),
    matchIndex: !values.has('no-match-index'),
    v2User: user('v2-user'),
    v3User: user('v3-user'),
    tls: tlsGiven
      ? {
          ...(values.has('cacert') ? { trustedCaFile: values.get('cacert') } : {}),
          ...(values.has('cert') ? { certFile: values.get('cert'), keyFile: values.get('key') } : {}),
          ...(values.has('insecure-skip-tls-verify') ? { insecureSkipVerify: true } : {}),
        }
      : undefined,
    batchOps,
  };
}

/** Which flag an option of `migrateV2Store`, `V3Client` or `EndpointBalancer` comes from. */
const FLAG_OF: Record<string, string> = {
  source: '--from',
  endpoints: '--to',
  prefix: '--v3-prefix',
  hidden: '--hidden',
  batchOps: '--batch-ops',
  sourceUsername: '--v2-user',
  sourcePassword: '--v2-user',
  username: '--v3-user',
  password: '--v3-user',
  'tls.trustedCaFile': '--cacert',
  'sourceTls.trustedCaFile': '--cacert',
  'tls.certFile': '--cert',
  'sourceTls.certFile': '--cert',
  'tls.keyFile': '--key',
  'sourceTls.keyFile': '--key',
};

function pad(label: string, value: string | number): string {
  return `  ${label.padEnd(16)}${String(value).padStart(10)}`;
}

/** The report as a small table, then one summary line. */
function formatReport(r: MigrationReport, from: readonly string[], to: readonly string[]): string {
  const lines = [
    `${r.dryRun ? 'dry run: ' : ''}v2 store ${from.join(',')} (index ${r.sourceIndex}) -> v3 ${to.join(',')} under ${r.prefix}`,
    pad('files', r.files),
    pad('directories', r.dirs),
    pad('hidden', r.hidden),
    pad('with TTL', r.withTtl),
    pad(r.dryRun ? 'to write' : 'written', r.written),
    pad('unchanged', r.unchanged),
    pad('expired, skipped', r.skippedExpired),
    pad(r.dryRun ? 'to delete' : 'deleted', r.deleted),
    pad('extra, kept', r.extra),
    pad(r.dryRun ? 'index to advance' : 'index advanced', r.indexAdvanced),
    pad('ms', r.ms),
  ];
  for (const p of r.hiddenMissing) lines.push(`  --hidden ${p}: not found at the source`);
  const nodes = r.files + r.dirs;
  lines.push(
    r.dryRun
      ? `dry run: would write ${r.written} of ${nodes} node(s) under ${r.prefix} (${r.unchanged} unchanged, ${r.skippedExpired} expired, ${r.deleted} to delete); nothing written`
      : `migrated ${nodes} node(s) under ${r.prefix}: ${r.written} written, ${r.unchanged} unchanged, ${r.skippedExpired} expired, ${r.deleted} deleted in ${r.ms} ms`,
  );
  return `${lines.join('\n')}\n`;
}

/**
 * The migration command: parses `argv` (without the program and command
 * names), copies, prints progress on stderr and the report on stdout.
 * Resolves to the exit code: 0 done, 1 the copy failed, 2 a bad command line.
 * `command` is how `--help` names the command.
 */
export async function migrateMain(argv: readonly string[], command = 'etcd-v2-proxy migrate'): Promise<number> {
  const say = (message: string): void => void process.stderr.write(`${PROGRAM}: ${message}\n`);
  let flags: MigrateFlags;
  try {
    flags = parseMigrateFlags(argv);
  } catch (err) {
    if (err instanceof FlagError) {
      say(err.message);
      return 2;
    }
    throw err;
  }
  if (flags.help) {
    process.stdout.write(`${migrateHelp(command)}\n`);
    return 0;
  }

  const aborter = new AbortController();
  const onSigint = (): void => {
    say('interrupted: stopping after the current batch (what was written stays; a re-run finishes it)');
    aborter.abort();
  };
  let balancer: EndpointBalancer | undefined;
  let client: V3Client | undefined;
  let lastPrint = Date.now();
  let lastCount = 0;
  const onProgress = (p: MigrationProgress): void => {
    if (p.indexGap !== undefined) {
      if (p.indexGap === 0 || Date.now() - lastPrint >= 1000) {
        lastPrint = Date.now();
        say(p.indexGap === 0 ? "target's v2 index caught up with the source's" : `advancing the target's v2 index: ${p.indexGap} revision(s) to go`);
      }
      return;
    }
    const done = p.copied + p.skipped;
    if (done !== p.total && done - lastCount < 500 && Date.now() - lastPrint < 1000) return;
    lastPrint = Date.now();
    lastCount = done;
    say(`${done}/${p.total} node(s): ${p.copied} ${flags.dryRun ? 'to write' : 'written'}, ${p.skipped} skipped`);
  };
  try {
    balancer = new EndpointBalancer({ endpoints: flags.to, tls: flags.tls, leaderWrites: false });
    client = new V3Client({ balancer, tls: flags.tls, username: flags.v3User?.name, password: flags.v3User?.password, signal: aborter.signal });
    process.once('SIGINT', onSigint);
    const report = await migrateV2Store({
      source: flags.from,
      sourceTls: flags.tls,
      sourceUsername: flags.v2User?.name,
      sourcePassword: flags.v2User?.password,
      target: client,
      prefix: flags.prefix,
      hidden: flags.hidden,
      dryRun: flags.dryRun,
      force: flags.force,
      prune: flags.prune,
      matchIndex: flags.matchIndex,
      batchOps: flags.batchOps,
      onProgress,
      signal: aborter.signal,
    });
    process.stdout.write(formatReport(report, flags.from, flags.to));
    return 0;
  } catch (err) {
    if (err instanceof InvalidOptionError) {
      const flag = FLAG_OF[err.option];
      say(flag === undefined ? err.message : `${flag}: ${err.message.replace(/^invalid option [^:]+: /, '')}`);
      return 2;
    }
    if (err instanceof EtcdProxyError) {
      say(err.message);
      return 1;
    }
    throw err;
  } finally {
    process.removeListener('SIGINT', onSigint);
    client?.close();
    balancer?.close();
  }
}
