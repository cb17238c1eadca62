/**
 * Property (issue 19): whatever a member sends on a connection carrying
 * pipelined GETs, no request receives bytes of another request's answer.
 *
 * Random streams of valid answers (Content-Length, chunked with extensions
 * and trailers, 204, 304, interim 1xx, until close, Connection: close,
 * HTTP/1.0), then mutated (a Content-Length changed or doubled, a
 * Transfer-Encoding added, a status changed, bytes inserted or deleted, the
 * stream cut short), are written by a fake upstream (a real etcd member
 * never sends such streams) in random pieces. Which request an answer
 * belongs to is what the framing rules say (RFC 9112, as documented next
 * to the parser in src/transport/upstream-connection.ts): a member that
 * states a wrong length moves a boundary by those rules, for node's own
 * client as for this one. So the stream is also read whole by a reference
 * reader written here, independently of the streaming parser, and:
 *  - a request whose answer completed got exactly the answer the reference
 *    gives it (status and body);
 *  - a request whose answer failed after its head got a prefix of that
 *    answer's body, never a byte past it;
 *  - a request the reference gives no answer (the stream broke a rule
 *    before or in it) got no head: an error, or it was handed back to be
 *    sent again.
 * Seeded and bounded (a few hundred streams, well under a minute).
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { UpstreamPool } from '../../src/transport/upstream-connection.js';
import type { UpstreamHandler } from '../../src/transport/upstream-connection.js';

const MAX_HEAD = 64 * 1024;
const TOKEN = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]";
const HEADER_LINE = new RegExp(`^${TOKEN}+:[\\t\\x20-\\x7e\\x80-\\xff]*$`);
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?$/;
const CHUNK_LINE = new RegExp(`^([0-9A-Fa-f]{1,12})(?:;${TOKEN}+(?:=(?:${TOKEN}+|"(?:[\\t !#-\\[\\]-~\\x80-\\xff]|\\\\[\\t -~\\x80-\\xff])*"))?)*$`);

/** What the rules say answer i is: its status, its body (or the part of it the stream holds before it breaks), whether it is whole. */
interface Ref {
  status: number;
  body: Buffer;
  complete: boolean;
}

/** Reads `stream` whole, for `n` GETs pipelined on one connection, by the framing rules; stops at the first answer that breaks one. */
function reference(stream: Buffer, n: number): Ref[] {
  const out: Ref[] = [];
  let pos = 0;
  for (let i = 0; i < n; i++) {
    let status = 0;
    let cl = -1;
    let te = false;
    let close = false;
    for (;;) {
      const end = stream.indexOf('\r\n\r\n', pos);
      if (end < 0 || end + 4 - pos > MAX_HEAD) return out;
      const lines = stream.toString('latin1', pos, end).split('\r\n');
      const m = STATUS_LINE.exec(lines[0]!);
      if (m === null) return out;
      status = Number(m[2]);
      const http10 = m[1] === '0';
      const codings: string[] = [];
      cl = -1;
      close = http10;
      for (const line of lines.slice(1)) {
        if (!HEADER_LINE.test(line)) return out;
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).toLowerCase();
        const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
        if (name === 'content-length') {
          if (cl >= 0 || !/^\d{1,15}$/.test(value)) return out;
          cl = Number(value);
        } else if (name === 'transfer-encoding') codings.push(value);
        else if (name === 'connection') {
          const tokens = value.toLowerCase().split(',').map((t) => t.trim());
          if (tokens.includes('close')) close = true;
          else if (http10 && tokens.includes('keep-alive')) close = false;
        }
      }
      te = codings.length > 0;
      if (te && (codings.join(', ').toLowerCase() !== 'chunked' || cl >= 0 || http10)) return out;
      if (status === 101) return out;
      pos = end + 4;
      if (status >= 200) break;
      if (te || cl >= 0) return out;
    }
    if (status === 204 && (te || cl > 0)) return out;
    const bodyless = status === 204 || status === 304;
    if (bodyless || (!te && cl === 0)) out.push({ status, body: Buffer.alloc(0), complete: true });
    else if (te) {
      const parts: Buffer[] = [];
      const partial = (): Ref[] => [...out, { status, body: Buffer.concat(parts), complete: false }];
      for (;;) {
        const lineEnd = stream.indexOf('\r\n', pos);
        if (lineEnd < 0) return partial();
        const size = CHUNK_LINE.exec(stream.toString('latin1', pos, lineEnd));
        if (size === null) return partial();
        const length = parseInt(size[1]!, 16);
        pos = lineEnd + 2;
        if (length === 0) break;
        const data = stream.subarray(pos, pos + length);
        parts.push(data);
        if (data.length < length || stream.toString('latin1', pos + length, pos + length + 2) !== '\r\n') return partial();
        pos += length + 2;
      }
      let trailers = 0;
      for (;;) {
        const lineEnd = stream.indexOf('\r\n', pos);
        if (lineEnd < 0) return partial();
        const line = stream.toString('latin1', pos, lineEnd);
        pos = lineEnd + 2;
        if (line === '') break;
        trailers += line.length + 2;
        if (trailers > MAX_HEAD || !HEADER_LINE.test(line)) return partial();
      }
      out.push({ status, body: Buffer.concat(parts), complete: true });
    } else if (cl > 0) {
      const body = stream.subarray(pos, pos + cl);
      out.push({ status, body, complete: body.length === cl });
      if (body.length < cl) return out;
      pos += cl;
    } else {
      // Until the member closes: nothing can follow.
      out.push({ status, body: stream.subarray(pos), complete: true });
      return out;
    }
    // No answer follows one that closes the connection, or a 304 that states a length with GETs behind it.
    if (close || (bodyless && (te || cl > 0) && i < n - 1)) return out;
  }
  return out;
}

