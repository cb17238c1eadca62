/**
 * The article's walkthrough (section 四), replayed with this library in place
 * of `etcd --proxy on`: start one etcd member, start the proxy CLI, then
 * read and write through the proxy with etcdctl v2. Everything runs on
 * 127.0.0.1 with free ports and temporary dirs, and is stopped at the end.
 *
 *   npm run demo
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startEtcd } from './local-etcd.js';

const say = (text: string): void => void process.stdout.write(`${text}\n`);
const show = (cmd: string): void => say(`\n$ ${cmd}`);

function etcdctl(endpoint: string, ...args: string[]): string {
  show(`ETCDCTL_API=2 etcdctl --endpoints ${endpoint} ${args.join(' ')}`);
  try {
    const out = execFileSync('etcdctl', ['--endpoints', endpoint, ...args], {
      env: { ...process.env, ETCDCTL_API: '2' },
      encoding: 'utf8',
      timeout: 10000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    process.stdout.write(out);
    return out;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; status?: number };
    process.stdout.write(`${e.stdout ?? ''}${e.stderr ?? ''}(exit ${e.status ?? '?'})\n`);
    return '';
  }
}

async function curl(method: string, url: string): Promise<void> {
  show(`curl -s -X ${method} ${url}`);
  const res = await fetch(url, { method, signal: AbortSignal.timeout(5000) });
  say(`HTTP ${res.status} ${await res.text()}`.trimEnd());
}

/** Starts examples/cli.ts and resolves once it says it is listening. */
function startProxyCli(args: string[]): Promise<{ stop: () => Promise<number | null> }> {
  const cli = fileURLToPath(new URL('./cli.ts', import.meta.url));
  show(`npx tsx examples/cli.ts ${args.join(' ')} &`);
  const child = spawn(process.execPath, ['--import', 'tsx', cli, ...args], { stdio: ['ignore', 'inherit', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`the proxy did not start within 20 s:\n${seen}`)), 20000);
    child.stderr!.on('data', (b: Buffer) => {
      process.stdout.write(b.toString().replace(/^/gm, '  [proxy] ').replace(/ {2}\[proxy\] $/, ''));
      seen += b.toString();
      if (seen.includes('listening for client requests')) {
        clearTimeout(timer);
        resolve({
          stop: async () => {
            child.kill('SIGTERM');
            return exited;
          },
        });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the proxy exited with code ${code}:\n${seen}`));
    });
  });
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'etcd-v2-proxy-demo-'));
  const [clientPort, peerPort, proxyPort, roPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const proxyUrl = `http://127.0.0.1:${proxyPort}`;
  const stops: Array<() => Promise<unknown>> = [() => rm(work, { recursive: true, force: true })];
  try {
    say('1. Start a one-member etcd cluster (the article uses ports 12379/12380; free ports are used here).');
    show(
      `etcd --name myetcd1 --enable-v2 --listen-client-urls ${clientUrl} --advertise-client-urls ${clientUrl} ` +
        `--listen-peer-urls ${peerUrl} --initial-advertise-peer-urls ${peerUrl} --initial-cluster myetcd1=${peerUrl} --data-dir ${work}/myetcd1 &`,
    );
    const member = await startEtcd({ name: 'myetcd1', clientPort, peerPort, dataDir: join(work, 'myetcd1') });
    stops.unshift(() => member.stop());
    say(`  [etcd] member myetcd1 is healthy (pid ${member.child.pid})`);

    say('\n2. Start the proxy: this library\'s CLI takes etcd\'s proxy flags.');
    const proxy = await startProxyCli([
      '--proxy', 'on',
      '--listen-client-urls', proxyUrl,
      '--initial-cluster', `myetcd1=${peerUrl}`,
      '--data-dir', join(work, 'proxy'),
    ]);
    stops.unshift(() => proxy.stop());

    say('\n3. The cluster, seen directly:');
    etcdctl(clientUrl, 'member', 'list');

    say('\n4. Read and write through the proxy (v2 API):');
    etcdctl(proxyUrl, 'set', 'key1', 'xxxxx');
    etcdctl(proxyUrl, 'get', 'key1');
    say('\n(etcdctl v2 asks /v2/members first and then talks to the members it lists; --no-sync keeps every request on the proxy.)');
    etcdctl(proxyUrl, '--no-sync', 'set', 'key2', 'through-the-proxy');
    etcdctl(proxyUrl, '--no-sync', 'get', 'key2');
    await curl('GET', `${proxyUrl}/v2/config/local/proxy`);
    show(`cat ${work}/proxy/proxy/cluster`);
    say(execFileSync('cat', [join(work, 'proxy', 'proxy', 'cluster')], { encoding: 'utf8' }));

    say("\n5. The article ends with a v3 client failing on etcd's proxy (it speaks v2 only); here the same port forwards it to the cluster:");
    const etcdctl3 = (endpoint: string, ...args: string[]): void => {
      show(`ETCDCTL_API=3 etcdctl --endpoints=${endpoint} ${args.join(' ')}`);
      try {
        say(execFileSync('etcdctl', [`--endpoints=${endpoint}`, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, encoding: 'utf8', timeout: 10000, stdio: ['ignore', 'pipe', 'pipe'] }).trimEnd());
      } catch (err) {
        const lines = String((err as { stderr?: string }).stderr ?? '').trim().split('\n');
        say(`etcdctl v3 failed: ${lines[lines.length - 1]}`);
        throw err;
      }
    };
    etcdctl3(clientUrl, 'put', 'key2', 'sssssssssss');
    etcdctl3(proxyUrl, 'get', 'key2');

    say('\n6. A readonly proxy forwards reads and answers writes with 501:');
    const ro = await startProxyCli([
      '--proxy', 'readonly',
      '--listen-client-urls', `http://127.0.0.1:${roPort}`,
      '--initial-cluster', `myetcd1=${peerUrl}`,
      '--data-dir', join(work, 'proxy-ro'),
    ]);
    stops.unshift(() => ro.stop());
    await curl('GET', `http://127.0.0.1:${roPort}/v2/keys/key1`);
    await curl('PUT', `http://127.0.0.1:${roPort}/v2/keys/key1?value=changed`);
    const roCode = await ro.stop();
    say(`  readonly proxy stopped with SIGTERM, exit code ${roCode}`);

    say('\n7. Stop the proxy (SIGTERM closes it cleanly) and the member.');
    const code = await proxy.stop();
    say(`  proxy exit code ${code}`);
    if (code !== 0 || roCode !== 0) process.exitCode = 1;
  } finally {
    for (const stop of stops) await stop();
  }
  say('\nDone: everything started by the demo is stopped and its temporary files are removed.');
}

main().catch((err: Error) => {
  process.stderr.write(`demo failed: ${err.message}\n`);
  process.exit(1);
});
