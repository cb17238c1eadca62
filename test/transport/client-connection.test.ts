/**
 * What createProxy's own HTTP/1.1 reader takes (src/transport/client-connection.ts):
 * plain requests only; everything else is left to node:http (undefined).
 */
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { describe, it } from 'node:test';
import { parseHead } from '../../src/transport/client-connection.js';

const socket = new Socket();
const head = (lines: string[]): string => lines.join('\r\n');

describe('parseHead', () => {
  it('takes a plain request: method, target as sent, headers without the spaces around values', () => {
    const r = parseHead(head(['PUT /v2/keys/a%2Fb?ttl=5 HTTP/1.1', 'Host: x', 'Content-Length: 11', 'X-Spaced: \t v a l \t', 'Connection: keep-alive, close']), socket);
    assert.ok(r !== undefined);
    assert.equal(r.method, 'PUT');
    assert.equal(r.url, '/v2/keys/a%2Fb?ttl=5');
    assert.deepEqual(r.rawHeaders, ['Host', 'x', 'Content-Length', '11', 'X-Spaced', 'v a l', 'Connection', 'keep-alive, close']);
    assert.equal(r.length, 11);
    assert.equal(r.hasLength, true);
    assert.equal(r.close, true);
    assert.equal(r.via, undefined);
  });

  it('joins Via headers, and reads no body without Content-Length', () => {
    const r = parseHead(head(['GET /v2/keys/ HTTP/1.1', 'host: x', 'Via: 1.1 a', 'via: 1.1 b']), socket);
    assert.equal(r?.via, '1.1 a, 1.1 b');
    assert.equal(r?.length, 0);
    assert.equal(r?.hasLength, false);
    assert.equal(r?.close, false);
  });

  const refused: Array<[string, string[]]> = [
    ['HTTP/1.0', ['GET / HTTP/1.0', 'Host: x']],
    ['OPTIONS', ['OPTIONS /v2/keys/ HTTP/1.1', 'Host: x']],
    ['an absolute-form target', ['GET http://x/v2/keys/ HTTP/1.1', 'Host: x']],
    ['a raw UTF-8 byte in the target', ['GET /v2/keys/\u00e9 HTTP/1.1', 'Host: x']],
    ['no Host', ['GET /v2/keys/ HTTP/1.1', 'Accept: */*']],
    ['two Hosts', ['GET /v2/keys/ HTTP/1.1', 'Host: x', 'Host: y']],
    ['Transfer-Encoding', ['PUT /v2/keys/a HTTP/1.1', 'Host: x', 'Transfer-Encoding: chunked']],
    ['Expect', ['PUT /v2/keys/a HTTP/1.1', 'Host: x', 'Expect: 100-continue', 'Content-Length: 3']],
    ['Upgrade', ['GET / HTTP/1.1', 'Host: x', 'Connection: Upgrade', 'Upgrade: h2c']],
    ['two Content-Lengths', ['PUT /v2/keys/a HTTP/1.1', 'Host: x', 'Content-Length: 1', 'Content-Length: 1']],
    ['a Content-Length that is not digits', ['PUT /v2/keys/a HTTP/1.1', 'Host: x', 'Content-Length: 1e3']],
    ['a space in a header name', ['GET / HTTP/1.1', 'Host: x', 'Bad Header: 1']],
    ['a control character in a value', ['GET / HTTP/1.1', 'Host: x', 'X-A: a\u0001b']],
    ['obs-fold', ['GET / HTTP/1.1', 'Host: x', 'X-A: a', ' folded']],
    ['a bare LF', ['GET / HTTP/1.1', 'Host: x\nX-A: 1']],
    ['an empty header name', ['GET / HTTP/1.1', 'Host: x', ': v']],
  ];
  for (const [what, lines] of refused) {
    it(`leaves ${what} to node:http`, () => {
      assert.equal(parseHead(head(lines), socket), undefined);
    });
  }
});
