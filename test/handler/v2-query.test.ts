/**
 * queryFlag: `wait` and `quorum` read as etcd reads them (Go's
 * strconv.ParseBool on the first value, percent-decoded). A watch spelled
 * `wait=1` that the proxy took for a plain GET was pipelined, and the GETs
 * queued behind it waited for its event (then failed and marked the member
 * down).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { needsQuorum } from '../../src/balancer/endpoint-balancer.js';
import { queryFlag } from '../../src/handler/v2-query.js';

describe('queryFlag', () => {
  it("is true for every spelling of true that etcd's ParseBool takes", () => {
    for (const v of ['1', 't', 'T', 'true', 'TRUE', 'True']) assert.equal(queryFlag(`/v2/keys/a?wait=${v}`, 'wait'), true, v);
  });

  it('is false for false, for spellings ParseBool refuses, for an empty or missing value and without the parameter', () => {
    for (const q of ['wait=false', 'wait=0', 'wait=f', 'wait=yes', 'wait=tRUE', 'wait=', 'wait', 'nowait=true', 'waitIndex=5', 'recursive=true', '']) {
      assert.equal(queryFlag(`/v2/keys/a?${q}`, 'wait'), false, q);
    }
    assert.equal(queryFlag('/v2/keys/wait=true', 'wait'), false, 'in the path, not the query');
    assert.equal(queryFlag('/v2/keys/a', 'wait'), false);
  });

  it('finds the parameter anywhere in the query, and takes its first value as etcd does', () => {
    assert.equal(queryFlag('/v2/keys/a?recursive=true&waitIndex=7&wait=true', 'wait'), true);
    assert.equal(queryFlag('/v2/keys/a?wait=false&wait=true', 'wait'), false);
    assert.equal(queryFlag('/v2/keys/a?wait=true&wait=false', 'wait'), true);
    assert.equal(queryFlag('/v2/keys/a?&&wait=1', 'wait'), true);
  });

  it('decodes percent-escapes in the name and the value; a malformed escape sets nothing', () => {
    assert.equal(queryFlag('/v2/keys/a?w%61it=%74rue', 'wait'), true);
    assert.equal(queryFlag('/v2/keys/a?wait=%31', 'wait'), true);
    assert.equal(queryFlag('/v2/keys/a?wait=tr%ZZue', 'wait'), false);
    assert.equal(queryFlag('/v2/keys/a?wait=+true', 'wait'), false, "'+' is a space: ' true' is not a boolean");
  });
});

describe('needsQuorum', () => {
  it('is true for writes and for quorum reads in any spelling etcd takes', () => {
    assert.equal(needsQuorum('PUT', '/v2/keys/a'), true);
    assert.equal(needsQuorum('GET', '/v2/keys/a?quorum=true'), true);
    assert.equal(needsQuorum('GET', '/v2/keys/a?quorum=1'), true);
    assert.equal(needsQuorum('GET', '/v2/keys/a?quorum=false'), false);
    assert.equal(needsQuorum('GET', '/v2/keys/a'), false);
  });
});
