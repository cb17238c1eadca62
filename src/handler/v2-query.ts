/**
 * The boolean flags of a v2 request's query string (`wait`, `quorum`), read
 * the way etcd reads them, so that the proxy treats as a watch or a quorum
 * read exactly what the member will: etcd takes the first value of the
 * parameter, percent-decoded, and accepts Go's boolean spellings
 * (`strconv.ParseBool`): `1`, `t`, `T`, `true`, `TRUE`, `True`.
 */

/** `part` of a query percent-decoded and with `+` as a space, as Go's url.QueryUnescape does; undefined when malformed. */
function unescape(part: string): string | undefined {
  try {
    return decodeURIComponent(part.replaceAll('+', ' '));
  } catch {
    return undefined;
  }
}

/** Whether `text` between `start` and `end` is a spelling of true that ParseBool takes, compared in place. */
function isTrue(text: string, start: number, end: number): boolean {
  if (end - start === 1) {
    const c = text.charCodeAt(start);
    return c === 0x31 /* 1 */ || c === 0x74 /* t */ || c === 0x54 /* T */;
  }
  return end - start === 4 && (text.startsWith('true', start) || text.startsWith('TRUE', start) || text.startsWith('True', start));
}

/** Whether `url` holds a `%` or a `+` between `start` and `end`. */
function escaped(url: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = url.charCodeAt(i);
    if (c === 0x25 /* % */ || c === 0x2b /* + */) return true;
  }
  return false;
}

/**
 * Whether the request target `url` (`/v2/keys/a?wait=true`) sets the flag
 * `name` true. A malformed query (which etcd refuses with 400) sets nothing.
 * Names are compared in place: a request makes no string here unless its
 * query names the flag (etcd's Go client sends
 * `?quorum=false&recursive=false&sorted=false` with every GET).
 */
export function queryFlag(url: string, name: string): boolean {
  const query = url.indexOf('?');
  if (query < 0) return false;
  for (let start = query + 1; start <= url.length; ) {
    let end = url.indexOf('&', start);
    if (end < 0) end = url.length;
    const eq = url.indexOf('=', start);
    const keyEnd = eq >= 0 && eq < end ? eq : end;
    const named =
      keyEnd - start === name.length
        ? url.startsWith(name, start)
        : keyEnd > start && escaped(url, start, keyEnd) && unescape(url.slice(start, keyEnd)) === name;
    if (named) {
      if (keyEnd === end) return false;
      if (escaped(url, keyEnd + 1, end)) {
        const value = unescape(url.slice(keyEnd + 1, end));
        return value !== undefined && isTrue(value, 0, value.length);
      }
      return isTrue(url, keyEnd + 1, end);
    }
    start = end + 1;
  }
  return false;
}
