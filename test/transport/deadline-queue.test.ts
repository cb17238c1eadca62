import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeadlineQueue } from '../../src/transport/deadline-queue.js';
import type { DeadlineNode } from '../../src/transport/deadline-queue.js';

class Item implements DeadlineNode<Item> {
  dueAt = 0;
  dueQueue: DeadlineQueue<Item> | undefined = undefined;
  dueBefore: Item | undefined = undefined;
  dueAfter: Item | undefined = undefined;
  expiredAt = 0;
  constructor(readonly name: string) {}
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('DeadlineQueue (the forwarder\'s dial, write and response-header deadlines)', () => {
  it('expires each item once, in the order added, no earlier than its duration', async () => {
    const expired: Item[] = [];
    const queue = new DeadlineQueue<Item>(40, (item) => {
      item.expiredAt = performance.now();
      expired.push(item);
    });
    const a = new Item('a');
    const b = new Item('b');
    const added = performance.now();
    queue.add(a);
    await sleep(15);
    const addedB = performance.now();
    queue.add(b);
    await sleep(120);
    assert.deepEqual(expired.map((i) => i.name), ['a', 'b']);
    assert.ok(a.expiredAt - added >= 39, `a expired after ${a.expiredAt - added} ms`);
    assert.ok(b.expiredAt - addedB >= 39, `b expired after ${b.expiredAt - addedB} ms`);
    assert.equal(a.dueQueue, undefined);
    queue.close();
  });

  it('an item removed (its phase ended in time) never expires; the others still do', async () => {
    const expired: string[] = [];
    const queue = new DeadlineQueue<Item>(30, (item) => expired.push(item.name));
    const items = ['a', 'b', 'c'].map((n) => new Item(n));
    for (const i of items) queue.add(i);
    queue.remove(items[0]!);
    queue.remove(items[1]!);
    queue.remove(items[1]!); // twice: no-op
    await sleep(80);
    assert.deepEqual(expired, ['c']);
    queue.close();
  });

  it('adding an item to a second queue moves it out of the first', async () => {
    const expired: string[] = [];
    const dial = new DeadlineQueue<Item>(20, (item) => expired.push(`dial ${item.name}`));
    const response = new DeadlineQueue<Item>(60, (item) => expired.push(`response ${item.name}`));
    const x = new Item('x');
    dial.add(x);
    response.add(x);
    await sleep(40);
    assert.deepEqual(expired, []);
    await sleep(60);
    assert.deepEqual(expired, ['response x']);
    dial.close();
    response.close();
  });

  it('close() forgets the items and stops its timer; its timer never holds the process open', async () => {
    const expired: string[] = [];
    const queue = new DeadlineQueue<Item>(20, (item) => expired.push(item.name));
    const x = new Item('x');
    queue.add(x);
    queue.close();
    assert.equal(x.dueQueue, undefined);
    queue.add(new Item('after close'));
    await sleep(50);
    assert.deepEqual(expired, []);
    // A queue with a pending item, left open: its unref'd timer does not keep a process alive.
    const { spawnSync } = await import('node:child_process');
    const script =
      "import { DeadlineQueue } from './src/transport/deadline-queue.ts';" +
      "const q = new DeadlineQueue(60000, () => {}); q.add({ dueAt: 0, dueQueue: undefined, dueBefore: undefined, dueAfter: undefined });";
    const started = Date.now();
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 20000 });
    assert.equal(child.status, 0, String(child.stderr));
    assert.ok(Date.now() - started < 20000);
  });
});
