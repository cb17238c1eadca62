import type { Endpoint } from './endpoint.js';
import { InvalidOptionError } from '../errors.js';
import { describe } from '../validate-options.js';

/**
 * What a strategy knows of the request it picks an endpoint for.
 * @public
 */
export interface PickContext {
  /** HTTP method. */
  readonly method: string;
  /** PUT, POST, DELETE or PATCH. */
  readonly write: boolean;
}

/**
 * Chooses, for one request, the endpoint to try first among the candidates
 * (never empty). The other candidates follow as fallbacks. Implement it to
 * plug your own policy into {@link EndpointBalancer}.
 * @public
 */
export interface BalancerStrategy {
  /** Shown in logs. */
  readonly name: string;
  pick(candidates: readonly Endpoint[], context: PickContext): Endpoint;
}

/**
 * The built-in strategies:
 * - `least-in-flight` (default): of two endpoints drawn at random, the one
 *   with fewer requests in flight ("power of two choices"), ties at random.
 * - `round-robin`: each endpoint in turn.
 * - `first-available`: etcd's proxy's behaviour, the first endpoint of a list
 *   shuffled at each membership change; every request of a proxy goes to one
 *   member (etcd-io/etcd#2549, #5458: 1,200 proxies pinned one member).
 * @public
 */
export type StrategyName = 'least-in-flight' | 'round-robin' | 'first-available';

/** Builds a built-in strategy, or checks a user's one. */
export function strategyOption(value: unknown): BalancerStrategy {
  if (value === undefined || value === 'least-in-flight') return leastInFlight();
  if (value === 'round-robin') return roundRobin();
  if (value === 'first-available') return { name: 'first-available', pick: (candidates) => candidates[0]! };
  if (value !== null && typeof value === 'object' && typeof (value as BalancerStrategy).pick === 'function') {
    return value as BalancerStrategy;
  }
  throw new InvalidOptionError(
    'strategy',
    `expected "least-in-flight", "round-robin", "first-available" or an object with pick(), got ${describe(value)}`,
  );
}

function leastInFlight(): BalancerStrategy {
  return {
    name: 'least-in-flight',
    pick(candidates) {
      const n = candidates.length;
      if (n === 1) return candidates[0]!;
      const i = Math.floor(Math.random() * n);
      let j = Math.floor(Math.random() * (n - 1));
      if (j >= i) j++;
      const a = candidates[i]!;
      const b = candidates[j]!;
      return a.inFlight < b.inFlight ? a : b.inFlight < a.inFlight ? b : Math.random() < 0.5 ? a : b;
    },
  };
}

function roundRobin(): BalancerStrategy {
  let next = 0;
  return {
    name: 'round-robin',
    pick(candidates) {
      next = (next + 1) % 1_000_000_000;
      return candidates[next % candidates.length]!;
    },
  };
}
