/**
 * Property (issue 19): createProxy's own reader of client requests
 * (src/transport/client-connection.ts, parseHead) takes a request head only
 * when node:http's parser (llhttp) accepts it, takes every head llhttp
 * accepts that is in its scope (HTTP/1.1, GET/HEAD/PUT/POST/DELETE in
 * origin form, one Host, at most one Content-Length, no Transfer-Encoding,
 * Expect or Upgrade), and what it forwards is what llhttp parsed: the same
 * method, target and header names and values, in order. A head it does not
 * take goes, unread, to node:http, which answers it as it always does.
 *
 * Random heads (valid ones and ones with the mistakes and tricks that
 * matter for smuggling: spaces before colons, obs-fold, bare CR or LF,
 * control bytes, duplicate or odd Content-Length and Host, Transfer-Encoding,
 * odd versions and targets) go to a real node:http server on loopback, and
 * to parseHead. Seeded and bounded.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { parseHead } from '../../src/transport/client-connection.js';

/** What node:http made of a head: refused (400 or a parse error), or the request it parsed. */
type NodeParse = { accepted: false } | { accepted: true; method: string; url: string; version: string; rawHeaders: string[] };

const token = fc.string({ unit: fc.constantFrom(...'abcXYZ-_.!~09'.split('')), minLength: 1, maxLength: 8 });
const valueChars = fc.constantFrom(...'abc 019/:;,="'.split(''), '\t', '\x00', '\x7f', '\xe9', '\r', '\n', '\x0b');
const value = fc.oneof(
  { weight: 8, arbitrary: fc.string({ unit: fc.constantFrom(...'abc019/:;,=" '.split('')), maxLength: 10 }) },
  { weight: 1, arbitrary: fc.string({ unit: valueChars, maxLength: 8 }) },
);

/** A header line: [name, separator, value]; the separator is normally ': '. */
const header = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(token, fc.constant(': '), value) },
  {
    weight: 3,
    arbitrary: fc.tuple(
      fc.constantFrom('X-Etcd', 'Host', 'host', 'Content-Length', 'content-length', 'Transfer-Encoding', 'Connection', 'Expect', 'Upgrade', 'Via', 'X-Forwarded-For', 'Keep-Alive', 'TE'),
      fc.constant(': '),
      fc.constantFrom('example', 'example', '', '0', '5', '007', '5, 5', ' 5 ', '+5', '-1', '1e3', 'chunked', 'close', 'keep-alive', 'upgrade', '100-continue', 'h2c', 'a b'),
    ),
  },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('Host', 'Content-Length', 'X-A', ''), fc.constantFrom(' : ', ':', ':\t', '\t: ', ' :'), value) },
);

const requestLine = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.tuple(
      fc.constantFrom('GET', 'PUT', 'POST', 'DELETE', 'HEAD'),
      fc.constantFrom('/v2/keys/a', '/v2/keys/a?wait=true', '/', '/v2/keys/%41'),
      fc.constant('HTTP/1.1'),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constantFrom('GET', 'PUT', 'HEAD', 'OPTIONS', 'get', 'PATCH', 'G ET'),
      fc.constantFrom('/v2/keys/a', '*', 'http://h/v2/keys/a', '/v2/keys/\xe9', '/a b', '/a\tb', '/%zz', ''),
      fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/1.2', 'HTTP/2.0', 'http/1.1', 'HTTP/1.1 ', 'HTTP/11'),
    ),
  },
);

/** A head (without its final empty line) built from the parts, with a mistake at times: obs-fold, a leading space, a bare LF line end. */
const head = fc
  .tuple(requestLine, fc.constantFrom(true, true, true, false), fc.array(header, { maxLength: 5 }), fc.constantFrom('none', 'none', 'none', 'none', 'none', 'none', 'fold', 'lead', 'lf'), fc.nat())
  .map(([[method, target, version], withHost, headers, mistake, at]) => {
    const lines = [`${method} ${target} ${version}`];
    if (withHost) lines.push('Host: proxy');
    for (const [name, sep, v] of headers) lines.push(`${name}${sep}${v}`);
    const i = 1 + (at % lines.length);
    if (mistake === 'fold' && i < lines.length) lines[i] = ` ${lines[i]!}`;
    if (mistake === 'lead' && i < lines.length) lines[i] = ` ${lines[i]!.trimStart()}`;
    let text = lines.join('\r\n');
    if (mistake === 'lf' && i < lines.length) text = text.replace(`\r\n${lines[i]!}`, `\n${lines[i]!}`);
    return text;
  })
  // The head ends at its first empty line, for both readers.
  .filter((text) => !text.includes('\r\n\r\n') && !text.endsWith('\r\n') && !text.endsWith('\r'));

