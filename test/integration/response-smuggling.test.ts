/**
 * Issue 19: a member answer framed so that two readers could read it two
 * ways (Transfer-Encoding with Content-Length, a coding other than chunked,
 * two Content-Lengths, a body on a 204, bytes after `Connection: close`...)
 * must never let bytes of one answer reach another request, from the same
 * client or another one, on the same upstream connection or a pipelined one.
 *
 * A fake member answers here: a real etcd member never misbehaves, so the
 * answers a hostile or broken member (or something between the proxy and
 * it) could send can only be written by hand. The fake sits behind a real
 * member for createProxy (the real member's /members advertises the fake's
 * client URL, as in client-connection.test.ts), and is the balancer's only
 * endpoint for the embedded V2ProxyHandler in a plain node:http server.
 *
 * Each case is answered in one write, then split in two at every byte
 * (the second part written after the proxy had a turn to read the first).
 * After each: the hostile request got a 502 in etcd's JSON shape (or, when
 * its head had gone out, a cut response; or, when the split fell after an
 * answer complete by the rules, that answer), the upstream connection that
 * carried it was closed, and further requests on the same client connection,
 * on a new one, and pipelined (pipelineReads: 8) behind a hostile request
 * on the same upstream connection each get their own answer and nothing else.
 */
import assert from 'node:assert/strict';
import { connect, createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { EndpointBalancer, V2ProxyHandler } from '../../src/index.js';
import { cleanup, member, onCleanup, proxy, serveHandler, skipWithoutEtcd, tempDir } from './harness.js';

/** A complete answer that must never reach any client: it is what a misread would hand to the next request. */
const SMUGGLED = 'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED';

interface Case {
  readonly name: string;
  readonly method: 'GET' | 'HEAD';
  readonly answer: string;
  /** What the client gets when the answer comes in one write: a 502, or a response cut after its head. */
  readonly whole: 502 | 'cut';
  /**
   * Bytes after which the answer is complete by the rules (what follows is then bytes nobody waits for):
   * a split there or later may give the client that answer, and the connection is closed all the same.
   */
  readonly complete?: number;
  /** The trailing bytes are only unexpected when no request waits behind: not a case for the pipelined round. */
  readonly alone?: true;
  /** Split at these offsets rather than at every byte (a 64 KiB head). */
  readonly splits?: readonly number[];
}

const head = (lines: string): string => `HTTP/1.1 200 OK\r\n${lines}\r\n`;
const bigHead = `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\nContent-Length: 2\r\n\r\nok`;

const CASES: readonly Case[] = [
  { name: 'Transfer-Encoding gzip with Content-Length', method: 'GET', answer: head('Transfer-Encoding: gzip\r\nContent-Length: 2\r\n') + 'ok' + SMUGGLED, whole: 502 },
  {
    name: 'Transfer-Encoding chunked then gzip (two lines) with Content-Length',
    method: 'GET',
    answer: head('Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n') + 'ok' + SMUGGLED,
    whole: 502,
  },
  { name: 'Transfer-Encoding identity (a final coding other than chunked)', method: 'GET', answer: head('Transfer-Encoding: identity\r\n') + SMUGGLED, whole: 502 },
  {
    name: 'Transfer-Encoding chunked with Content-Length',
    method: 'GET',
    answer: head(`Transfer-Encoding: chunked\r\nContent-Length: ${5 + SMUGGLED.length}\r\n`) + '0\r\n\r\n' + SMUGGLED,
    whole: 502,
  },
  { name: 'two equal Content-Length lines', method: 'GET', answer: head('Content-Length: 2\r\nContent-Length: 2\r\n') + 'ok' + SMUGGLED, whole: 502 },
  { name: 'conflicting Content-Length lines', method: 'GET', answer: head(`Content-Length: 2\r\nContent-Length: ${2 + SMUGGLED.length}\r\n`) + 'ok' + SMUGGLED, whole: 502 },
  { name: 'Content-Length as a list', method: 'GET', answer: head('Content-Length: 2, 2\r\n') + 'ok' + SMUGGLED, whole: 502 },
  { name: 'a head over 64 KiB', method: 'GET', answer: bigHead, whole: 502, splits: [1, 16, 4096, 32768, 65535, 65536, 65541, bigHead.length - 3, bigHead.length - 1] },
  { name: 'a chunk size followed by a space', method: 'GET', answer: head('Transfer-Encoding: chunked\r\n') + '2 \r\nok\r\n0\r\n\r\n' + SMUGGLED, whole: 'cut' },
  { name: 'a chunk size preceded by a space', method: 'GET', answer: head('Transfer-Encoding: chunked\r\n') + ' 2\r\nok\r\n0\r\n\r\n' + SMUGGLED, whole: 'cut' },
  { name: 'a chunk size in 0x notation', method: 'GET', answer: head('Transfer-Encoding: chunked\r\n') + '0x2\r\nok\r\n0\r\n\r\n' + SMUGGLED, whole: 'cut' },
  { name: 'chunk data longer than its size', method: 'GET', answer: head('Transfer-Encoding: chunked\r\n') + '2\r\nokSMUGGLED\r\n0\r\n\r\n', whole: 'cut' },
  { name: 'a chunked body without its final CRLF', method: 'GET', answer: head('Transfer-Encoding: chunked\r\n') + '2\r\nok\r\n0\r\n' + SMUGGLED, whole: 'cut' },
  { name: 'a 204 with a Content-Length', method: 'GET', answer: `HTTP/1.1 204 No Content\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`, whole: 502 },
  {
    name: 'a 204 followed by bytes',
    method: 'GET',
    answer: `HTTP/1.1 204 No Content\r\n\r\n${SMUGGLED}`,
    whole: 502,
    complete: 'HTTP/1.1 204 No Content\r\n\r\n'.length,
    alone: true,
  },
  {
    name: 'a 304 with a Content-Length and a body',
    method: 'GET',
    answer: `HTTP/1.1 304 Not Modified\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    whole: 502,
    complete: `HTTP/1.1 304 Not Modified\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n`.length,
  },
  { name: 'an interim 100 with a Content-Length', method: 'GET', answer: `HTTP/1.1 100 Continue\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`, whole: 502 },
  { name: 'an interim 103 with a body', method: 'GET', answer: `HTTP/1.1 103 Early Hints\r\n\r\nxx${SMUGGLED}`, whole: 502 },
  {
    name: 'an answer to HEAD with a body',
    method: 'HEAD',
    answer: head(`Content-Length: ${SMUGGLED.length}\r\n`) + SMUGGLED,
    whole: 502,
    complete: head(`Content-Length: ${SMUGGLED.length}\r\n`).length,
  },
  {
    name: 'bytes after a Connection: close answer',
    method: 'GET',
    answer: head('Connection: close\r\nContent-Length: 2\r\n') + 'ok' + SMUGGLED,
    whole: 502,
    complete: head('Connection: close\r\nContent-Length: 2\r\n').length + 2,
  },
  {
    name: 'bytes after an answer nobody waits for',
    method: 'GET',
    answer: head('Content-Length: 2\r\n') + 'ok' + SMUGGLED,
    whole: 502,
    complete: head('Content-Length: 2\r\n').length + 2,
    alone: true,
  },
];

/** Lets the proxy read what was written before writing more: two turns of the event loop, a poll phase between them. */
const aTurn = (): Promise<void> => new Promise((resolve) => setImmediate(() => setImmediate(resolve)));

/** The fake member's answer to an ordinary request: its own URL, so that an answer given to the wrong request shows. */
function honest(method: string, url: string): string {
  const body = JSON.stringify({ action: 'get', node: { key: url, value: `answer to ${url}` } });
  return `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Etcd-Index: 1\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${method === 'HEAD' ? '' : body}`;
}

interface Hostile {
  readonly answer: Buffer;
  /** Where to split it in two; undefined: one write. */
  readonly split: number | undefined;
}

/**
 * The fake member: answers `/health` and everything else honestly, except a
 * request whose path starts with /v2/keys/hostile/, which gets the answer
 * `next` holds. Answers go out in request order on each connection.
 */
class FakeMember {
  readonly url: string;
  /** The connections that carried a hostile answer, with a promise settled when each closes. */
  readonly tainted: Array<Promise<void>> = [];
  /** Requests the fake read on the connection of a hostile request before it answered that request. */
  behindHostile = 0;
  next: Hostile | undefined = undefined;
  private readonly sockets = new Set<Socket>();

  private constructor(readonly server: ReturnType<typeof createServer>) {
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  static async start(): Promise<FakeMember> {
    let fake!: FakeMember;
    const server = createServer((socket) => fake.serve(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    fake = new FakeMember(server);
    onCleanup(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          for (const s of fake.sockets) s.destroy();
        }),
    );
    return fake;
  }

  private serve(socket: Socket): void {
    // Each write goes out at once (Nagle's algorithm would hold a split answer's second part for the first's ACK).
    socket.setNoDelay(true);
    this.sockets.add(socket);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    let seen = Buffer.alloc(0);
    // Answers are written in order, one after the other (a split answer takes two turns).
    let writing = Promise.resolve();
    socket.on('data', (d: Buffer) => {
      seen = Buffer.concat([seen, d]);
      const requests: Array<{ method: string; url: string }> = [];
      for (let end = seen.indexOf('\r\n\r\n'); end >= 0; end = seen.indexOf('\r\n\r\n')) {
        const text = seen.toString('latin1', 0, end);
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text)?.[1] ?? 0);
        if (seen.length < end + 4 + length) break;
        seen = seen.subarray(end + 4 + length);
        const [method, url] = text.split(' ') as [string, string];
        requests.push({ method, url });
      }
      for (let i = 0; i < requests.length; i++) {
        const { method, url } = requests[i]!;
        if (url.startsWith('/v2/keys/hostile/')) {
          // Kept for the round: a GET handed back from a connection and sent again gets the same answer.
          const hostile = this.next ?? { answer: Buffer.from(SMUGGLED), split: undefined };
          this.behindHostile += requests.length - 1 - i;
          this.tainted.push(closed);
          writing = writing.then(async () => {
            if (hostile.split === undefined) socket.write(hostile.answer);
            else {
              socket.write(hostile.answer.subarray(0, hostile.split));
              await aTurn();
              if (!socket.destroyed) socket.write(hostile.answer.subarray(hostile.split));
            }
          });
        } else {
          const answer = url === '/health' ? 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{"health":"true"}' : honest(method, url);
          writing = writing.then(() => {
            if (!socket.destroyed) socket.write(answer);
          });
        }
      }
    });
  }
}

/** One answer as a client reads it, or how the connection ended instead. */
type Outcome = { kind: 'answer'; status: number; headers: Map<string, string>; body: string } | { kind: 'cut'; received: string };

/** A client connection reading answers in order, with nothing read ahead kept hidden. */
class Client {
  private buffered = Buffer.alloc(0);
  private closed = false;
  private wake: (() => void) | undefined;
  /** Everything the connection received, for the check that nothing smuggled ever arrives. */
  all = '';

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, d]);
      this.all += d.toString('latin1');
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    socket.on('error', () => undefined);
  }

  static open(url: string): Promise<Client> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port: Number(new URL(url).port), host: '127.0.0.1', noDelay: true }, () => resolve(new Client(socket)));
      socket.once('error', reject);
    });
  }

  get open(): boolean {
    return !this.closed;
  }

  /** Waits (5 s at most) until `ready()` holds; false when the connection closed first. */
  private async until(ready: () => boolean): Promise<boolean> {
    const deadline = Date.now() + 5000;
    while (!ready()) {
      if (this.closed) return false;
      if (Date.now() > deadline) throw new Error(`no answer within 5 s; received: ${JSON.stringify(this.buffered.toString('latin1').slice(0, 200))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
    return true;
  }

  send(method: string, url: string): void {
    this.socket.write(`${method} ${url} HTTP/1.1\r\nHost: proxy\r\n\r\n`);
  }

  /** The next answer (Content-Length or chunked), or 'cut' when the connection closes before it is whole. */
  async read(method: string): Promise<Outcome> {
    const cut = (): Outcome => ({ kind: 'cut', received: this.buffered.toString('latin1') });
    if (!(await this.until(() => this.buffered.includes('\r\n\r\n')))) return cut();
    const end = this.buffered.indexOf('\r\n\r\n');
    const lines = this.buffered.toString('latin1', 0, end).split('\r\n');
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0]!)?.[1]);
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) headers.set(line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim());
    let at = end + 4;
    let body = '';
    if (method !== 'HEAD' && status !== 204 && status !== 304) {
      if (headers.has('content-length')) {
        const n = Number(headers.get('content-length'));
        if (!(await this.until(() => this.buffered.length >= at + n))) return cut();
        body = this.buffered.toString('latin1', at, at + n);
        at += n;
      } else {
        assert.equal(headers.get('transfer-encoding'), 'chunked', lines.join('\n'));
        for (;;) {
          const from = at;
          if (!(await this.until(() => this.buffered.indexOf('\r\n', from) >= 0))) return cut();
          const lineEnd = this.buffered.indexOf('\r\n', from);
          const size = parseInt(this.buffered.toString('latin1', from, lineEnd), 16);
          if (!(await this.until(() => this.buffered.length >= lineEnd + 4 + size))) return cut();
          body += this.buffered.toString('latin1', lineEnd + 2, lineEnd + 2 + size);
          at = lineEnd + 4 + size;
          if (size === 0) break;
        }
      }
    }
    this.buffered = this.buffered.subarray(at);
    return { kind: 'answer', status, headers, body };
  }

  /** Nothing was received beyond the answers read. */
  get nothingElse(): boolean {
    return this.buffered.length === 0;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** `o` is the fake's honest answer to `method url`, and nothing else came. */
function assertOwnAnswer(o: Outcome, method: string, url: string, client: Client): void {
  assert.equal(o.kind, 'answer', `${method} ${url}: ${JSON.stringify(o)}`);
  if (o.kind !== 'answer') return;
  assert.equal(o.status, 200, `${method} ${url}: ${o.body}`);
  if (method !== 'HEAD') assert.deepEqual(JSON.parse(o.body), { action: 'get', node: { key: url, value: `answer to ${url}` } });
  assert.ok(client.nothingElse, `${method} ${url}: more bytes after the answer`);
}

/** What the hostile request may get: a 502 in etcd's JSON shape, a cut response, or (past `complete`) the answer complete by the rules. */
function assertRefused(o: Outcome, c: Case, split: number | undefined): void {
  const what = `${c.name}, ${split === undefined ? 'one write' : `split at ${split}`}: ${JSON.stringify(o).slice(0, 300)}`;
  if (o.kind === 'answer' && o.status === 502) {
    assert.equal(o.headers.get('content-type'), 'application/json', what);
    if (c.method !== 'HEAD') assert.match((JSON.parse(o.body) as { message: string }).message, /^httpproxy: /, what);
    return;
  }
  if (split === undefined) {
    assert.equal(c.whole, 'cut', what);
    assert.equal(o.kind, 'cut', what);
    return;
  }
  if (o.kind === 'cut') return;
  assert.ok(c.complete !== undefined && split >= c.complete, what);
  assert.ok(!o.body.includes('SMUGGLED'), what);
}

/** The suite, against the proxy at `url()` whose only endpoint is `fake()`. */
function hostileMemberSuite(setup: () => Promise<{ url: string; fake: FakeMember }>): void {
  let url: string;
  let fake: FakeMember;
  const clients: Client[] = [];
  let serial = 0;
  const open = async (): Promise<Client> => {
    const c = await Client.open(url);
    clients.push(c);
    return c;
  };
  /** Eight client connections, each with an answered request: accepted, idle, so that what they send next arrives in one turn. */
  let eight: Client[] = [];
  const warm = async (c: Client): Promise<Client> => {
    const path = `/v2/keys/warm/${serial++}`;
    c.send('GET', path);
    assertOwnAnswer(await c.read('GET'), 'GET', path, c);
    return c;
  };

  before(async () => {
    ({ url, fake } = await setup());
    eight = await Promise.all(Array.from({ length: 8 }, async () => warm(await open())));
  });
  after(() => {
    for (const c of clients) c.close();
    for (const c of clients) assert.ok(!c.all.includes('SMUGGLED'), 'a smuggled answer reached a client');
  });

  /** One hostile exchange and every follow-up the issue names. */
  async function round(c: Case, split: number | undefined): Promise<void> {
    const answer = Buffer.from(c.answer, 'latin1');
    // The hostile request alone, on a new client connection.
    const first = await open();
    const tainted = fake.tainted.length;
    fake.next = { answer, split };
    const hostilePath = `/v2/keys/hostile/${serial++}`;
    first.send(c.method, hostilePath);
    const o = await first.read(c.method);
    assertRefused(o, c, split);
    // The connection that carried it is closed (by the proxy: the fake never closes one).
    assert.ok(fake.tainted.length > tainted);
    await Promise.all(fake.tainted.slice(tainted));
    // The same client connection, when it was not cut.
    if (o.kind === 'answer' && first.open) {
      const path = `/v2/keys/same/${serial++}`;
      first.send('GET', path);
      assertOwnAnswer(await first.read('GET'), 'GET', path, first);
    }
    first.close();
    // A new client connection.
    const fresh = await open();
    const path = `/v2/keys/fresh/${serial++}`;
    fresh.send('GET', path);
    assertOwnAnswer(await fresh.read('GET'), 'GET', path, fresh);
    fresh.close();
    if (c.alone || c.method !== 'GET') return;
    // Pipelined: the hostile GET and seven others arrive together; the others go behind it on its connection.
    const taintedBefore = fake.tainted.length;
    fake.next = { answer, split };
    const paths = eight.map((_, i) => (i === 0 ? `/v2/keys/hostile/${serial++}` : `/v2/keys/behind/${serial++}`));
    for (let i = 0; i < eight.length; i++) eight[i]!.send('GET', paths[i]!);
    const outcomes = await Promise.all(eight.map((e) => e.read('GET')));
    assertRefused(outcomes[0]!, c, split);
    for (let i = 1; i < eight.length; i++) assertOwnAnswer(outcomes[i]!, 'GET', paths[i]!, eight[i]!);
    assert.ok(fake.tainted.length > taintedBefore);
    await Promise.all(fake.tainted.slice(taintedBefore));
    if (!eight[0]!.open || !eight[0]!.nothingElse) eight[0] = await warm(await open());
  }

  for (const c of CASES) {
    it(`${c.name}: one write, then split at ${c.splits === undefined ? 'every byte' : `${c.splits.length} places`}`, { timeout: 120000 }, async () => {
      await round(c, undefined);
      const splits = c.splits ?? Array.from({ length: c.answer.length - 1 }, (_, i) => i + 1);
      for (const split of splits) await round(c, split);
    });
  }

  it('pipelined GETs did go behind the hostile ones on their connection', () => {
    assert.ok(fake.behindHostile > 0, 'no GET was ever pipelined behind a hostile one: the pipelined round tested nothing');
  });
}

describe('a hostile member answer reaches no other request: createProxy', { skip: skipWithoutEtcd }, () => {
  after(cleanup);
  hostileMemberSuite(async () => {
    const fake = await FakeMember.start();
    const m = await member({ advertiseClientUrl: fake.url });
    const p = await proxy({ initialCluster: `${m.name}=${m.peerUrl}`, dataDir: await tempDir(), pipelineReads: 8 });
    return { url: p.url, fake };
  });
});

describe('a hostile member answer reaches no other request: V2ProxyHandler in node:http', () => {
  after(cleanup);
  hostileMemberSuite(async () => {
    const fake = await FakeMember.start();
    const balancer = new EndpointBalancer({ endpoints: [fake.url] });
    const handler = new V2ProxyHandler({ balancer, pipelineReads: 8 });
    return { url: await serveHandler(handler, balancer), fake };
  });
});
