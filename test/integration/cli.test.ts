import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cleanup, etcdctl, freePort, http, member, onCleanup, skipWithoutEtcd, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';

const CLI = fileURLToPath(new URL('../../examples/cli.ts', import.meta.url));

interface Run {
  pid: number;
  stderr(): string;
  exited: Promise<number | null>;
  waitFor(text: string, timeoutMs: number): Promise<void>;
}

/** The environment without any ETCD_* variable of the one running the tests, and `env` added. */
function cliEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  return { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_'))), ...env };
}

/** Starts examples/cli.ts as its own process (stopped by PID at cleanup), `env` added to its environment. */
function runCli(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: cliEnv(env) });
  let err = '';
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  child.stdout.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  onCleanup(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return {
    pid: child.pid!,
    stderr: () => err,
    exited,
    async waitFor(text, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!err.includes(text)) {
        if (Date.now() > deadline) throw new Error(`CLI did not print "${text}" within ${timeoutMs} ms:\n${err}`);
        if (child.exitCode !== null) throw new Error(`CLI exited with ${child.exitCode}:\n${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

describe('examples/cli.ts against a real etcd member', { skip: skipWithoutEtcd }, () => {
  after(cleanup);

  test('the article walkthrough: etcdctl v2 set/get through the CLI proxy, then SIGTERM exits 0', async () => {
    const m = await member({ name: 'myetcd1' });
    const port = await freePort();
    const dataDir = join(await tempDir(), 'proxy');
    const url = `http://127.0.0.1:${port}`;
    const cli = runCli(['–proxy', 'on', '--listen-client-urls', url, '--initial-cluster', `myetcd1=${m.peerUrl}`, '--data-dir', dataDir]);
    await cli.waitFor('listening for client requests', 20000);
    const log = cli.stderr();
    assert.match(log, /warning: "–proxy" starts with a typographic dash/);
    assert.match(log, new RegExp(`I \\| proxy: using peer urls \\[${m.peerUrl}\\]`));
    assert.match(log, new RegExp(`endpoints found \\["${m.clientUrl}"\\]`));
    assert.match(log, new RegExp(`listening for client requests on ${url}`));

    const set = await etcdctl(url, ['--no-sync', 'set', 'key1', 'xxxxx']);
    assert.equal(set.stdout, 'xxxxx\n', set.stderr);
    const get = await etcdctl(url, ['--no-sync', 'get', 'key1']);
    assert.equal(get.stdout, 'xxxxx\n', get.stderr);
    assert.equal((await http(`${m.clientUrl}/v2/keys/key1`)).json() instanceof Object, true);
    assert.equal(await readFile(join(dataDir, 'proxy', 'cluster'), 'utf8'), JSON.stringify({ PeerURLs: [m.peerUrl] }));

    process.kill(cli.pid, 'SIGTERM');
    assert.equal(await cli.exited, 0);
    assert.match(cli.stderr(), /received SIGTERM, shutting down/);
  });

  test('a restart prefers the cluster file and says so', async () => {
    const m = await member();
    const dataDir = await tempDir();
    const first = runCli(['--listen-client-urls', `http://127.0.0.1:${await freePort()}`, '--initial-cluster', `${m.name}=${m.peerUrl}`, '--data-dir', dataDir]);
    await first.waitFor('listening for client requests', 20000);
    process.kill(first.pid, 'SIGINT');
    assert.equal(await first.exited, 0);

    const port = await freePort();
    const second = runCli(['--listen-client-urls', `http://127.0.0.1:${port}`, '--initial-cluster', `gone=http://127.0.0.1:${await freePort()}`, '--data-dir', dataDir]);
    await second.waitFor('listening for client requests', 20000);
    assert.match(second.stderr(), new RegExp(`using peer urls \\[${m.peerUrl}\\] from cluster file ".*/proxy/cluster"`));
    const res = await http(`http://127.0.0.1:${port}/v2/keys/?recursive=true`);
    assert.equal(res.status, 200);
    process.kill(second.pid, 'SIGTERM');
    assert.equal(await second.exited, 0);
  });

  test('a malformed flag exits 2 with exactly one line on stderr', async () => {
    for (const args of [['--proxy-dial-timeout', 'abc'], ['--proxy', 'off'], ['--listen-client-urls', 'http://127.0.0.1'], ['--nope']]) {
      const cli = runCli(args);
      assert.equal(await cli.exited, 2, cli.stderr());
      const lines = cli.stderr().trimEnd().split('\n');
      assert.equal(lines.length, 1, cli.stderr());
      assert.match(lines[0]!, /^etcd-v2-proxy: .*--[a-z]/);
    }
  });

  test("a listen URL whose port is taken: exit 1 (the host's fault, not the flag's, as etcd), one line naming it", async () => {
    const m = await member();
    // The member's own client port is taken, by the member.
    const cli = runCli(['--listen-client-urls', m.clientUrl, '--initial-cluster', `${m.name}=${m.peerUrl}`, '--data-dir', await tempDir()]);
    assert.equal(await cli.exited, 1, cli.stderr());
    const errors = cli.stderr().trimEnd().split('\n').filter((l) => !/ (I|N|W) \| /.test(l));
    assert.equal(errors.length, 1, cli.stderr());
    assert.match(errors[0]!, new RegExp(`cannot listen on ${m.clientUrl}: .*EADDRINUSE`));
  });

  test('a corrupt cluster file: exit 1, the file named, its bytes untouched', async () => {
    const dataDir = await tempDir();
    await mkdir(join(dataDir, 'proxy'), { mode: 0o700 });
    const file = join(dataDir, 'proxy', 'cluster');
    await writeFile(file, '{"PeerURLs":["http://127.0.0.1:1"', { mode: 0o600 });
    const cli = runCli(['--listen-client-urls', `http://127.0.0.1:${await freePort()}`, '--initial-cluster', 'a=http://127.0.0.1:2380', '--data-dir', dataDir]);
    assert.equal(await cli.exited, 1);
    assert.match(cli.stderr(), new RegExp(`cluster file ${file}: is not valid JSON`));
    assert.equal(await readFile(file, 'utf8'), '{"PeerURLs":["http://127.0.0.1:1"');
  });

  test('peers that never answer: exit 1 naming the peers, within the start-up bound', async () => {
    const deadPort = await freePort();
    const started = Date.now();
    const cli = runCli(['--listen-client-urls', `http://127.0.0.1:${await freePort()}`, '--initial-cluster', `a=http://127.0.0.1:${deadPort}`, '--data-dir', await tempDir()]);
    assert.equal(await cli.exited, 1);
    assert.ok(Date.now() - started < 25000);
    assert.match(cli.stderr(), new RegExp(`could not get the cluster's members from peer\\(s\\) http://127.0.0.1:${deadPort}`));
  });
});

