/**
 * What `npm install etcd-v2-proxy` gives a user: `npm pack` (with the
 * prepack build) into a temporary directory, the tarball installed with a
 * normal `npm install` into a fresh temporary project (its dependencies come
 * from the npm registry), then used from ESM, from CommonJS and from
 * TypeScript (the project's version and the newest) the way a consumer would;
 * and `npm install -g` of the same tarball into a temporary prefix, whose
 * `etcd-v2-proxy` command runs the article's walkthrough against a real etcd
 * member started from flags, from a Debian-style environment file and from a
 * config file, and as the example systemd unit starts it. Needs the npm
 * registry; the parts that need etcd are skipped without it (never under CI).
 * Bounded: each step has its own timeout, the whole test 300 s.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cleanup, etcdctl, freePort, http, member, onCleanup, skipWithoutEtcd, tempDir } from './integration/harness.js';
import type { LocalEtcd } from './integration/harness.js';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
/** The newest TypeScript (devDependency `typescript-latest`: npm's `typescript@latest` line), whose `types` default no longer lists @types/node. */
const tscLatest = join(root, 'node_modules', 'typescript-latest', 'bin', 'tsc');
const version = (JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string }).version;

/** The environment without what an enclosing `npm test` adds about this repo, so that nested npm runs see only their own project. */
const childEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !/^npm_(package_|lifecycle_|command$|config_local_prefix$)/i.test(k)),
);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (no shell), bounded by `timeoutMs`; never rejects. */
function run(cmd: string, args: readonly string[], cwd: string, timeoutMs: number, extraEnv: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((done) => {
    execFile(cmd, args, { cwd, env: { ...childEnv, ...extraEnv }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      done({ code, stdout, stderr: err?.killed === true ? `${stderr}\n(killed after ${timeoutMs} ms)` : stderr });
    });
  });
}

/** What the tarball may hold: the build's JS and source maps, the .d.ts rollup, the systemd example, README, LICENSE and package.json (npm always adds it). */
const ALLOWED = /^package\/(dist\/(?:[\w-]+\/)?[\w-]+\.js|dist\/(?:[\w-]+\/)?[\w-]+\.js\.map|dist\/etcd-v2-proxy\.d\.ts|examples\/systemd\/(?:etcd-v2-proxy\.service|etcd\.default)|README\.md|LICENSE|package\.json)$/;

/** Parses a systemd EnvironmentFile= (KEY=VALUE lines, # and ; comments, optional quotes), as systemd reads it. */
function environmentFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const eq = line.indexOf('=');
    assert.ok(eq > 0, `not KEY=VALUE: ${line}`);
    const value = line.slice(eq + 1).trim();
    env[line.slice(0, eq).trim()] = /^(["']).*\1$/.test(value) ? value.slice(1, -1) : value;
  }
  return env;
}

/** The [Service] settings of a unit file, each key with its values in order. */
function unitService(text: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  let section = '';
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    if (line.startsWith('[')) {
      section = line;
      continue;
    }
    if (section !== '[Service]') continue;
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    settings.set(key, [...(settings.get(key) ?? []), line.slice(eq + 1)]);
  }
  return settings;
}

