/**
 * A stand-in for V3Client with what WatchHub calls (openWatchStream, range),
 * for interleavings a real member cannot be made to produce on demand: each
 * stream and each read is settled by the test, in the order it chooses.
 * Tests that use it say why a real member would not do.
 */
import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { EventEmitter } from 'eventemitter3';
import type { RangeResponse, WatchCreateRequest, WatchEvent, WatchResponse } from '../../src/v3-backend/rpc-types.js';
import type { V3Client, WatchStreamEvents } from '../../src/v3-backend/v3-client.js';
import { KeyLayout } from '../../src/v3-backend/key-layout.js';

export class FakeStream extends EventEmitter<WatchStreamEvents> {
  readonly endpoint = 'http://fake-member';
  readonly creates: WatchCreateRequest[] = [];
  readonly cancels: number[] = [];
  create(req: WatchCreateRequest): void {
    this.creates.push(req);
  }
  cancel(watchId: number): void {
    this.cancels.push(watchId);
  }
  requestProgress(): void {}
  close(): void {}
  /** Sends a response on this stream (defaults: no event, not created, not canceled). */
  respond(r: Partial<WatchResponse> & { watchId: number; revision: number }): void {
    const { revision, ...rest } = r;
    this.emit('response', { header: { clusterId: 0, memberId: 0, revision, raftTerm: 1 }, created: false, canceled: false, compactRevision: 0, cancelReason: '', fragment: false, events: [], ...rest });
  }
}

export class FakeWatchClient {
  readonly streams: FakeStream[] = [];
  /** Reads waiting for the test to answer them with a revision, or to fail them as etcd would (a gRPC error's `details`). */
  readonly reads: Array<{ answer(revision: number): void; fail(details: string): void }> = [];

  openWatchStream(): FakeStream {
    const s = new FakeStream();
    this.streams.push(s);
    return s;
  }

  range(): Promise<RangeResponse> {
    return new Promise((resolve, reject) => {
      this.reads.push({
        answer: (revision) => resolve({ header: { clusterId: 0, memberId: 0, revision, raftTerm: 1 }, kvs: [], more: false, count: 0 }),
        fail: (details) => reject(Object.assign(new Error(details), { details })),
      });
    });
  }

  /** As the hub's option. */
  asClient(): V3Client {
    return this as unknown as V3Client;
  }
}

const layout = new KeyLayout('/v2');

/** A v3 PUT event of the v2 file `path` at `revision` (created there). */
export function putFile(path: string, revision: number, value = 'v'): WatchEvent {
  return { type: 'PUT', kv: { key: layout.fileKey(path), value: Buffer.from(value), createRevision: revision, modRevision: revision, version: 1, lease: 0 }, prevKv: null };
}

/** The action key's PUT in the same revision (what V3Store writes with every v2 write). */
export function action(name: string, revision: number): WatchEvent {
  return { type: 'PUT', kv: { key: layout.actionKey, value: Buffer.from(name), createRevision: 1, modRevision: revision, version: revision, lease: 0 }, prevKv: null };
}

/** A v3 DELETE event of `key` at `revision` (with the pair it removed, created at revision 5). */
export function deleted(key: Buffer, revision: number): WatchEvent {
  return {
    type: 'DELETE',
    kv: { key, value: Buffer.alloc(0), createRevision: 0, modRevision: revision, version: 0, lease: 0 },
    prevKv: { key, value: Buffer.from('x'), createRevision: 5, modRevision: 5, version: 1, lease: 0 },
  };
}

/** Waits, a turn of the event loop at a time (at most 1,000), for `fact`; fails naming `what`. */
export async function until(what: string, fact: () => boolean): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (fact()) return;
    await turn();
  }
  assert.fail(`never happened: ${what}`);
}

export { layout };
