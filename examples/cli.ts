/**
 * A drop-in for `etcd --proxy on|readonly`, for ad-hoc runs from a checkout
 * (installed, the same command is `etcd-v2-proxy`; the code is src/cli/):
 *
 *   npx tsx examples/cli.ts --proxy on --listen-client-urls http://127.0.0.1:22379 \
 *       --initial-cluster myetcd1=http://127.0.0.1:12380 --data-dir /tmp/proxy
 *
 * Every flag can also come from etcd's ETCD_* environment variable for it, or
 * from etcd's YAML config file (--config-file). `npx tsx examples/cli.ts
 * migrate --help` copies a v2 store into the v3 layout, for `--backend v3`.
 *
 * Exit codes: 0 after SIGINT/SIGTERM, 1 when the proxy cannot start, 2 for a
 * bad command line, variable or config key. Logs etcd-style lines on stderr.
 */
import { runCli } from '../src/cli/run.js';

runCli(process.argv.slice(2), { command: 'npx tsx examples/cli.ts' }).catch((err: Error) => {
  process.stderr.write(`etcd-v2-proxy: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