describe('the npm package, installed into a fresh project', { timeout: 300000 }, () => {
  let work: string;
  let tarball: string;
  let project: string;
  let entries: string[];
  /** `npm install -g --prefix <global> <tarball>`: the command is <global>/bin/etcd-v2-proxy. */
  let global: string;
  let bin: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'etcd-v2-proxy-package-'));
    const pack = await run('npm', ['pack', '--pack-destination', work], root, 90000);
    assert.equal(pack.code, 0, `npm pack failed:\n${pack.stdout}\n${pack.stderr}`);
    const made = readdirSync(work).filter((f) => f.endsWith('.tgz'));
    assert.equal(made.length, 1, `one tarball expected in ${work}, got ${made.join(', ')}`);
    tarball = join(work, made[0]!);
    const list = await run('tar', ['-tzf', tarball], work, 10000);
    assert.equal(list.code, 0, list.stderr);
    entries = list.stdout.trim().split('\n').sort();

    project = join(work, 'consumer');
    await mkdir(project);
    await writeFile(join(project, 'package.json'), `${JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2)}\n`);
    // A normal install: the tarball, and @types/node for the TypeScript checks; dependencies from the registry.
    const install = await run('npm', ['install', '--no-audit', '--no-fund', tarball, '@types/node@^20'], project, 120000);
    assert.equal(install.code, 0, `npm install failed:\n${install.stdout}\n${install.stderr}`);
    // What a host gets: the command, installed globally (here into a temporary prefix); dependencies from npm's cache or the registry.
    global = join(work, 'global');
    const installGlobal = await run('npm', ['install', '-g', '--prefix', global, '--prefer-offline', '--no-audit', '--no-fund', tarball], work, 120000);
    assert.equal(installGlobal.code, 0, `npm install -g failed:\n${installGlobal.stdout}\n${installGlobal.stderr}`);
    bin = join(global, 'bin', 'etcd-v2-proxy');
  });
  after(async () => {
    await cleanup();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  test('the tarball holds dist/ (JS, source maps with their sources, the .d.ts rollup), the systemd example, README.md, LICENSE and nothing else', async (t) => {
    t.diagnostic(`${entries.length} files:\n${entries.join('\n')}`);
    const stray = entries.filter((e) => !ALLOWED.test(e));
    assert.deepEqual(stray, [], 'only dist JS, maps, the rollup, the systemd example, README.md, LICENSE, package.json');
    for (const must of [
      'package/dist/index.js',
      'package/dist/index.js.map',
      'package/dist/etcd-v2-proxy.d.ts',
      'package/dist/cli/main.js',
      'package/examples/systemd/etcd-v2-proxy.service',
      'package/examples/systemd/etcd.default',
      'package/README.md',
      'package/LICENSE',
      'package/package.json',
    ]) {
      assert.ok(entries.includes(must), `${must} is missing`);
    }
    // One module per source file, each with its map: nothing stale from an older build, nothing left out.
    const sources = (readdirSync(join(root, 'src'), { recursive: true }) as string[]).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)).sort();
    const modules = entries.filter((e) => e.endsWith('.js')).map((e) => e.slice('package/dist/'.length, -3)).sort();
    assert.deepEqual(modules, sources);
    for (const m of modules) assert.ok(entries.includes(`package/dist/${m}.js.map`), `dist/${m}.js.map is missing`);
    // src/ is not shipped, so the maps carry the TypeScript sources themselves.
    const map = JSON.parse(await readFile(join(project, 'node_modules', 'etcd-v2-proxy', 'dist', 'create-proxy.js.map'), 'utf8')) as { sources: string[]; sourcesContent?: string[] };
    assert.deepEqual(map.sources, ['../src/create-proxy.ts']);
    assert.equal(map.sourcesContent?.[0], await readFile(join(root, 'src', 'create-proxy.ts'), 'utf8'));
  });

  test('ESM: import { createProxy, ClusterResolver, EndpointBalancer, V2ProxyHandler } from "etcd-v2-proxy" works', async () => {
    await writeFile(
      join(project, 'esm.mjs'),
      [
        "import { createProxy, ClusterResolver, EndpointBalancer, V2ProxyHandler, parseInitialCluster, InvalidOptionError } from 'etcd-v2-proxy';",
        "const balancer = new EndpointBalancer({ endpoints: ['http://127.0.0.1:2379'] });",
        'const handler = new V2ProxyHandler({ balancer });',
        "const resolver = new ClusterResolver({ initialCluster: 'a=http://127.0.0.1:2380' });",
        'let rejected = "";',
        "try { await createProxy({ initialCluster: 'not a cluster' }); } catch (err) { rejected = err.constructor.name; }",
        'console.log(JSON.stringify({',
        '  types: [typeof createProxy, typeof ClusterResolver, typeof EndpointBalancer, typeof V2ProxyHandler],',
        "  peers: [...parseInitialCluster('a=http://127.0.0.1:2380')],",
        '  mode: handler.mode, endpoints: balancer.endpoints.map((e) => e.url), peerUrls: resolver.peerUrls, rejected,',
        '}));',
        'handler.close(); resolver.close(); balancer.close();',
      ].join('\n'),
    );
    const res = await run(process.execPath, ['esm.mjs'], project, 20000);
    assert.equal(res.code, 0, res.stderr);
    const out = JSON.parse(res.stdout) as Record<string, unknown>;
    assert.deepEqual(out.types, ['function', 'function', 'function', 'function']);
    assert.equal(out.mode, 'readwrite');
    assert.deepEqual(out.endpoints, ['http://127.0.0.1:2379']);
    assert.deepEqual(out.peerUrls, ['http://127.0.0.1:2380']);
    assert.equal(out.rejected, 'InitialClusterError');
    assert.deepEqual(out.peers, [['a', ['http://127.0.0.1:2380']]]);
  });

  test("CommonJS: require('etcd-v2-proxy') works on Node with require(esm) (20.19+), and fails with ERR_REQUIRE_ESM without it", async () => {
    await writeFile(
      join(project, 'cjs.cjs'),
      [
        "const lib = require('etcd-v2-proxy');",
        "import('etcd-v2-proxy').then((esm) => console.log(JSON.stringify({",
        '  types: [typeof lib.createProxy, typeof lib.ClusterResolver, typeof lib.EndpointBalancer, typeof lib.V2ProxyHandler],',
        '  sameModule: lib.createProxy === esm.createProxy && lib.EtcdProxyError === esm.EtcdProxyError,',
        '})));',
      ].join('\n'),
    );
    const requireModule = (process.features as { require_module?: boolean }).require_module === true;
    if (requireModule) {
      const res = await run(process.execPath, ['cjs.cjs'], project, 20000);
      assert.equal(res.code, 0, res.stderr);
      assert.deepEqual(JSON.parse(res.stdout), { types: ['function', 'function', 'function', 'function'], sameModule: true });
      assert.doesNotMatch(res.stderr, /ExperimentalWarning/);
    }
    // What Node before 20.19 does (the package is ESM-only), shown here by turning require(esm) off.
    const old = await run(process.execPath, [...(requireModule ? ['--no-experimental-require-module'] : []), 'cjs.cjs'], project, 20000);
    assert.notEqual(old.code, 0);
    assert.match(old.stderr, /ERR_REQUIRE_ESM/);
    assert.match(old.stderr, /dynamic import\(\)/);
  });

  test("TypeScript, the project's and the newest (7), resolves the types (the .d.ts rollup) with no `types` line: node16, bundler, and nodenext from a .cts file", async (t) => {
    await writeFile(
      join(project, 'use.ts'),
      [
        "import { createProxy, ClusterResolver, EndpointBalancer, V2ProxyHandler } from 'etcd-v2-proxy';",
        "import type { CreateProxyOptions, EtcdV2Proxy, ProxyMode } from 'etcd-v2-proxy';",
        "const options: CreateProxyOptions = { initialCluster: 'a=http://127.0.0.1:2380', listenClientUrls: ['http://127.0.0.1:0'] };",
        'const balancer = new EndpointBalancer({ failureWait: 5000 });',
        "const resolver = new ClusterResolver({ initialCluster: 'a=http://127.0.0.1:2380' });",
        "const mode: ProxyMode = 'readonly';",
        'export const handler: V2ProxyHandler = new V2ProxyHandler({ balancer, mode });',
        'export const start = (): Promise<EtcdV2Proxy> => createProxy(options);',
        'export const urls: readonly string[] = resolver.peerUrls;',
        '// The types are real, not `any`: this must be an error.',
        "// @ts-expect-error mode is 'readwrite' | 'readonly'",
        "export const wrong: CreateProxyOptions = { mode: 'on' };",
      ].join('\n'),
    );
    await writeFile(join(project, 'use-cjs.cts'), "import { createProxy } from 'etcd-v2-proxy';\nexport const start: typeof createProxy = createProxy;\n");
    const rollup = join(project, 'node_modules', 'etcd-v2-proxy', 'dist', 'etcd-v2-proxy.d.ts');
    const configs: Array<[string, Record<string, unknown>, string]> = [
      ['node16', { module: 'node16', moduleResolution: 'node16' }, 'use.ts'],
      ['bundler', { module: 'esnext', moduleResolution: 'bundler' }, 'use.ts'],
      ['nodenext-cjs', { module: 'nodenext', moduleResolution: 'nodenext' }, 'use-cjs.cts'],
    ];
    // skipLibCheck off: the rollup itself must type-check against its dependencies' types. No `types` line: from TypeScript 6 on,
    // its default lists no @types package, and the rollup's own reference to Node's types must bring them in.
    const versions: string[] = [];
    for (const [compiler, command] of [['project', tsc], ['newest', tscLatest]] as const) {
      versions.push(`${compiler}: ${(await run(command, ['--version'], project, 30000)).stdout.trim()}`);
      const results = await Promise.all(
        configs.map(async ([name, resolution, file]) => {
          const config = { compilerOptions: { ...resolution, target: 'ES2022', strict: true, noEmit: true, skipLibCheck: false }, files: [file] };
          await writeFile(join(project, `tsconfig.${compiler}.${name}.json`), JSON.stringify(config, null, 2));
          return [name, await run(command, ['-p', `tsconfig.${compiler}.${name}.json`, '--listFiles'], project, 60000)] as const;
        }),
      );
      for (const [name, res] of results) {
        assert.equal(res.code, 0, `tsc ${compiler} (${name}):\n${res.stdout}${res.stderr}`);
        assert.ok(res.stdout.split('\n').includes(rollup), `tsc ${compiler} (${name}) did not use ${rollup}:\n${res.stdout}`);
      }
    }
    t.diagnostic(versions.join(', '));
    assert.match(versions[1]!, /Version ([7-9]|\d{2,})\./, 'the newest TypeScript is 7 or later');
    assert.match(await readFile(rollup, 'utf8'), /^\/\/\/ <reference types="node" \/>\r?\n/);
    assert.ok(existsSync(rollup));
  });

  /** The environment of a service: PATH (with this node first, for the command's `#!/usr/bin/env node`) and `env`, nothing else. */
  const serviceEnv = (env: Record<string, string>): Record<string, string> => ({ PATH: [dirname(process.execPath), '/usr/local/bin', '/usr/bin', '/bin'].join(delimiter), ...env });

  /**
   * Starts `command` with exactly `env` and waits (20 s at most) for its
   * "listening for client requests" line; `stop()` sends SIGTERM to its PID
   * and resolves to its exit code. Stopped at clean-up if still running.
   */
  async function startService(command: string, args: readonly string[], env: Record<string, string>): Promise<{ log(): string; stop(): Promise<number | null> }> {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout.on('data', (b: Buffer) => (log += b.toString()));
    child.stderr.on('data', (b: Buffer) => (log += b.toString()));
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    const running = (): boolean => child.exitCode === null && child.signalCode === null;
    onCleanup(() => {
      if (running()) child.kill('SIGKILL');
    });
    const deadline = Date.now() + 20000;
    while (!log.includes('listening for client requests')) {
      if (!running() || Date.now() > deadline) throw new Error(`${command} ${running() ? 'was not listening after 20 s' : `exited with ${child.exitCode}`}:\n${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return {
      log: () => log,
      stop: async () => {
        if (running()) child.kill('SIGTERM');
        return exited;
      },
    };
  }

  test('npm install -g gives the etcd-v2-proxy command: compiled JavaScript, no tsx, --version, --help, migrate, exit 2 for a bad flag', async () => {
    assert.equal(realpathSync(bin), join(realpathSync(global), 'lib', 'node_modules', 'etcd-v2-proxy', 'dist', 'cli', 'main.js'));
    assert.match(await readFile(bin, 'utf8'), /^#!\/usr\/bin\/env node\n/);
    assert.equal(existsSync(join(global, 'lib', 'node_modules', 'tsx')) || existsSync(join(global, 'lib', 'node_modules', 'etcd-v2-proxy', 'node_modules', 'tsx')), false, 'tsx is not installed');
    const env = serviceEnv({});
    const v = await run(bin, ['--version'], work, 20000, env);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.stdout, `etcd-v2-proxy ${version}\n`);
    const help = await run(bin, ['--help'], work, 20000, env);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: etcd-v2-proxy \[flags\]\n/);
    assert.match(help.stdout, /--config-file <path>/);
    const migrate = await run(bin, ['migrate', '--help'], work, 20000, env);
    assert.equal(migrate.code, 0, migrate.stderr);
    assert.match(migrate.stdout, /^Usage: etcd-v2-proxy migrate --from/);
    const bad = await run(bin, ['--proxy-failure-wait', 'abc'], work, 20000, env);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, 'etcd-v2-proxy: --proxy-failure-wait: "abc" is not a whole number of milliseconds\n');
    // In a project that depends on the package, npx finds the same command.
    const npx = await run('npx', ['--no-install', 'etcd-v2-proxy', '--version'], project, 60000);
    assert.equal(npx.code, 0, npx.stderr);
    assert.equal(npx.stdout, `etcd-v2-proxy ${version}\n`);
  });

  describe('the installed command against a real etcd member', { skip: skipWithoutEtcd }, () => {
    let m: LocalEtcd;
    before(async () => {
      m = await member({ name: 'myetcd1' });
    });

    /** The article's walkthrough through a started proxy: etcdctl v2 set/get; resolves to its /v2/config/local/proxy answer. */
    async function walkthrough(url: string, key: string): Promise<string> {
      const set = await etcdctl(url, ['--no-sync', 'set', key, 'xxxxx']);
      assert.equal(set.stdout, 'xxxxx\n', set.stderr);
      const get = await etcdctl(url, ['--no-sync', 'get', key]);
      assert.equal(get.stdout, 'xxxxx\n', get.stderr);
      const config = await http(`${url}/v2/config/local/proxy`);
      assert.equal(config.status, 200);
      return config.body;
    }

    test('started with flags, with only ETCD_* variables from a Debian-style environment file, and with only --config-file: the same proxy', async () => {
      const answers: string[] = [];
      // (a) flags
      let url = `http://127.0.0.1:${await freePort()}`;
      let proxy = await startService(bin, ['--proxy', 'on', '--listen-client-urls', url, '--initial-cluster', `myetcd1=${m.peerUrl}`, '--data-dir', join(await tempDir(), 'proxy')], serviceEnv({}));
      answers.push(await walkthrough(url, 'flags'));
      assert.equal(await proxy.stop(), 0, proxy.log());

      // (b) /etc/default/etcd of a proxy host: ETCD_* variables only
      url = `http://127.0.0.1:${await freePort()}`;
      const envFile = join(await tempDir(), 'etcd');
      await writeFile(
        envFile,
        ['# /etc/default/etcd', 'ETCD_PROXY=on', `ETCD_INITIAL_CLUSTER="myetcd1=${m.peerUrl}"`, `ETCD_LISTEN_CLIENT_URLS=${url}`, `ETCD_DATA_DIR=${join(await tempDir(), 'proxy')}`, ''].join('\n'),
      );
      proxy = await startService(bin, [], serviceEnv(environmentFile(await readFile(envFile, 'utf8'))));
      answers.push(await walkthrough(url, 'environment'));
      assert.doesNotMatch(proxy.log(), /warning/);
      assert.equal(await proxy.stop(), 0, proxy.log());

      // (c) etcd's config file
      url = `http://127.0.0.1:${await freePort()}`;
      const configFile = join(await tempDir(), 'etcd.conf.yml');
      await writeFile(
        configFile,
        [`name: 'proxy'`, `data-dir: ${join(await tempDir(), 'proxy')}`, `listen-client-urls: ${url}`, `initial-cluster: "myetcd1=${m.peerUrl}"`, "proxy: 'on'", 'proxy-failure-wait: 5000', ''].join('\n'),
      );
      proxy = await startService(bin, ['--config-file', configFile], serviceEnv({}));
      answers.push(await walkthrough(url, 'config-file'));
      assert.match(proxy.log(), new RegExp(`loaded the configuration from "${configFile}"`));
      assert.equal(await proxy.stop(), 0, proxy.log());

      assert.deepEqual(answers, Array(3).fill(`${JSON.stringify({ endpoints: [m.clientUrl] })}\n`));
    });

    test("the example systemd unit: its ExecStart runs the installed command with its Environment= and the example /etc/default/etcd, and the proxy answers", async () => {
      // The unit and the environment file as the package ships them (README: cp "$(npm root -g)/etcd-v2-proxy/examples/systemd/...").
      const shipped = join(global, 'lib', 'node_modules', 'etcd-v2-proxy', 'examples', 'systemd');
      const unit = unitService(await readFile(join(shipped, 'etcd-v2-proxy.service'), 'utf8'));
      const [execStart] = unit.get('ExecStart') ?? [];
      assert.equal(execStart, '/usr/local/bin/etcd-v2-proxy $DAEMON_ARGS', 'npm install -g puts the command in /usr/local/bin; flags in DAEMON_ARGS, as Debian');
      assert.deepEqual(unit.get('EnvironmentFile'), ['-/etc/default/etcd'], 'optional, as in etcd.service');
      assert.equal(unit.get('KillSignal')?.[0], 'SIGTERM');
      assert.equal(unit.get('RestartPreventExitStatus')?.[0], '2', 'a bad setting is not restarted in a loop');
      // Environment= first, then the file, whose settings win (systemd's order); %H is the host name.
      const env: Record<string, string> = {};
      for (const line of unit.get('Environment') ?? []) {
        const [k, v] = line.split(/=(.*)/s, 2) as [string, string];
        env[k] = v.replace(/%H/g, hostname());
      }
      // The example file, with this test's cluster, port and data dir in place of the host's.
      const url = `http://127.0.0.1:${await freePort()}`;
      const example = await readFile(join(shipped, 'etcd.default'), 'utf8');
      const dataDir = await tempDir();
      const file = `${example
        .replace(/^ETCD_INITIAL_CLUSTER=.*$/m, `ETCD_INITIAL_CLUSTER=myetcd1=${m.peerUrl}`)
        .replace(/^ETCD_LISTEN_CLIENT_URLS=.*$/m, `ETCD_LISTEN_CLIENT_URLS=${url}`)
        .replace(/^# (ETCD_LISTEN_PEER_URLS=.*)$/m, '$1')}ETCD_DATA_DIR=${dataDir}\n`;
      Object.assign(env, environmentFile(file));
      assert.equal(env.ETCD_NAME, hostname());
      // systemd splits an unbraced $VAR at whitespace into words: flags given in DAEMON_ARGS.
      env.DAEMON_ARGS = '--cors https://app.example';
      const [command, ...args] = execStart!.split(' ').flatMap((w) => (w === '$DAEMON_ARGS' ? env.DAEMON_ARGS!.split(/\s+/).filter((a) => a !== '') : [w]));
      const proxy = await startService(command!.replace(/^\/usr\/local/, global), args, serviceEnv(env));
      await walkthrough(url, 'systemd');
      const cors = await http(`${url}/v2/config/local/proxy`, { headers: { Origin: 'https://app.example' } });
      assert.equal(cors.headers['access-control-allow-origin'], 'https://app.example', 'the flag in DAEMON_ARGS is read (the default is *)');
      // A member's variable left in the file: one warning, and the proxy runs.
      assert.match(proxy.log(), /etcd-v2-proxy: warning: ETCD_LISTEN_PEER_URLS is ignored: a proxy does not use it/);
      assert.equal(await readFile(join(dataDir, 'proxy', 'cluster'), 'utf8'), JSON.stringify({ PeerURLs: [m.peerUrl] }));
      assert.equal(await proxy.stop(), 0, proxy.log());
      assert.match(proxy.log(), /received SIGTERM, shutting down/);
    });
  });
});