describe('examples/cli.ts: ETCD_* variables, --config-file, their precedence and warnings', { skip: skipWithoutEtcd }, () => {
  after(cleanup);
  let m: LocalEtcd;
  let cluster: string;

  /** Starts the CLI, waits for it to listen, and checks that it forwards at `url`. */
  async function started(args: string[], env: Record<string, string>, url: string): Promise<Run> {
    const cli = runCli(args, env);
    await cli.waitFor('listening for client requests', 20000);
    assert.match(cli.stderr(), new RegExp(`listening for client requests on ${url}\n`));
    const res = await http(`${url}/v2/keys/?recursive=true`);
    assert.equal(res.status, 200);
    return cli;
  }

  test('a flag beats its variable, which is named in a warning', async () => {
    m = await member();
    cluster = `${m.name}=${m.peerUrl}`;
    const url = `http://127.0.0.1:${await freePort()}`;
    const cli = await started(['--listen-client-urls', url, '--data-dir', await tempDir()], { ETCD_LISTEN_CLIENT_URLS: `http://127.0.0.1:${await freePort()}`, ETCD_INITIAL_CLUSTER: cluster }, url);
    assert.match(cli.stderr(), /etcd-v2-proxy: warning: ETCD_LISTEN_CLIENT_URLS is ignored: --listen-client-urls is given on the command line, and a flag beats its variable\n/);
    assert.match(cli.stderr(), new RegExp(`using peer urls \\[${m.peerUrl}\\]`), 'ETCD_INITIAL_CLUSTER was read');
    process.kill(cli.pid, 'SIGTERM');
    assert.equal(await cli.exited, 0);
  });

  test('a config file beats both, with a warning for each flag and variable it replaces', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const file = join(await tempDir(), 'etcd.conf.yml');
    await writeFile(file, `listen-client-urls: ${url}\ninitial-cluster: ${cluster}\ndata-dir: ${await tempDir()}\nproxy-failure-wait: 5000\n`);
    const cli = await started(['--config-file', file, '--listen-client-urls', `http://127.0.0.1:${await freePort()}`], { ETCD_PROXY_FAILURE_WAIT: 'abc', ETCD_PROXY: 'readonly' }, url);
    const log = cli.stderr();
    for (const ignored of ['--listen-client-urls', 'ETCD_PROXY', 'ETCD_PROXY_FAILURE_WAIT']) {
      assert.match(log, new RegExp(`etcd-v2-proxy: warning: ${ignored} is ignored: --config-file ${file} replaces flags and environment variables \\(as in etcd\\)\n`));
    }
    assert.match(log, /loaded the configuration from/);
    // Not readonly: ETCD_PROXY=readonly was ignored.
    assert.equal((await http(`${url}/v2/keys/cfg`, { method: 'PUT', body: 'value=1', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } })).status, 201);
    process.kill(cli.pid, 'SIGTERM');
    assert.equal(await cli.exited, 0);
  });

  test("a member's variable (ETCD_LISTEN_PEER_URLS) gets one warning line and the proxy runs", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const cli = await started([], { ETCD_LISTEN_CLIENT_URLS: url, ETCD_INITIAL_CLUSTER: cluster, ETCD_DATA_DIR: await tempDir(), ETCD_LISTEN_PEER_URLS: 'http://127.0.0.1:2380' }, url);
    const warnings = cli.stderr().split('\n').filter((l) => l.includes('warning'));
    assert.deepEqual(warnings, ["etcd-v2-proxy: warning: ETCD_LISTEN_PEER_URLS is ignored: a proxy does not use it (it is an etcd member's setting)"]);
    const set = await etcdctl(url, ['--no-sync', 'set', 'peer-var', 'ok']);
    assert.equal(set.stdout, 'ok\n', set.stderr);
    process.kill(cli.pid, 'SIGTERM');
    assert.equal(await cli.exited, 0);
  });

  test('a malformed variable or config key exits 2 with one line naming it', async () => {
    const file = join(await tempDir(), 'bad.yml');
    await writeFile(file, 'proxy-dial-timeout: soon\n');
    const cases: Array<[string[], Record<string, string>, string]> = [
      [[], { ETCD_PROXY_FAILURE_WAIT: 'abc' }, 'etcd-v2-proxy: ETCD_PROXY_FAILURE_WAIT: "abc" is not a whole number of milliseconds'],
      [['--config-file', file], {}, `etcd-v2-proxy: ${file}: proxy-dial-timeout: "soon" is not a whole number of milliseconds`],
      [[], { ETCD_LISTEN_CLIENT_URLS: 'http://127.0.0.1' }, 'etcd-v2-proxy: ETCD_LISTEN_CLIENT_URLS: '],
    ];
    for (const [args, env, line] of cases) {
      const cli = runCli(args, env);
      assert.equal(await cli.exited, 2, cli.stderr());
      const lines = cli.stderr().trimEnd().split('\n');
      assert.equal(lines.length, 1, cli.stderr());
      assert.ok(lines[0]!.startsWith(line), `${lines[0]} starts with ${line}`);
    }
  });

  test("etcd's default --cors '*': the proxy's own answers carry a member's CORS headers, once each; its 405s say nosniff", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const cli = await started(['--listen-client-urls', url, '--initial-cluster', cluster, '--data-dir', await tempDir()], {}, url);
    const headers = { Origin: 'https://app.example' };
    const fromMember = await http(`${m.clientUrl}/v2/keys/`, { headers });
    for (const path of ['/v2/config/local/proxy', '/v2/keys/']) {
      const res = await http(`${url}${path}`, { headers });
      assert.equal(res.status, 200);
      for (const h of ['access-control-allow-origin', 'access-control-allow-methods', 'access-control-allow-headers']) {
        assert.equal(res.headers[h], fromMember.headers[h], `${path} ${h}`);
        assert.equal(res.rawHeaders.filter((name) => name.toLowerCase() === h).length, 1, `${path} ${h} once`);
      }
    }
    const refused = await http(`${url}/v2/config/local/proxy`, { method: 'DELETE', headers });
    assert.equal(refused.status, 405);
    assert.equal(refused.headers['x-content-type-options'], 'nosniff');
    assert.equal(refused.headers['access-control-allow-origin'], '*');
    assert.equal(refused.headers.allow, 'GET, HEAD');
    process.kill(cli.pid, 'SIGTERM');
    assert.equal(await cli.exited, 0);
  });
});