// --- the generator ---

interface AnswerSpec {
  kind: 'length' | 'chunked' | 'no-content' | 'not-modified' | 'until-close';
  status: number;
  body: string;
  chunks: number[];
  extensions: boolean;
  trailer: boolean;
  interim: boolean;
  close: boolean;
  http10: boolean;
}

const answerSpec: fc.Arbitrary<AnswerSpec> = fc.record({
  kind: fc.constantFrom('length', 'length', 'chunked', 'chunked', 'no-content', 'not-modified', 'until-close'),
  status: fc.constantFrom(200, 201, 404, 500),
  body: fc.string({ unit: fc.constantFrom(...'abcxyz{}":,0123456789 '.split('')), maxLength: 40 }),
  chunks: fc.array(fc.integer({ min: 1, max: 12 }), { maxLength: 4 }),
  extensions: fc.boolean(),
  trailer: fc.boolean(),
  interim: fc.boolean(),
  close: fc.boolean(),
  http10: fc.boolean(),
}) as fc.Arbitrary<AnswerSpec>;

/** Answer i as a member would send it; its body carries `<i|` and `|i>` so that a misplaced one shows. */
function render(spec: AnswerSpec, i: number, last: boolean): string {
  const body = `<${i}|${spec.body}|${i}>`;
  const interim = spec.interim ? 'HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n' : '';
  const connection = spec.close ? 'Connection: close\r\n' : '';
  switch (spec.kind) {
    case 'no-content':
      return `${interim}HTTP/1.1 204 No Content\r\nX-Etcd-Index: ${i}\r\n${connection}\r\n`;
    case 'not-modified':
      return `${interim}HTTP/1.1 304 Not Modified\r\n${spec.trailer ? `Content-Length: ${body.length}\r\n` : ''}${connection}\r\n`;
    case 'until-close':
    case 'length':
      // Only the last answer can run until the member closes.
      if (spec.kind === 'until-close' && last) return `${interim}HTTP/1.1 ${spec.status} X\r\n\r\n${body}`;
      if (spec.http10) return `HTTP/1.0 ${spec.status} X\r\n${spec.close ? '' : 'Connection: keep-alive\r\n'}Content-Length: ${body.length}\r\n\r\n${body}`;
      return `${interim}HTTP/1.1 ${spec.status} X\r\nContent-Type: application/json\r\n${connection}Content-Length: ${body.length}\r\n\r\n${body}`;
    case 'chunked': {
      let chunked = '';
      let at = 0;
      for (const size of spec.chunks) {
        if (at >= body.length) break;
        const piece = body.slice(at, at + size);
        at += piece.length;
        chunked += `${piece.length.toString(16)}${spec.extensions ? ';a=1;b="x y"' : ''}\r\n${piece}\r\n`;
      }
      if (at < body.length) chunked += `${(body.length - at).toString(16)}\r\n${body.slice(at)}\r\n`;
      chunked += `0\r\n${spec.trailer ? 'X-Trailer: t\r\n' : ''}\r\n`;
      return `${interim}HTTP/1.1 ${spec.status} X\r\nTransfer-Encoding: chunked\r\n${connection}\r\n${chunked}`;
    }
  }
}

