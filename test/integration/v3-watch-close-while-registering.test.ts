/**
 * Closing the v3 backend (a SIGTERM's `proxy.close()`) while the first v2
 * watch was still being registered killed the process: the hub's shared v3
 * watch had a pending "created" promise that the close rejected and no one
 * awaited any more (an unhandled rejection, which ends a Node 20 process).
 * Found in review.
 */
import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { EndpointBalancer } from '../../src/balancer/endpoint-balancer.js';
import { V2Error } from '../../src/v3-backend/v2-error.js';
import { V3Client } from '../../src/v3-backend/v3-client.js';
import { WatchHub } from '../../src/v3-backend/watch-hub.js';
import { cleanup, member, onCleanup, skipWithoutEtcd } from './harness.js';
import type { LocalEtcd } from './harness.js';

describe('v3 mode: the watch hub closed while its first watch registers', { skip: skipWithoutEtcd }, () => {
  let m: LocalEtcd;
  before(async () => {
    m = await member({ enableV2: false });
  });
  after(cleanup);

  test('the watch fails with 300 and nothing is left unhandled', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    onCleanup(() => process.off('unhandledRejection', onUnhandled));
    const balancer = new EndpointBalancer({ endpoints: [m.clientUrl], leaderWrites: false });
    const client = new V3Client({ balancer });
    onCleanup(() => {
      client.close();
      balancer.close();
    });
    const hub = new WatchHub({ client, prefix: '/closing' });
    // watch() runs up to its read of the current revision (a call to the member), then close() comes.
    const registering = hub.watch('/a', { recursive: false, stream: true }, () => undefined, () => undefined);
    hub.close();
    await assert.rejects(registering, (err: unknown) => err instanceof V2Error && err.errorCode === 300);
    // Unhandled rejections are reported once the microtasks of a turn have run.
    await turn();
    await turn();
    assert.deepEqual(unhandled.map(String), []);
  });
});
