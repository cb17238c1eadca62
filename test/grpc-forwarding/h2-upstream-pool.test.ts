/**
 * H2UpstreamPool's keepalive when a member sends GOAWAY, against a fake
 * member in a child process: a real member cannot be made to stop between
 * its GOAWAY and its answer to the PING that follows. Node closes a
 * session that got a GOAWAY and sends no PING on it after that, so the pool
 * sends one as the GOAWAY arrives; a member that never answers it is taken
 * for dead and the calls still open on it end, instead of waiting forever.
 * The real-etcd side of the keepalive is test/integration/grpc-keepalive.test.ts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ClientHttp2Session } from 'node:http2';
import { afterEach, it } from 'node:test';
import { EndpointBalancer } from '../../src/index.js';
import { H2UpstreamPool } from '../../src/grpc-forwarding/h2-upstream-pool.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

/** The member: answers each stream with headers and one DATA frame, keeps it open, and sends GOAWAY (NO_ERROR) 20 ms later. */
const FAKE_MEMBER = `
const { createServer } = require('node:http2');
const server = createServer();
server.on('stream', (stream) => {
  stream.respond({ ':status': 200 });
  stream.write('open');
  setTimeout(() => stream.session.goaway(0), 20);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

it('a member that sends GOAWAY and then never answers: the PING sent with the GOAWAY goes unanswered and the calls still open end', async () => {
  const child = spawn(process.execPath, ['-e', FAKE_MEMBER], { stdio: ['ignore', 'pipe', 'inherit'] });
  cleanups.push(() => child.kill('SIGKILL'));
  const port = await new Promise<string>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(d.toString().trim()));
    child.once('exit', (code) => reject(new Error(`the fake member exited (${code})`)));
  });
  const balancer = new EndpointBalancer({ endpoints: [`http://127.0.0.1:${port}`] });
  cleanups.push(() => balancer.close());
  const endpoint = balancer.endpoints[0]!;
  const pool = new H2UpstreamPool({ dialTimeout: 1000, idleTimeout: 30000, keepaliveTime: 60000, keepaliveTimeout: 300, tls: undefined, onLost: () => undefined });
  cleanups.push(() => pool.close());
  const session = await new Promise<ClientHttp2Session>((resolve, reject) => pool.acquire(endpoint, { sessionReady: resolve, sessionFailed: reject }));
  const stream = session.request({ ':path': '/call' }, { endStream: false });
  stream.on('error', () => undefined);
  await new Promise<void>((resolve) => stream.once('data', () => resolve()));
  // The pool's own 'goaway' listener (it sends the PING) runs first: the member is stopped before the PING leaves this process.
  const stopped = new Promise<number>((resolve) =>
    session.once('goaway', () => {
      child.kill('SIGSTOP');
      resolve(Date.now());
    }),
  );
  cleanups.push(() => child.kill('SIGCONT'));
  const stoppedAt = await stopped;
  // keepaliveTime is a minute: only the PING sent with the GOAWAY can end the call this soon.
  const closedAt = await new Promise<number>((resolve, reject) => {
    const bound = setTimeout(() => reject(new Error('the call on the silent member is still open after 10 s')), 10000);
    stream.once('close', () => {
      clearTimeout(bound);
      resolve(Date.now());
    });
  });
  assert.ok(session.destroyed, 'the connection was destroyed');
  assert.ok(closedAt - stoppedAt >= 250, `ended ${closedAt - stoppedAt} ms after the GOAWAY: not before keepaliveTimeout`);
  pool.release(session);
});