describe('request heads: the fast path takes exactly what llhttp accepts, as llhttp parsed it (property)', () => {
  const server = createServer();
  let port = 0;
  /** Who waits for node:http's verdict on each connection, by the client's port. */
  const waiting = new Map<number, (p: NodeParse) => void>();
  const settle = (port: number | undefined, p: NodeParse): void => {
    const done = port === undefined ? undefined : waiting.get(port);
    if (done === undefined) return;
    waiting.delete(port!);
    done(p);
  };

  before(async () => {
    server.on('request', (req, res) => {
      settle(req.socket.remotePort, { accepted: true, method: req.method!, url: req.url!, version: req.httpVersion, rawHeaders: req.rawHeaders });
      res.end();
      req.socket.destroy();
    });
    server.on('clientError', (_err, socket: Socket) => {
      settle(socket.remotePort, { accepted: false });
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  /** What node:http makes of `text` followed by the empty line: its request, or a refusal (its own 400 for a missing Host included). */
  function nodeParse(text: string): Promise<NodeParse> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`node:http said nothing about ${JSON.stringify(text)}`)), 3000);
      const socket = connect(port, '127.0.0.1', () => {
        const local = socket.localPort!;
        waiting.set(local, (p) => {
          clearTimeout(timer);
          resolve(p);
        });
        let answered = '';
        socket.on('data', (d: Buffer) => {
          answered += d.toString('latin1');
          // requireHostHeader: node:http answers 400 itself, without a 'request' or 'clientError' event.
          if (answered.startsWith('HTTP/1.1 400')) settle(local, { accepted: false });
        });
        // Closed without a word (an Upgrade nobody listens for): not a request node:http serves.
        socket.on('close', () => settle(local, { accepted: false }));
        socket.end(Buffer.from(`${text}\r\n\r\n`, 'latin1'));
      });
      socket.on('error', () => undefined);
    });
  }

  /** The request is one createProxy's reader is meant to take (judged on what llhttp parsed). */
  function inScope(p: Extract<NodeParse, { accepted: true }>): boolean {
    if (p.version !== '1.1' || !['GET', 'HEAD', 'PUT', 'POST', 'DELETE'].includes(p.method) || !/^\/[!-~]*$/.test(p.url)) return false;
    let hosts = 0;
    let lengths = 0;
    for (let i = 0; i < p.rawHeaders.length; i += 2) {
      const name = p.rawHeaders[i]!.toLowerCase();
      const v = p.rawHeaders[i + 1]!;
      if (name === 'host') hosts++;
      if (name === 'content-length') {
        lengths++;
        if (!/^\d{1,15}$/.test(v)) return false;
      }
      if (name === 'transfer-encoding' || name === 'expect' || name === 'upgrade') return false;
      if (name === 'connection' && v.toLowerCase().includes('upgrade')) return false;
    }
    return hosts === 1 && lengths <= 1;
  }

  it('random request heads (seeded)', { timeout: 60000 }, async (t) => {
    let taken = 0;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(head, async (text) => {
        const node = await nodeParse(text);
        const ours = parseHead(text, {} as Socket);
        const what = `${JSON.stringify(text)}: node ${JSON.stringify(node)}, fast path ${ours === undefined ? 'hands it over' : JSON.stringify({ method: ours.method, url: ours.url, rawHeaders: ours.rawHeaders })}`;
        if (!node.accepted) refused++;
        if (ours !== undefined) {
          taken++;
          assert.ok(node.accepted, `taken by the fast path, refused by node:http: ${what}`);
          assert.equal(ours.method, node.method, what);
          assert.equal(ours.url, node.url, what);
          assert.equal(node.version, '1.1', what);
          assert.deepEqual(ours.rawHeaders, node.rawHeaders, what);
        } else if (node.accepted) assert.ok(!inScope(node), `in the fast path's scope and accepted by node:http, but handed over: ${what}`);
      }),
      { seed: 19, numRuns: 1500, interruptAfterTimeLimit: 40000, markInterruptAsFailure: false },
    );
    t.diagnostic(`${taken} heads taken by the fast path, ${refused} refused by node:http`);
    // Both sides of the property were exercised.
    assert.ok(taken > 50 && refused > 50, `${taken} heads taken, ${refused} refused by node:http`);
  });
});
