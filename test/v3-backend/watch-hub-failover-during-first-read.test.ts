/**
 * The first v2 watch of a hub reads the cluster's revision to start the
 * shared v3 watch "from now". If, during that read, the stream's member
 * failed, the re-opened stream created the shared watch, more watchers
 * joined it and that member failed too, the read's late answer replaced
 * the revision the shared watch had reached: the next stream re-created it
 * from the read's revision, and the events between were lost for every
 * watcher on it (or sent twice, for a read that came back lower). Found in
 * review.
 *
 * A fake client (fake-watch-client.ts): two member failures inside one read
 * cannot be timed with real members.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WatchHub } from '../../src/v3-backend/watch-hub.js';
import type { V2Event } from '../../src/v3-backend/v2-events.js';
import { action, FakeWatchClient, putFile, until } from './fake-watch-client.js';

test('a stream that fails while the first watch reads the revision: the shared watch resumes from what it had seen', async () => {
  const client = new FakeWatchClient();
  const hub = new WatchHub({ client: client.asClient() });
  try {
    const first = hub.watch('/a', { recursive: false, stream: true }, () => undefined, () => undefined);
    await until('the first watch reads the current revision', () => client.reads.length === 1);
    // Member 1 fails; the hub opens a stream on member 2, which creates the shared watch from now (revision 100).
    client.streams[0]!.emit('error', new Error('member 1 is gone'));
    await until('a second stream with the shared watch', () => client.streams[1]?.creates.length === 1);
    const s2 = client.streams[1]!;
    s2.respond({ watchId: s2.creates[0]!.watchId!, revision: 100, created: true });
    // A client that read index 99 waits for what comes next (revisions from 101).
    const got: V2Event[] = [];
    await hub.watch('/a', { recursive: false, stream: true, waitIndex: 100 }, (ev) => got.push(ev), () => undefined);
    // Member 2 fails too, and only then do the first watch's reads come back (its own, then the
    // shared watch's, queued behind it): writes 101 to 105 happened meanwhile. Microtasks only,
    // so that the hub's reconnect timer cannot run in between.
    s2.emit('error', new Error('member 2 is gone'));
    client.reads[0]!.answer(105);
    for (let i = 0; i < 100 && client.reads.length < 2; i++) await Promise.resolve();
    client.reads[1]!.answer(105);
    await first;
    await until('a third stream with the shared watch', () => client.streams[2]?.creates.length === 1);
    const s3 = client.streams[2]!;
    assert.equal(s3.creates[0]!.startRevision, 101, 'resumed after revision 100, the last one the shared watch had');
    s3.respond({ watchId: s3.creates[0]!.watchId!, revision: 105, created: true });
    s3.respond({ watchId: s3.creates[0]!.watchId!, revision: 101, events: [putFile('/a', 101), action('set', 101)] });
    await until('the event of revision 101', () => got.length === 1);
    assert.equal(got[0]!.node.modifiedIndex, 100);
  } finally {
    hub.close();
  }
});
