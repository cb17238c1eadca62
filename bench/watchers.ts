/**
 * N idle long-poll watchers (`GET <key>?wait=true`) in their own process, so
 * that the figures bench/run.ts reads from the proxy's /proc entry are the
 * proxy's alone. Usage:
 *   node --import tsx bench/watchers.ts '{"url":"http://127.0.0.1:P","key":"/v2/keys/w","n":1000,"writeUrl":"http://127.0.0.1:M","batch":250}'
 *
 * It opens the N watches `batch` at a time (each batch fully written before
 * the next) and prints `{"type":"opened",...}`. Then it reads one command per
 * line on stdin and answers with one JSON line on stdout:
 * - `status`: the current round's counts (pending, sent, open, event, error,
 *   with the error statuses and codes);
 * - `fire`: PUTs the key on `writeUrl` (the member, directly), waits up to
 *   10 s for every watcher of round 1 to end, and reports how many got the
 *   event and how long the last one took;
 * - `repoll`: every watcher that got the event watches again at once with
 *   `waitIndex=<index+1>`, as confd-like clients do (round 2);
 * - `exit`: exits, so that every client connection closes at once.
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';

interface Config {
  url: string;
  key: string;
  n: number;
  writeUrl: string;
  batch: number;
}

type State = 'pending' | 'sent' | 'open' | 'event' | 'error';

interface Watch {
  state: State;
  round: number;
  index?: number;
  at?: number;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as Config;
const target = new URL(cfg.url);
const rounds: Watch[][] = [];
const statuses: Record<string, number>[] = [];
/** The first few distinct error bodies (status: body), to say why requests failed. */
const samples = new Set<string>();
const codes: Record<string, number>[] = [];
/** Called when a watch ends (event or error): counts, in O(1), what is left. */
let onChange: ((w: Watch) => void) | undefined;

