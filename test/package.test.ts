/**
 * What `npm install etcd-v2-proxy` gives a user: `npm pack` (with the
 * prepack build) into a temporary directory, the tarball installed with a
 * normal `npm install` into a fresh temporary project (its dependencies come
 * from the npm registry), then used from ESM, from CommonJS and from
 * TypeScript the way a consumer would. Needs no etcd; needs the npm registry.
 * Bounded: each step has its own timeout, the whole test 150 s.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const tsc = join(root, 'node_modules', '.bin', 'tsc');

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

/** What the tarball may hold: the build's JS and source maps, the .d.ts rollup, README, LICENSE and package.json (npm always adds it). */
const ALLOWED = /^package\/(dist\/(?:[\w-]+\/)?[\w-]+\.js|dist\/(?:[\w-]+\/)?[\w-]+\.js\.map|dist\/etcd-v2-proxy\.d\.ts|README\.md|LICENSE|package\.json)$/;

describe('the npm package, installed into a fresh project', { timeout: 150000 }, () => {
  let work: string;
  let tarball: string;
  let project: string;
  let entries: string[];

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
  });
  after(async () => {
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  test('the tarball holds dist/ (JS, source maps with their sources, the .d.ts rollup), README.md, LICENSE and nothing else', async (t) => {
    t.diagnostic(`${entries.length} files:\n${entries.join('\n')}`);
    const stray = entries.filter((e) => !ALLOWED.test(e));
    assert.deepEqual(stray, [], 'only dist JS, maps, the rollup, README.md, LICENSE, package.json');
    for (const must of ['package/dist/index.js', 'package/dist/index.js.map', 'package/dist/etcd-v2-proxy.d.ts', 'package/README.md', 'package/LICENSE', 'package/package.json']) {
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

  test('TypeScript resolves the types (the .d.ts rollup) with moduleResolution node16 and bundler, and nodenext from a .cts file', async () => {
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
    // skipLibCheck off: the rollup itself must type-check against its dependencies' types.
    const results = await Promise.all(
      configs.map(async ([name, resolution, file]) => {
        const config = { compilerOptions: { ...resolution, target: 'ES2022', strict: true, noEmit: true, types: ['node'], skipLibCheck: false }, files: [file] };
        await writeFile(join(project, `tsconfig.${name}.json`), JSON.stringify(config, null, 2));
        return [name, await run(tsc, ['-p', `tsconfig.${name}.json`, '--listFiles'], project, 60000)] as const;
      }),
    );
    for (const [name, res] of results) {
      assert.equal(res.code, 0, `tsc (${name}):\n${res.stdout}${res.stderr}`);
      assert.ok(res.stdout.split('\n').includes(rollup), `tsc (${name}) did not use ${rollup}:\n${res.stdout}`);
    }
    assert.ok(existsSync(rollup));
  });
});
