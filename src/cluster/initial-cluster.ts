import { InitialClusterError } from '../errors.js';
import { parseHostPortUrl } from '../validate-options.js';

/**
 * Parses etcd's `--initial-cluster` value, `name=peerURL,name2=peerURL2`.
 * A name may appear several times to give a member several peer URLs.
 *
 * @returns member name to its peer URLs, in the order given.
 * @throws {@link InitialClusterError} naming the entry that is wrong.
 * @public
 */
export function parseInitialCluster(initialCluster: string): Map<string, string[]> {
  if (typeof initialCluster !== 'string' || initialCluster.trim() === '') {
    throw new InitialClusterError('', 'it is empty; expected name=peerURL[,name=peerURL...]');
  }
  const members = new Map<string, string[]>();
  for (const rawPart of initialCluster.split(',')) {
    const part = rawPart.trim();
    // As etcd, which reads the value as a query string: an empty entry (a trailing comma, a doubled one) is nothing.
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq === -1) throw new InitialClusterError(part, 'no "=": expected name=peerURL');
    const name = part.slice(0, eq).trim();
    if (name === '') throw new InitialClusterError(part, 'the member name before "=" is empty');
    const parsed = parseHostPortUrl(part.slice(eq + 1).trim());
    if (parsed.error !== undefined) throw new InitialClusterError(part, `bad peer URL: ${parsed.error}`);
    const urls = members.get(name);
    if (urls === undefined) members.set(name, [parsed.url]);
    else if (!urls.includes(parsed.url)) urls.push(parsed.url);
  }
  if (members.size === 0) throw new InitialClusterError('', 'it has no entry; expected name=peerURL[,name=peerURL...]');
  return members;
}

/** All peer URLs of an `initialCluster` string, de-duplicated and sorted (as etcd does). */
export function initialClusterPeerUrls(initialCluster: string): string[] {
  const all = new Set<string>();
  for (const urls of parseInitialCluster(initialCluster).values()) for (const u of urls) all.add(u);
  return [...all].sort();
}