function reply(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

function tally(table: Record<string, number>, key: string): void {
  table[key] = (table[key] ?? 0) + 1;
}

/**
 * One client connection, kept open between a watcher's rounds (a re-poll
 * reuses it, as a keep-alive client does). The client is a raw socket with a
 * minimal HTTP/1.1 response reader, not node:http: with thousands of answers
 * arriving at once, node:http's client in this one process would take longer
 * to take them in than the systems measured take to send them.
 */
class Conn {
  readonly socket: Socket;
  watch: Watch | undefined = undefined;
  /** The current response's bytes so far (latin1: etcd's answers are small). */
  text = '';
  constructor() {
    this.socket = connect(Number(target.port), target.hostname);
    this.socket.setNoDelay(true);
    this.socket.on('data', onData);
    this.socket.on('error', onError);
    this.socket.on('close', onClose);
    (this.socket as Socket & { conn?: Conn }).conn = this;
  }
}

const conns: Conn[] = [];

function fail(w: Watch, reason: string, status?: number): void {
  if (w.state === 'error' || w.state === 'event') return;
  w.state = 'error';
  if (status !== undefined) tally(statuses[w.round]!, String(status));
  else tally(codes[w.round]!, reason);
  onChange?.(w);
}

/** The body of a complete response in `text` (head included), or undefined while incomplete. */
function completeBody(text: string, headEnd: number): string | undefined {
  const head = text.slice(0, headEnd).toLowerCase();
  const length = /\r\ncontent-length: *(\d+)/.exec(head);
  if (length !== null) {
    const body = text.slice(headEnd + 4);
    return body.length >= Number(length[1]) ? body : undefined;
  }
  if (!/\r\ntransfer-encoding: *chunked/.test(head)) return undefined; // until close
  let body = '';
  let at = headEnd + 4;
  for (;;) {
    const eol = text.indexOf('\r\n', at);
    if (eol < 0) return undefined;
    const size = parseInt(text.slice(at, eol), 16);
    if (Number.isNaN(size)) return undefined;
    if (size === 0) return text.length >= eol + 4 && text.slice(eol + 2, eol + 4) === '\r\n' ? body : undefined;
    if (text.length < eol + 2 + size + 2) return undefined;
    body += text.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}

function onData(this: Socket & { conn?: Conn }, chunk: Buffer): void {
  const c = this.conn!;
  const w = c.watch;
  if (w === undefined) return;
  c.text += chunk.toString('latin1');
  const headEnd = c.text.indexOf('\r\n\r\n');
  if (headEnd < 0) return;
  const status = Number(c.text.slice(9, 12));
  if (status === 200 && w.state !== 'open') {
    // The headers of a watch come at once; the event comes later.
    w.state = 'open';
  }
  const body = completeBody(c.text, headEnd);
  if (body === undefined) return;
  c.text = '';
  c.watch = undefined;
  if (status !== 200) {
    fail(w, 'status', status);
    if (samples.size < 4) samples.add(`${status}: ${body.trim().slice(0, 200)}`);
    return;
  }
  // The event's index, without parsing the whole body: this process must not be the bottleneck.
  const m = /"node":\{[^{}]*"modifiedIndex":(\d+)/.exec(body);
  if (m === null) {
    fail(w, 'no-event-in-body');
    return;
  }
  w.index = Number(m[1]);
  w.at = performance.now();
  w.state = 'event';
  onChange?.(w);
}

function onError(this: Socket & { conn?: Conn }, err: NodeJS.ErrnoException): void {
  const w = this.conn!.watch;
  if (w !== undefined) fail(w, err.code ?? err.message);
}

function onClose(this: Socket & { conn?: Conn }): void {
  const w = this.conn!.watch;
  if (w !== undefined) fail(w, w.state === 'open' ? 'response-cut' : 'closed');
}

/** Starts one watch on connection `i`; resolves once its request is written (or failed). */
function watch(round: number, i: number, path: string): Promise<void> {
  const w: Watch = { state: 'pending', round };
  rounds[round]![i] = w;
  let c = conns[i];
  if (c === undefined || c.socket.destroyed || !c.socket.writable) {
    // A connection the server closed (keep-alive timeout, Connection: close) is not reused.
    c?.socket.destroy();
    c = conns[i] = new Conn();
  }
  c.watch = w;
  c.text = '';
  return new Promise((written) => {
    c.socket.write(`GET ${path} HTTP/1.1\r\nHost: ${target.host}\r\n\r\n`, 'latin1', (err) => {
      if (err) fail(w, (err as NodeJS.ErrnoException).code ?? err.message);
      else if (w.state === 'pending') w.state = 'sent';
      written();
    });
  });
}

function counts(round: number): Record<string, unknown> {
  const c: Record<State, number> = { pending: 0, sent: 0, open: 0, event: 0, error: 0 };
  // A re-poll round has holes where a watcher of the first round failed.
  for (const w of rounds[round] ?? []) if (w !== undefined) c[w.state]++;
  return { round: round + 1, ...c, statuses: statuses[round], codes: codes[round], samples: [...samples] };
}

function newRound(): number {
  rounds.push([]);
  statuses.push({});
  codes.push({});
  return rounds.length - 1;
}

async function open(): Promise<void> {
  const round = newRound();
  const started = performance.now();
  for (let from = 0; from < cfg.n; from += cfg.batch) {
    const batch: Promise<void>[] = [];
    for (let i = from; i < Math.min(cfg.n, from + cfg.batch); i++) batch.push(watch(round, i, `${cfg.key}?wait=true`));
    await Promise.all(batch);
  }
  reply({ type: 'opened', ms: Math.round(performance.now() - started), ...counts(round) });
}

async function fire(): Promise<void> {
  const round = rounds[0]!;
  const live = (): number => round.filter((w) => w.state !== 'event' && w.state !== 'error').length;
  const t0 = performance.now();
  let putMs = Number.NaN;
  let putStatus = 0;
  const put = new Promise<void>((resolve) => {
    const body = 'value=fired';
    const req = request(
      `${cfg.writeUrl}${cfg.key}`,
      { method: 'PUT', headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': body.length } },
      (res) => {
        putStatus = res.statusCode ?? 0;
        putMs = performance.now() - t0;
        res.resume();
        res.on('end', resolve);
      },
    );
    req.on('error', () => resolve());
    req.end(body);
  });
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 10000);
    // Counted down, not recounted on each event: a recount is O(N) per event, O(N²) in all,
    // which at 19,000 watchers made this process, not the system measured, the bottleneck.
    let left = live();
    if (left === 0) {
      clearTimeout(timer);
      resolve();
      return;
    }
    onChange = (w) => {
      if (w.round !== 0) return;
      if (--left === 0) {
        clearTimeout(timer);
        resolve();
      }
    };
  });
  onChange = undefined;
  await put;
  const times = round.filter((w) => w.state === 'event').map((w) => w.at! - t0).sort((a, b) => a - b);
  const indexes = new Set(round.filter((w) => w.state === 'event').map((w) => w.index));
  reply({
    type: 'fired',
    putStatus,
    putMs: Math.round(putMs * 10) / 10,
    delivered: times.length,
    lastMs: times.length > 0 ? Math.round(times[times.length - 1]! * 10) / 10 : null,
    p50Ms: times.length > 0 ? Math.round(times[Math.floor(times.length / 2)]! * 10) / 10 : null,
    indexes: [...indexes],
    ...counts(0),
  });
}

async function repoll(): Promise<void> {
  const first = rounds[0]!;
  const round = newRound();
  const started = performance.now();
  const pending: Promise<void>[] = [];
  first.forEach((w, i) => {
    if (w.state === 'event') pending.push(watch(round, i, `${cfg.key}?wait=true&waitIndex=${w.index! + 1}`));
  });
  await Promise.all(pending);
  reply({ type: 'repolled', ms: Math.round(performance.now() - started), ...counts(round) });
}

const commands: Record<string, () => Promise<void> | void> = {
  status: () => reply({ type: 'status', ...counts(rounds.length - 1) }),
  fire,
  repoll,
  exit: () => process.exit(0),
};

// Commands run one after the other, in the order they arrive.
let queue: Promise<void> = open();
createInterface({ input: process.stdin }).on('line', (line) => {
  const command = commands[line.trim()];
  if (command === undefined) return;
  queue = queue.then(() => command());
});
process.stdin.on('end', () => process.exit(0));
