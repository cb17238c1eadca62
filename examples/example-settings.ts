/**
 * What the embedding examples (raw-http.ts, express.ts, koa.ts) share and
 * what is not the point of them: reading their settings, listening on a URL
 * and stopping on SIGINT/SIGTERM.
 *
 * Settings come from argv, else from the environment, else the default:
 *
 *   --listen URL            LISTEN_URL             default http://127.0.0.1:22379 (port 0: a free port)
 *   --initial-cluster LIST  ETCD_INITIAL_CLUSTER   default default=http://127.0.0.1:2380
 *   --readonly              PROXY_MODE=readonly    default readwrite
 *
 * (`ETCD_INITIAL_CLUSTER` is the variable etcd itself reads for `--initial-cluster`.)
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ProxyMode } from '../src/index.js';

export interface ExampleSettings {
  listen: URL;
  initialCluster: string;
  mode: ProxyMode;
}

/** Prints one line on stderr and exits: 2 for a bad command line, 1 when the example cannot start. */
export function fail(code: 1 | 2, message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

/** Reads `--listen`, `--initial-cluster` and `--readonly` from argv, then the environment. */
export function readSettings(argv: readonly string[] = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env): ExampleSettings {
  const given = new Map<string, string>();
  let readonly = env.PROXY_MODE === 'readonly';
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--readonly') {
      readonly = true;
      continue;
    }
    const [flag, inline] = arg.split(/=(.*)/s, 2) as [string, string | undefined];
    if (flag !== '--listen' && flag !== '--initial-cluster') {
      fail(2, `unknown argument "${arg}": use --listen URL, --initial-cluster name=peerURL[,...], --readonly`);
    }
    const value = inline ?? argv[++i];
    if (value === undefined || value === '') fail(2, `${flag} needs a value`);
    given.set(flag, value);
  }
  const rawListen = given.get('--listen') ?? env.LISTEN_URL ?? 'http://127.0.0.1:22379';
  let listen: URL;
  try {
    listen = new URL(rawListen);
  } catch {
    fail(2, `--listen: "${rawListen}" is not a URL`);
  }
  if (listen.protocol !== 'http:' || listen.port === '' || listen.pathname !== '/') {
    fail(2, `--listen: "${rawListen}" must be http://host:port`);
  }
  return {
    listen,
    initialCluster: given.get('--initial-cluster') ?? env.ETCD_INITIAL_CLUSTER ?? 'default=http://127.0.0.1:2380',
    mode: readonly ? 'readonly' : 'readwrite',
  };
}

/** Listens on `url` and prints the one line a script (or the tests) can wait for: `listening on http://host:port`. */
export async function listen(server: Server, url: URL): Promise<string> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(url.port), host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const address = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  process.stdout.write(`listening on ${address}\n`);
  return address;
}

/** Runs `close` on the first SIGINT or SIGTERM, then exits 0 (1 if closing failed; a second signal exits at once). */
export function closeOnSignals(close: () => Promise<void> | void): void {
  let closing = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (closing) process.exit(1);
    closing = true;
    process.stderr.write(`received ${signal}, closing\n`);
    Promise.resolve()
      .then(close)
      .then(
        () => process.exit(0),
        (err: Error) => fail(1, `error while closing: ${err.message}`),
      );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** Closes a node:http server: stops accepting, drops idle and open connections, resolves when it is closed. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
