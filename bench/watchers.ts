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
import { Agent, request } from 'node:http';
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
  index?: number;
  at?: number;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as Config;
const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY, maxFreeSockets: cfg.n });
const rounds: Watch[][] = [];
const statuses: Record<string, number>[] = [];
/** The first few distinct error bodies (status: body), to say why requests failed. */
const samples = new Set<string>();
const codes: Record<string, number>[] = [];
let onChange: (() => void) | undefined;

function reply(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

function tally(table: Record<string, number>, key: string): void {
  table[key] = (table[key] ?? 0) + 1;
}

/** Starts one watch; resolves once its request is written (or failed). */
function watch(round: number, i: number, path: string): Promise<void> {
  const w: Watch = { state: 'pending' };
  rounds[round]![i] = w;
  const fail = (reason: string, status?: number): void => {
    if (w.state === 'error' || w.state === 'event') return;
    w.state = 'error';
    if (status !== undefined) tally(statuses[round]!, String(status));
    else tally(codes[round]!, reason);
    onChange?.();
  };
  return new Promise((written) => {
    const req = request(`${cfg.url}${path}`, { agent }, (res) => {
      if (res.statusCode !== 200) {
        fail('status', res.statusCode);
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          if (samples.size < 4) samples.add(`${res.statusCode}: ${text.trim().slice(0, 200)}`);
        });
        return;
      }
      w.state = 'open';
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        // The event's index, without parsing the whole body: this process must not be the bottleneck.
        const m = /"node":\{[^{}]*"modifiedIndex":(\d+)/.exec(Buffer.concat(chunks).toString('latin1'));
        if (m === null) {
          fail('no-event-in-body');
          return;
        }
        w.index = Number(m[1]);
        w.at = performance.now();
        w.state = 'event';
        onChange?.();
      });
      res.on('error', (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
      res.on('close', () => {
        if (!res.complete) fail('response-cut');
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      fail(err.code ?? err.message);
      written();
    });
    req.on('finish', () => {
      if (w.state === 'pending') w.state = 'sent';
      written();
    });
    req.end();
  });
}

function counts(round: number): Record<string, unknown> {
  const c: Record<State, number> = { pending: 0, sent: 0, open: 0, event: 0, error: 0 };
  for (const w of rounds[round] ?? []) c[w.state]++;
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
    onChange = () => {
      if (live() === 0) {
        clearTimeout(timer);
        resolve();
      }
    };
    onChange();
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
