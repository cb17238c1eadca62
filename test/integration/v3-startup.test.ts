/**
 * Start-up with the choice of backend: a forwarding proxy (the default
 * backend) in front of a v3-only member fails and names `--backend v3`; a
 * v3-mode proxy refuses a prefix holding data that is not a v2 tree, an
 * unreachable cluster and a cluster that refuses its credentials; bad flags
 * exit 2. Each failure is one clear line from the CLI.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createProxy } from '../../src/index.js';
import { EtcdProxyError, InvalidOptionError } from '../../src/errors.js';
import { cleanup, etcdctlV3, freePort, http, member, onCleanup, skipWithoutEtcd, startCli, tempDir } from './harness.js';
import type { LocalEtcd } from './harness.js';

const CLI = fileURLToPath(new URL('../../examples/cli.ts', import.meta.url));

/** Runs examples/cli.ts to its exit (bounded by `timeoutMs`): exit code and stderr. */
function runCliToExit(args: readonly string[], timeoutMs = 30000): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  const pid = child.pid!;
  onCleanup(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      process.kill(pid, 'SIGKILL');
      reject(new Error(`examples/cli.ts ${args.join(' ')} still running after ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout });
    });
  });
}

/** The CLI's stderr is exactly one line `etcd-v2-proxy: ...` matching `re`. */
function assertOneLine(stderr: string, re: RegExp): void {
  const lines = stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  assert.match(lines[0]!, /^etcd-v2-proxy: /);
  assert.match(lines[0]!, re);
}

async function listen(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}

describe('start-up and the choice of backend', { skip: skipWithoutEtcd }, () => {
  let v3only: LocalEtcd;
  let initialCluster: string;

  before(async () => {
    v3only = await member({ enableV2: false });
    initialCluster = `${v3only.name}=${v3only.peerUrl}`;
    assert.equal((await http(`${v3only.clientUrl}/v2/keys/`)).status, 404);
  });
  after(cleanup);

  describe('the default backend (v2, forwarding) in front of a v3-only member', () => {
    it('createProxy rejects with V2DisabledError naming --backend v3, and leaves nothing listening', async () => {
      const url = await listen();
      await assert.rejects(
        createProxy({ initialCluster, listenClientUrls: [url], dataDir: await tempDir() }),
        (err: unknown) => {
          assert.ok(err instanceof EtcdProxyError, String(err));
          assert.equal(err.code, 'ERR_ETCD_PROXY_V2_DISABLED');
          assert.equal(err.name, 'V2DisabledError');
          assert.match(err.message, /--backend v3/);
          assert.ok(err.message.includes(v3only.clientUrl), err.message);
          return true;
        },
      );
      await assert.rejects(http(`${url}/v2/keys/`, { timeout: 2000 }), /ECONNREFUSED/);
    });

    it('the CLI exits 1 with one line naming --backend v3', async () => {
      const r = await runCliToExit(['--listen-client-urls', await listen(), '--initial-cluster', initialCluster, '--data-dir', await tempDir()]);
      assert.equal(r.code, 1, r.stderr);
      assertOneLine(r.stderr, /--backend v3/);
    });

    it('the same CLI with --backend v3 starts and serves v2 from the v3 API', async () => {
      const url = await listen();
      await startCli(['--backend', 'v3', '--listen-client-urls', url, '--initial-cluster', initialCluster, '--data-dir', await tempDir()]);
      const set = await http(`${url}/v2/keys/started`, { method: 'PUT', body: 'value=yes' });
      assert.equal(set.status, 201, set.body);
      const get = await http(`${url}/v2/keys/started`);
      assert.equal((get.json() as { node: { value: string } }).node.value, 'yes');
    });
  });

  describe('--backend v3 refusals', () => {
    it('a prefix holding data that is not a v2 tree: createProxy rejects, the CLI exits 1 with one line naming the key', async () => {
      const m = await member({ enableV2: false });
      const put = await etcdctlV3(m.clientUrl, ['put', '/v2/foo', 'not-v2']);
      assert.equal(put.code, 0, put.stderr);
      const ic = `${m.name}=${m.peerUrl}`;
      await assert.rejects(createProxy({ backend: 'v3', initialCluster: ic, listenClientUrls: [await listen()], dataDir: await tempDir() }), (err: unknown) => {
        assert.ok(err instanceof EtcdProxyError, String(err));
        assert.equal(err.code, 'ERR_ETCD_PROXY_V3_BACKEND_START');
        assert.match(err.message, /\/v2\/foo/);
        assert.match(err.message, /v3-prefix/);
        return true;
      });
      const r = await runCliToExit(['--backend', 'v3', '--listen-client-urls', await listen(), '--initial-cluster', ic, '--data-dir', await tempDir()]);
      assert.equal(r.code, 1, r.stderr);
      assertOneLine(r.stderr, /\/v2\/foo.*--v3-prefix|--v3-prefix.*\/v2\/foo/);
      // Another prefix is free: the proxy starts there.
      await startCli(['--backend', 'v3', '--v3-prefix', '/v2/foo', '--listen-client-urls', await listen(), '--initial-cluster', ic, '--data-dir', await tempDir()]);
    });

    it('an unreachable cluster: the CLI exits 1 with one line', async () => {
      const nobody = `ghost=http://127.0.0.1:${await freePort()}`;
      const r = await runCliToExit(['--backend', 'v3', '--listen-client-urls', await listen(), '--initial-cluster', nobody, '--data-dir', await tempDir()], 60000);
      assert.equal(r.code, 1, r.stderr);
      assertOneLine(r.stderr, /./);
    });

    it("members found (through the peer URL) whose client URLs do not answer: the CLI exits 1 with one line about the v3 API", async () => {
      const m = await member({ enableV2: false, advertiseClientUrl: `http://127.0.0.1:${await freePort()}` });
      const r = await runCliToExit(['--backend', 'v3', '--listen-client-urls', await listen(), '--initial-cluster', `${m.name}=${m.peerUrl}`, '--data-dir', await tempDir()], 60000);
      assert.equal(r.code, 1, r.stderr);
      assertOneLine(r.stderr, /v3/);
    });

    it('a cluster with v3 auth on: refused without credentials and with a wrong password (one line, exit 1), started with the right ones', async () => {
      const m = await member({ enableV2: false });
      for (const args of [['user', 'add', 'root:rootpw'], ['auth', 'enable']]) {
        const r = await etcdctlV3(m.clientUrl, args);
        assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      }
      const ic = `${m.name}=${m.peerUrl}`;
      const none = await runCliToExit(['--backend', 'v3', '--listen-client-urls', await listen(), '--initial-cluster', ic, '--data-dir', await tempDir()]);
      assert.equal(none.code, 1, none.stderr);
      assertOneLine(none.stderr, /auth|user|credential|permission/i);
      const wrong = await runCliToExit(['--backend', 'v3', '--v3-user', 'root:nope', '--listen-client-urls', await listen(), '--initial-cluster', ic, '--data-dir', await tempDir()]);
      assert.equal(wrong.code, 1, wrong.stderr);
      assertOneLine(wrong.stderr, /auth|user|password|credential/i);
      const url = await listen();
      await startCli(['--backend', 'v3', '--v3-user', 'root:rootpw', '--listen-client-urls', url, '--initial-cluster', ic, '--data-dir', await tempDir()]);
      const set = await http(`${url}/v2/keys/authed`, { method: 'PUT', body: 'value=ok' });
      assert.equal(set.status, 201, set.body);
    });
  });

  describe('bad flags and options', () => {
    for (const [args, re] of [
      [['--backend', 'v4'], /--backend/],
      [['--v3-prefix', '/x'], /--v3-prefix.*--backend v3/],
      [['--v3-user', 'a:b'], /--v3-user.*--backend v3/],
      [['--backend', 'v3', '--v3-prefix', 'x'], /--v3-prefix/],
      [['--backend', 'v3', '--v3-prefix', '/x/'], /--v3-prefix/],
      [['--backend', 'v3', '--v3-user', 'nocolon'], /--v3-user/],
    ] as const) {
      it(`${args.join(' ')}: exit 2 with one line`, async () => {
        const r = await runCliToExit([...args, '--listen-client-urls', 'http://127.0.0.1:0', '--initial-cluster', 'a=http://127.0.0.1:1', '--data-dir', await tempDir()]);
        assert.equal(r.code, 2, r.stderr);
        assertOneLine(r.stderr, re);
      });
    }

    it('createProxy: backend "v4", v3Prefix without backend v3, a bad v3Prefix: InvalidOptionError', async () => {
      const base = { initialCluster: 'a=http://127.0.0.1:1', listenClientUrls: ['http://127.0.0.1:0'] };
      for (const [options, option] of [
        [{ backend: 'v4' }, 'backend'],
        [{ v3Prefix: '/x' }, 'v3Prefix'],
        [{ backend: 'v3', v3Prefix: 'x' }, 'v3Prefix'],
      ] as const) {
        await assert.rejects(createProxy({ ...base, ...(options as object) }), (err: unknown) => {
          assert.ok(err instanceof InvalidOptionError, `${JSON.stringify(options)}: ${String(err)}`);
          assert.equal(err.option, option);
          return true;
        });
      }
    });
  });
});
