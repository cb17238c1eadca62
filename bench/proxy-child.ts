/**
 * This library's proxy in its own process, so that the benchmark can read its
 * CPU time and memory from /proc/<pid>. Usage:
 *   node --import tsx bench/proxy-child.ts '<CreateProxyOptions as JSON>' [--wait-leader]
 * With --wait-leader it waits (up to 10 s) until the balancer knows the
 * leader. Prints `ready <url> leader=<url|->` on stdout once serving;
 * SIGTERM closes it and exits 0 (which also writes a --cpu-prof profile).
 */
import { createProxy } from '../src/index.js';
import type { CreateProxyOptions } from '../src/index.js';

const options = JSON.parse(process.argv[2] ?? '{}') as CreateProxyOptions;
const proxy = await createProxy(options);
if (process.argv.includes('--wait-leader')) {
  const deadline = Date.now() + 10000;
  while (proxy.balancer.leader === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}
process.stdout.write(`ready ${proxy.addresses[0]!.url} leader=${proxy.balancer.leader?.url ?? '-'}\n`);
process.once('SIGTERM', () => {
  void proxy.close().then(() => process.exit(0));
});