type Mutation =
  | { op: 'length'; at: number; delta: number }
  | { op: 'double-length'; at: number }
  | { op: 'coding'; at: number; value: string }
  | { op: 'status'; at: number; status: string }
  | { op: 'insert'; at: number; byte: string }
  | { op: 'delete'; at: number }
  | { op: 'cut'; at: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('length' as const), at: fc.nat(), delta: fc.constantFrom(-3, -1, 1, 2, 40) }),
  fc.record({ op: fc.constant('double-length' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('coding' as const), at: fc.nat(), value: fc.constantFrom('chunked', 'gzip', 'identity', 'chunked, gzip', 'gzip, chunked', '') }),
  fc.record({ op: fc.constant('status' as const), at: fc.nat(), status: fc.constantFrom('204', '304', '100', '101', '200') }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), byte: fc.constantFrom(' ', '\t', '\r', '\n', '\r\n', '0', 'a', ';', ':', '"') }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('cut' as const), at: fc.nat() }),
);

/** The `k`-th match (mod their number) of `pattern` in `text`, or undefined. */
function nth(text: string, pattern: RegExp, k: number): RegExpExecArray | undefined {
  const all = [...text.matchAll(new RegExp(pattern.source, 'g'))];
  return all.length === 0 ? undefined : (all[k % all.length] as RegExpExecArray);
}

function mutate(stream: string, m: Mutation): string {
  switch (m.op) {
    case 'length': {
      const hit = nth(stream, /Content-Length: (\d+)/, m.at);
      if (hit === undefined) return stream;
      const value = String(Math.max(0, Number(hit[1]) + m.delta));
      return stream.slice(0, hit.index) + `Content-Length: ${value}` + stream.slice(hit.index + hit[0].length);
    }
    case 'double-length': {
      const hit = nth(stream, /Content-Length: \d+\r\n/, m.at);
      return hit === undefined ? stream : stream.slice(0, hit.index) + hit[0] + hit[0] + stream.slice(hit.index + hit[0].length);
    }
    case 'coding': {
      const hit = nth(stream, /HTTP\/1\.[01] \d{3}[^\r]*\r\n/, m.at);
      return hit === undefined ? stream : stream.slice(0, hit.index + hit[0].length) + `Transfer-Encoding: ${m.value}\r\n` + stream.slice(hit.index + hit[0].length);
    }
    case 'status': {
      const hit = nth(stream, /HTTP\/1\.[01] (\d{3})/, m.at);
      return hit === undefined ? stream : stream.slice(0, hit.index + 9) + m.status + stream.slice(hit.index + 12);
    }
    case 'insert': {
      const at = m.at % (stream.length + 1);
      return stream.slice(0, at) + m.byte + stream.slice(at);
    }
    case 'delete': {
      const at = m.at % Math.max(1, stream.length);
      return stream.slice(0, at) + stream.slice(at + 1);
    }
    case 'cut':
      return stream.slice(0, m.at % (stream.length + 1));
  }
}

// --- the fake upstream and the pool under test ---

/** Lets the parser read what was written: two turns of the event loop, a poll phase between them. */
const aTurn = (): Promise<void> => new Promise((resolve) => setImmediate(() => setImmediate(resolve)));

interface Outcome {
  status?: number;
  data: Buffer[];
  ended: boolean;
  error?: Error;
  detached: boolean;
}

