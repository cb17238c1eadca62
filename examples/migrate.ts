/**
 * Copies a live v2 store into the v3 layout of `--backend v3`, from a
 * checkout (the installed command is `etcd-v2-proxy migrate`; the code is
 * src/cli/migrate.ts):
 *
 *   npx tsx examples/migrate.ts --from http://v2member:2379 --to http://v3member:2379 \
 *       [--v3-prefix /v2] [--dry-run] [--force] [--prune] [--hidden /_a,/dir/*\/_b] \
 *       [--v2-user root:pw] [--v3-user name:pw] [--cacert ca.pem] [--cert c.pem --key k.pem]
 *
 * Progress on stderr, the report on stdout. Exit codes: 0 done, 1 the copy
 * failed, 2 a bad command line.
 */
import { pathToFileURL } from 'node:url';
import { migrateMain } from '../src/cli/migrate.js';

export { formatReport, migrateHelp, migrateMain } from '../src/cli/migrate.js';

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  migrateMain(process.argv.slice(2), 'npx tsx examples/migrate.ts').then(
    (code) => {
      process.exitCode = code;
    },
    (err: Error) => {
      process.stderr.write(`etcd-v2-proxy migrate: ${err.stack ?? err.message}\n`);
      process.exitCode = 1;
    },
  );
}
