/**
 * v2 TTLs on v3 leases: a node with a TTL is attached to a lease whose ID
 * encodes the node's expiry, `leaseId = expiryMs * 2048 + random(0..2047)`,
 * so that its `ttl` and `expiration` read straight from the key's `lease`
 * field (listing N such keys needs no lease call). A lease ID is treated as
 * ours only when it decodes to a time in [2020, 2110); any other lease (one
 * another program attached) shows no TTL.
 */

/** How many lease IDs share one expiry millisecond (the random part). */
export const LEASE_ID_SPREAD = 2048;

/** The earliest expiry a lease ID of ours decodes to (2020-01-01). */
export const MIN_EXPIRY_MS = Date.UTC(2020, 0, 1);

/** Expiries decode below this (2110-01-01). */
export const EXPIRY_LIMIT_MS = Date.UTC(2110, 0, 1);

/** The latest expiry a lease ID can encode and stay an exact number (< 2^53): in 2109. */
export const MAX_ENCODABLE_EXPIRY_MS = Math.floor((Number.MAX_SAFE_INTEGER - (LEASE_ID_SPREAD - 1)) / LEASE_ID_SPREAD);

/**
 * The lease ID for a node expiring at `expiryMs` (clamped to what an ID can
 * encode); `random` in 0..2047 (a fresh one by default) tells apart leases
 * granted for the same millisecond.
 */
export function leaseIdFor(expiryMs: number, random = Math.floor(Math.random() * LEASE_ID_SPREAD)): number {
  const ms = Math.min(Math.max(Math.floor(expiryMs), MIN_EXPIRY_MS), MAX_ENCODABLE_EXPIRY_MS);
  const r = Math.min(Math.max(Math.floor(random), 0), LEASE_ID_SPREAD - 1);
  return ms * LEASE_ID_SPREAD + r;
}

/** The expiry (ms since the epoch) a lease ID of ours encodes; undefined for 0 and for leases not ours. */
export function expiryOfLease(lease: number): number | undefined {
  if (!Number.isSafeInteger(lease) || lease <= 0) return undefined;
  const ms = Math.floor(lease / LEASE_ID_SPREAD);
  return ms >= MIN_EXPIRY_MS && ms < EXPIRY_LIMIT_MS ? ms : undefined;
}

/**
 * The `ttl` v2 shows for a node expiring at `expiryMs`, at `nowMs`: the
 * remaining seconds rounded up (1..n while it lives), as v2's
 * `expirationAndTTL`; 0 once due (a lease outlives its expiry by up to etcd's
 * minimum lease TTL, and an expire event's prevNode is read after it: native
 * v2 shows no `ttl` there).
 */
export function remainingTtl(expiryMs: number, nowMs: number): number {
  const ttl = Math.ceil((expiryMs - nowMs) / 1000);
  return ttl <= 0 ? 0 : ttl; // no -0, no negative
}

/**
 * An expiry as Go marshals a `time.Time` in v2's JSON (RFC 3339 in UTC, the
 * fraction of a second without trailing zeros, none when whole).
 */
export function formatExpiration(expiryMs: number): string {
  const iso = new Date(expiryMs).toISOString(); // 2026-01-02T03:04:05.120Z
  return iso.replace(/\.(\d*?)0*Z$/, (_m, frac: string) => (frac === '' ? 'Z' : `.${frac}Z`));
}

/** `expiration` and `ttl` of a node expiring at `expiryMs`, as v2 writes them (`ttl` left out when 0, Go's omitempty). */
export function expiryFields(expiryMs: number, nowMs: number): { expiration: string; ttl?: number } {
  const ttl = remainingTtl(expiryMs, nowMs);
  return ttl === 0 ? { expiration: formatExpiration(expiryMs) } : { expiration: formatExpiration(expiryMs), ttl };
}

/**
 * The TTL in seconds to grant a lease expiring at `expiryMs` with, at
 * `nowMs` (at least 1; etcd raises anything below its minimum lease TTL to
 * that minimum).
 */
export function grantSeconds(expiryMs: number, nowMs: number): number {
  return Math.max(1, Math.ceil((expiryMs - nowMs) / 1000));
}

/**
 * The lease a node is attached to: the earlier-expiring of its own lease
 * (`own`, 0 for none) and the one of its parent directory (`parent`, 0 for
 * none), so that a directory's expiry takes its subtree with it. A lease we
 * cannot date (not ours) counts as expiring first for the parent (the node
 * goes with its directory) and last for the node itself.
 */
export function effectiveLease(own: number, parent: number): number {
  if (own === 0) return parent;
  if (parent === 0 || parent === own) return own;
  const p = expiryOfLease(parent);
  if (p === undefined) return parent;
  const o = expiryOfLease(own);
  if (o === undefined) return parent;
  return o <= p ? own : parent;
}
