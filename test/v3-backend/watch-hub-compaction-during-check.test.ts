/**
 * A v2 watch with a past waitIndex gets its own v3 watch from that revision,
 * and a read at the revision checks that the history is there. When a
 * compaction came between the two, the check failed as "compacted" and the
 * hub left it to etcd to cancel the watch with the compact revision (v2's
 * 401); but a watch that had caught up before the compaction is not
 * cancelled, and the v2 watch then waited for ever: no answer, not even a
 * head, and events kept for it without bound. Found in review.
 *
 * A fake client (fake-watch-client.ts): a compaction cannot be made to land
 * between a watch's creation and the next read on a real member.
 */
import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { test } from 'node:test';
import { V2Error } from '../../src/v3-backend/v2-error.js';
import type { V2Event } from '../../src/v3-backend/v2-events.js';
import { WatchHub } from '../../src/v3-backend/watch-hub.js';
import { action, FakeWatchClient, putFile, until } from './fake-watch-client.js';

const COMPACTED = 'etcdserver: mvcc: required revision has been compacted';

/** A hub whose shared watch is at revision 100, and a watch with waitIndex 50 whose own v3 watch (from 51) etcd has created. */
async function pastWatch(onEvent: (ev: V2Event) => void): Promise<{ client: FakeWatchClient; hub: WatchHub; registered: Promise<unknown> }> {
  const client = new FakeWatchClient();
  const hub = new WatchHub({ client: client.asClient() });
  const registered = hub.watch('/a', { recursive: false, stream: true, waitIndex: 50 }, onEvent, () => undefined);
  registered.catch(() => undefined);
  await until('the shared watch reads the current revision', () => client.reads.length === 1);
  client.reads[0]!.answer(100);
  await until('the shared watch is asked for', () => client.streams[0]?.creates.length === 1);
  const stream = client.streams[0]!;
  stream.respond({ watchId: stream.creates[0]!.watchId!, revision: 100, created: true });
  await until('the own watch is asked for, and its history checked', () => stream.creates.length === 2 && client.reads.length === 2);
  assert.equal(stream.creates[1]!.startRevision, 51);
  stream.respond({ watchId: stream.creates[1]!.watchId!, revision: 100, created: true });
  return { client, hub, registered };
}

test('a history check that finds the revision compacted, on a watch etcd does not cancel: 401, not a wait for ever', async () => {
  const { client, hub, registered } = await pastWatch(() => undefined);
  try {
    const stream = client.streams[0]!;
    client.reads[1]!.fail(COMPACTED);
    // The watch is made again from 51, which etcd cancels with its compact revision.
    await until('the own watch asked for again', () => stream.creates.length === 3);
    assert.deepEqual(stream.cancels, [stream.creates[1]!.watchId]);
    assert.equal(stream.creates[2]!.startRevision, 51);
    stream.respond({ watchId: stream.creates[2]!.watchId!, revision: 100, created: true });
    stream.respond({ watchId: stream.creates[2]!.watchId!, revision: 100, canceled: true, compactRevision: 80 });
    await assert.rejects(registered, (err: unknown) => err instanceof V2Error && err.errorCode === 401 && /cleared \[79\/50\]/.test(err.cause ?? ''));
    assert.equal(hub.watchers, 0);
  } finally {
    hub.close();
  }
});

test('events from the waitIndex on already received: the history was there, the watch stands', async () => {
  const got: V2Event[] = [];
  const { client, hub, registered } = await pastWatch((ev) => got.push(ev));
  try {
    const stream = client.streams[0]!;
    stream.respond({ watchId: stream.creates[1]!.watchId!, revision: 60, events: [putFile('/a', 60), action('set', 60)] });
    await turn();
    client.reads[1]!.fail(COMPACTED);
    await registered;
    await until('the event of revision 60', () => got.length === 1);
    assert.equal(got[0]!.node.modifiedIndex, 59);
    assert.equal(stream.creates.length, 2, 'not made again');
  } finally {
    hub.close();
  }
});
