/**
 * Lease IDs that encode a node's expiry, and v2's ttl/expiration from them.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  EXPIRY_LIMIT_MS,
  LEASE_ID_SPREAD,
  MAX_ENCODABLE_EXPIRY_MS,
  MIN_EXPIRY_MS,
  effectiveLease,
  expiryFields,
  expiryOfLease,
  formatExpiration,
  grantSeconds,
  leaseIdFor,
  remainingTtl,
} from '../../src/v3-backend/lease-expiry.js';

const T = Date.UTC(2026, 5, 1, 12, 0, 0, 250);

describe('lease expiry', () => {
  test('a lease ID encodes its expiry (ms) and a random part, below 2^53', () => {
    const id = leaseIdFor(T, 7);
    assert.equal(id, T * 2048 + 7);
    assert.ok(Number.isSafeInteger(id));
    assert.equal(expiryOfLease(id), T);
    for (let i = 0; i < 100; i++) {
      const r = leaseIdFor(T);
      assert.equal(expiryOfLease(r), T);
      assert.ok(r % LEASE_ID_SPREAD >= 0 && r % LEASE_ID_SPREAD < LEASE_ID_SPREAD);
    }
    assert.equal(leaseIdFor(T, 5000) % LEASE_ID_SPREAD, LEASE_ID_SPREAD - 1);
  });

  test('expiries are clamped to what an ID can hold', () => {
    const far = leaseIdFor(Date.UTC(2300, 0, 1), 2047);
    assert.ok(Number.isSafeInteger(far));
    assert.equal(expiryOfLease(far), MAX_ENCODABLE_EXPIRY_MS);
    assert.ok(MAX_ENCODABLE_EXPIRY_MS > Date.UTC(2109, 0, 1) && MAX_ENCODABLE_EXPIRY_MS < EXPIRY_LIMIT_MS);
  });

  test('leases that are not ours decode to nothing', () => {
    assert.equal(expiryOfLease(0), undefined);
    assert.equal(expiryOfLease(-5), undefined);
    assert.equal(expiryOfLease(7587862386212345678), undefined); // an etcd-chosen ID (member ID bits on top): past 2^53
    assert.equal(expiryOfLease(123456789), undefined); // a small ID: 1970
    assert.equal(expiryOfLease((MIN_EXPIRY_MS - 1) * 2048), undefined);
    assert.equal(expiryOfLease(MIN_EXPIRY_MS * 2048), MIN_EXPIRY_MS);
    assert.equal(expiryOfLease(2 ** 60), undefined);
    assert.equal(expiryOfLease(1.5), undefined);
  });

  test('ttl is the remaining seconds rounded up, as v2, and 0 once due (an expire event\'s prevNode shows none, as native)', () => {
    assert.equal(remainingTtl(T + 100_000, T), 100);
    assert.equal(remainingTtl(T + 99_001, T), 100);
    assert.equal(remainingTtl(T + 1, T), 1);
    assert.equal(remainingTtl(T, T), 0);
    assert.ok(Object.is(remainingTtl(T - 300, T), 0));
    assert.equal(remainingTtl(T - 1300, T), 0);
  });

  test('expiration is written as Go writes a time.Time', () => {
    assert.equal(formatExpiration(Date.UTC(2026, 0, 2, 3, 4, 5, 120)), '2026-01-02T03:04:05.12Z');
    assert.equal(formatExpiration(Date.UTC(2026, 0, 2, 3, 4, 5, 0)), '2026-01-02T03:04:05Z');
    assert.equal(formatExpiration(Date.UTC(2026, 0, 2, 3, 4, 5, 7)), '2026-01-02T03:04:05.007Z');
    assert.equal(formatExpiration(Date.UTC(2026, 0, 2, 3, 4, 5, 100)), '2026-01-02T03:04:05.1Z');
  });

  test('expiryFields leaves ttl out when 0 (omitempty)', () => {
    assert.deepEqual(expiryFields(T + 5000, T), { expiration: formatExpiration(T + 5000), ttl: 5 });
    assert.deepEqual(expiryFields(T, T), { expiration: formatExpiration(T) });
  });

  test('grantSeconds is at least 1', () => {
    assert.equal(grantSeconds(T + 10_000, T), 10);
    assert.equal(grantSeconds(T + 10_001, T), 11);
    assert.equal(grantSeconds(T, T), 1);
    assert.equal(grantSeconds(T - 5000, T), 1);
  });

  test('effectiveLease: the earlier of own and parent, parent when own is none', () => {
    const early = leaseIdFor(T + 10_000, 1);
    const late = leaseIdFor(T + 60_000, 2);
    assert.equal(effectiveLease(0, 0), 0);
    assert.equal(effectiveLease(0, late), late);
    assert.equal(effectiveLease(early, 0), early);
    assert.equal(effectiveLease(early, late), early);
    assert.equal(effectiveLease(late, early), early);
    assert.equal(effectiveLease(late, late), late);
    // a lease not ours on the parent: the node goes with its parent
    assert.equal(effectiveLease(early, 12345), 12345);
    // a lease not ours on the node, parent ours: the parent's
    assert.equal(effectiveLease(12345, late), late);
  });
});
