import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ClusterFileError, MemberDataDirError } from '../errors.js';
import { parseHostPortUrl } from '../validate-options.js';

/**
 * The proxy's persisted peer list, `<dataDir>/proxy/cluster`, in the format
 * `etcd --proxy on` itself reads and writes: `{"PeerURLs":["http://..."]}`.
 * A data dir left by etcd's proxy works here unchanged, and the other way round.
 */

/** Path of the cluster file inside a data dir. @public */
export function clusterFilePath(dataDir: string): string {
  return join(resolve(dataDir), 'proxy', 'cluster');
}

/**
 * Reads the peer URLs persisted in `<dataDir>/proxy/cluster`.
 *
 * @returns the peer URLs, or `undefined` when there is no cluster file yet.
 * @throws {@link ClusterFileError} when the file exists but is unreadable or not
 *   etcd's format; the file is left as it is.
 * @throws {@link MemberDataDirError} when the data dir holds an etcd member's data.
 * @public
 */
export async function readClusterFile(dataDir: string): Promise<string[] | undefined> {
  await refuseMemberDataDir(dataDir);
  const path = clusterFilePath(dataDir);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ClusterFileError(path, `cannot be read (${(err as Error).message})`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ClusterFileError(path, `is not valid JSON (${(err as Error).message}); fix or remove it`, { cause: err });
  }
  const peerUrls = (parsed as { PeerURLs?: unknown } | null)?.PeerURLs;
  if (!Array.isArray(peerUrls) || peerUrls.length === 0) {
    throw new ClusterFileError(path, 'expected {"PeerURLs":["http://host:port", ...]} with at least one URL; fix or remove it');
  }
  return peerUrls.map((u, i) => {
    const checked = typeof u === 'string' ? parseHostPortUrl(u) : { error: `${JSON.stringify(u)} is not a string` };
    if (checked.error !== undefined) throw new ClusterFileError(path, `PeerURLs[${i}]: ${checked.error}; fix or remove it`);
    return checked.url;
  });
}

/**
 * Writes the peer URLs to `<dataDir>/proxy/cluster` atomically: a temporary
 * file is written and fsynced, then renamed over the old one, and the
 * directory is fsynced. The `proxy/` directory is created with mode 0700 and
 * the file with mode 0600, as etcd does.
 * @public
 */
export async function writeClusterFile(dataDir: string, peerUrls: readonly string[]): Promise<void> {
  const path = clusterFilePath(dataDir);
  const dir = join(resolve(dataDir), 'proxy');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  const body = JSON.stringify({ PeerURLs: peerUrls });
  const file = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC, 0o600);
  try {
    await file.writeFile(body);
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  const dirHandle = await open(dir, fsConstants.O_RDONLY);
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}

async function refuseMemberDataDir(dataDir: string): Promise<void> {
  try {
    if ((await stat(join(dataDir, 'member'))).isDirectory()) throw new MemberDataDirError(resolve(dataDir));
  } catch (err) {
    if (err instanceof MemberDataDirError) throw err;
  }
}