describe('response framing: no request receives bytes of another one\'s answer (property)', () => {
  let port = 0;
  const server = createServer();
  const sockets = new Set<Socket>();
  /** The stream for the next connection: written in these pieces once `n` requests arrived, then the fake closes. */
  let next: { n: number; pieces: Buffer[]; requests: number } | undefined;

  before(async () => {
    server.on('connection', (socket) => {
      socket.setNoDelay(true);
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
      const run = next;
      let seen = '';
      let started = false;
      socket.on('data', async (d: Buffer) => {
        seen += d.toString('latin1');
        if (run === undefined || started) return;
        run.requests = seen.split('\r\n\r\n').length - 1;
        if (run.requests < run.n) return;
        started = true;
        for (const piece of run.pieces) {
          if (socket.destroyed) return;
          socket.write(piece);
          await aTurn();
        }
        socket.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });

  /** Sends `n` GETs pipelined on one new connection, the member answering with `stream` in pieces cut at `splits`; what each request got. */
  async function exchange(stream: Buffer, n: number, splits: number[]): Promise<Outcome[]> {
    const cuts = [...new Set(splits.map((s) => s % (stream.length + 1)))].sort((a, b) => a - b);
    const pieces: Buffer[] = [];
    let from = 0;
    for (const cut of [...cuts, stream.length]) {
      if (cut > from) pieces.push(stream.subarray(from, cut));
      from = Math.max(from, cut);
    }
    next = { n, pieces, requests: 0 };
    const pool = new UpstreamPool({ hostname: '127.0.0.1', port, tls: undefined, idleTimeout: 5000 });
    try {
      const done = Array.from({ length: n }, () => {
        const o: Outcome = { data: [], ended: false, detached: false };
        let resolve!: () => void;
        const over = new Promise<Outcome>((r) => (resolve = () => r(o)));
        const handler: UpstreamHandler = {
          onUpstreamConnected() {},
          onUpstreamWritten() {},
          onUpstreamHead: (_c, status) => void (o.status = status),
          onUpstreamData: (_c, chunk) => (o.data.push(Buffer.from(chunk)), true),
          onUpstreamEnd: () => ((o.ended = true), resolve()),
          onUpstreamError: (_c, err) => ((o.error = err), resolve()),
          onUpstreamDetached: () => ((o.detached = true), resolve()),
        };
        const conn = pool.acquire(handler, 8);
        conn.send('GET', `GET /v2/keys/k HTTP/1.1\r\nHost: h\r\n\r\n`, undefined, handler);
        return over;
      });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not every request was over within 3 s (${next?.requests ?? 0} of ${n} arrived)`)), 3000);
      });
      try {
        return await Promise.race([Promise.all(done), timeout]);
      } finally {
        clearTimeout(timer);
      }
    } finally {
      pool.close();
      next = undefined;
    }
  }

  it('valid and mutated answer streams, in random pieces (seeded)', { timeout: 60000 }, async () => {
    const started = Date.now();
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(answerSpec, { minLength: 1, maxLength: 5 }),
        fc.array(mutation, { maxLength: 3 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        async (specs, mutations, splits) => {
          runs++;
          let text = specs.map((s, i) => render(s, i, i === specs.length - 1)).join('');
          for (const m of mutations) text = mutate(text, m);
          const stream = Buffer.from(text, 'latin1');
          const refs = reference(stream, specs.length);
          const outcomes = await exchange(stream, specs.length, splits);
          outcomes.forEach((o, i) => {
            const got = Buffer.concat(o.data);
            const what = `request ${i}: ${JSON.stringify({ status: o.status, data: got.toString('latin1'), ended: o.ended, error: o.error?.message, detached: o.detached })}; reference: ${JSON.stringify(refs[i] === undefined ? null : { ...refs[i], body: refs[i]!.body.toString('latin1') })}; stream: ${JSON.stringify(text)}`;
            if (o.status === undefined) {
              assert.ok(!o.ended, `${what}: ended without a head`);
              return;
            }
            const ref = refs[i];
            assert.ok(ref !== undefined, `${what}: got a head the rules do not give it`);
            assert.equal(o.status, ref.status, what);
            if (o.ended) {
              assert.ok(ref.complete, `${what}: completed an answer the rules leave incomplete`);
              assert.ok(got.equals(ref.body), what);
            } else assert.ok(ref.body.subarray(0, got.length).equals(got), `${what}: not a prefix of its answer`);
          });
        },
      ),
      { seed: 19, numRuns: 400, interruptAfterTimeLimit: 45000, markInterruptAsFailure: false },
    );
    assert.ok(runs >= 100, `only ${runs} streams in ${Date.now() - started} ms`);
  });

  it('the reference reader itself: a valid stream is read as sent', () => {
    const specs: AnswerSpec[] = [
      { kind: 'length', status: 200, body: 'a', chunks: [], extensions: false, trailer: false, interim: true, close: false, http10: false },
      { kind: 'chunked', status: 404, body: 'bcd', chunks: [1, 1], extensions: true, trailer: true, interim: false, close: false, http10: false },
      { kind: 'no-content', status: 0, body: '', chunks: [], extensions: false, trailer: false, interim: false, close: false, http10: false },
    ];
    const refs = reference(Buffer.from(specs.map((s, i) => render(s, i, i === 2)).join(''), 'latin1'), 3);
    assert.deepEqual(
      refs.map((r) => [r.status, r.body.toString(), r.complete]),
      [
        [200, '<0|a|0>', true],
        [404, '<1|bcd|1>', true],
        [204, '', true],
      ],
    );
  });
});
