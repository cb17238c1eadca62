/**
 * The pieces of HTTP/1.1 syntax (RFC 9110, RFC 9112) that both of this
 * library's own HTTP/1.1 sides check: the reader of client requests
 * (client-connection.ts) and the client of the members
 * (upstream-connection.ts).
 */

/** The empty line that ends a head. */
export const CRLF2 = Buffer.from('\r\n\r\n');
/** A header name (RFC 9110 token). */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Control characters other than HTAB, which no header value may hold. */
export const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
/** A Content-Length value this library accepts (at most 15 digits: a safe integer). */
export const CONTENT_LENGTH = /^\d{1,15}$/;

/** `field` from `from` to `to`, without the spaces and tabs around it (RFC 9110 OWS; nothing else is trimmed). */
export function withoutOws(field: string, from = 0, to = field.length): string {
  let start = from;
  let end = to;
  while (start < end && (field.charCodeAt(start) === 32 || field.charCodeAt(start) === 9)) start++;
  while (end > start && (field.charCodeAt(end - 1) === 32 || field.charCodeAt(end - 1) === 9)) end--;
  return field.slice(start, end);
}
