/**
 * A recursive delete of a directory with some 150,000 nodes (or its TTL
 * running out) is one v3 revision, which etcd sends as one watch response of
 * as many events. The hub took that response's last revision with
 * `Math.max(...events)`, past what a spread can take (a RangeError), so the
 * response was dropped and no watcher saw the delete: a `stream=false`
 * watcher (confd, flannel, etcdctl watch) hung until some later write.
 * Found in review.
 *
 * A fake client (fake-watch-client.ts): writing 150,000 keys to a real
 * member to delete them would take a test most of a minute.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WatchHub } from '../../src/v3-backend/watch-hub.js';
import type { V2Event } from '../../src/v3-backend/v2-events.js';
import { action, deleted, FakeWatchClient, layout, until } from './fake-watch-client.js';

test('a watcher sees the delete of a directory of 150,000 nodes', async () => {
  const client = new FakeWatchClient();
  const hub = new WatchHub({ client: client.asClient() });
  try {
    const got: V2Event[] = [];
    const registered = hub.watch('/d', { recursive: true, stream: false }, (ev) => got.push(ev), () => undefined);
    await until('the watch reads the current revision', () => client.reads.length === 1);
    client.reads[0]!.answer(10);
    await until("the shared watch's read", () => client.reads.length === 2);
    client.reads[1]!.answer(10);
    await until('the shared watch is created', () => client.streams[0]?.creates.length === 1);
    const stream = client.streams[0]!;
    const watchId = stream.creates[0]!.watchId!;
    stream.respond({ watchId, revision: 10, created: true });
    await registered;
    const events = [deleted(layout.dirKey('/d'), 11)];
    for (let i = 0; i < 150000; i++) events.push(deleted(layout.fileKey(`/d/k${i}`), 11));
    events.push(action('delete', 11));
    stream.respond({ watchId, revision: 11, events });
    await until('the delete', () => got.length === 1);
    assert.equal(got[0]!.action, 'delete');
    assert.equal(got[0]!.node.key, '/d');
    assert.equal(got[0]!.node.modifiedIndex, 10);
  } finally {
    hub.close();
  }
});
