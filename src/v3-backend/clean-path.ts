/**
 * Native v2 is served by Go's `http.ServeMux`, which answers a request whose
 * path is not clean (an empty segment `//`, a `.` or `..` segment, also when
 * percent-encoded) with 301 and the cleaned path, before any handler runs:
 * such a request is never applied, a PUT included. The v3 backend answers
 * the same way instead of applying it to the cleaned key.
 */
import type { ClientResponse } from '../forwarding/forward-request.js';

/**
 * Where a request for `url` (path and query, as received) is redirected:
 * the cleaned path, escaped as Go escapes a path, with the query as it came;
 * undefined when the path is clean (or not decodable: the request's own
 * parser reports that).
 */
export function redirectTarget(url: string): string | undefined {
  const q = url.indexOf('?');
  const rawPath = q < 0 ? url : url.slice(0, q);
  // A path without "/." and "//" (plain or encoded) is clean: the common case costs two searches.
  if (!rawPath.includes('//') && !rawPath.includes('/.') && !rawPath.includes('%')) return undefined;
  let path: string;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    return undefined;
  }
  const clean = cleanPath(path);
  if (clean === path) return undefined;
  return q < 0 || q === url.length - 1 ? escapePath(clean) : `${escapePath(clean)}${url.slice(q)}`;
}

/** Go's `path.Clean` of a rooted path, keeping a trailing slash (net/http's cleanPath). */
export function cleanPath(path: string): string {
  const out: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') out.pop();
    else out.push(segment);
  }
  const clean = `/${out.join('/')}`;
  return path.endsWith('/') && clean !== '/' ? `${clean}/` : clean;
}

/** Go's escaping of a URL path: everything but letters, digits, `-_.~` and `$&+,/:;=@`, as %XX of its UTF-8 bytes. */
function escapePath(path: string): string {
  let out = '';
  for (const byte of Buffer.from(path, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-_.~$&+,/:;=@]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Go's `http.Redirect` with 301: a short HTML body for GET, a Content-Type for GET and HEAD. */
export function writeRedirect(res: Pick<ClientResponse, 'writeHead' | 'end'>, method: string, location: string): void {
  const getOrHead = method === 'GET' || method === 'HEAD';
  const body = method === 'GET' ? `<a href="${htmlEscape(location)}">Moved Permanently</a>.\n\n` : '';
  const headers = ['Location', location];
  if (getOrHead) headers.push('Content-Type', 'text/html; charset=utf-8');
  headers.push('Content-Length', String(Buffer.byteLength(body)));
  res.writeHead(301, undefined, headers);
  res.end(body);
}

function htmlEscape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&#34;', "'": '&#39;' })[c]!);
}
