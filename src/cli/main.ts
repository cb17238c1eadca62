#!/usr/bin/env node
/**
 * The installed `etcd-v2-proxy` command (package.json "bin"): a drop-in for
 * `etcd --proxy on|readonly` that reads etcd's flags, its ETCD_* environment
 * variables and its --config-file. `etcd-v2-proxy --help` lists the flags;
 * `etcd-v2-proxy migrate --help` the v2-to-v3 copy.
 */
import { runCli } from './run.js';

runCli(process.argv.slice(2), { command: 'etcd-v2-proxy' }).catch((err: Error) => {
  process.stderr.write(`etcd-v2-proxy: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
