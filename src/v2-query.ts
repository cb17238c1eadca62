/**
 * The boolean flags of a v2 request's query string (`wait`, `quorum`), read
 * the way etcd reads them, so that the proxy treats as a watch or a quorum
 * read exactly what the member will: etcd takes the first value of the
 * parameter, percent-decoded, and accepts Go's boolean spellings
 * (`strconv.ParseBool`): `1`, `t`, `T`, `true`, `TRUE`, `True`.
 */

const TRUE_SPELLINGS: ReadonlySet<string> = new Set(['1', 't', 'T', 'true', 'TRUE', 'True']);

/** `part` of a query percent-decoded and with `+` as a space, as Go's url.QueryUnescape does; undefined when malformed. */
function unescape(part: string): string | undefined {
  if (!part.includes('%') && !part.includes('+')) return part;
  try {
    return decodeURIComponent(part.replaceAll('+', ' '));
  } catch {
    return undefined;
  }
}

/**
 * Whether the request target `url` (`/v2/keys/a?wait=true`) sets the flag
 * `name` true. A malformed query (which etcd refuses with 400) sets nothing.
 */
export function queryFlag(url: string, name: string): boolean {
  const query = url.indexOf('?');
  if (query < 0) return false;
  for (let start = query + 1; start <= url.length; ) {
    let end = url.indexOf('&', start);
    if (end < 0) end = url.length;
    const eq = url.indexOf('=', start);
    const keyEnd = eq >= 0 && eq < end ? eq : end;
    if (keyEnd > start && unescape(url.slice(start, keyEnd)) === name) {
      const value = keyEnd < end ? unescape(url.slice(keyEnd + 1, end)) : '';
      return value !== undefined && TRUE_SPELLINGS.has(value);
    }
    start = end + 1;
  }
  return false;
}
