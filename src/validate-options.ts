import type { EndpointBalancer } from './balancer/endpoint-balancer.js';
import { InvalidOptionError } from './errors.js';
import type { ProxyMode } from './handler/v2-proxy-handler.js';

/**
 * Eager option checks shared by the constructors: each throws an
 * {@link InvalidOptionError} naming the option and the value it got.
 */

/** A whole number of milliseconds, `>= min`; `undefined` gives `fallback`. */
export function durationOption(name: string, value: unknown, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new InvalidOptionError(
      name,
      `expected a whole number of milliseconds >= ${min}, got ${describe(value)}`,
    );
  }
  return value;
}

/** A positive whole number (a count or a byte size); `undefined` gives `fallback`. */
export function positiveIntegerOption(name: string, value: unknown, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidOptionError(name, `expected a positive whole number, got ${describe(value)}`);
  }
  if (value > max) throw new InvalidOptionError(name, `expected a whole number from 1 to ${max}, got ${describe(value)}`);
  return value;
}

/** An `AbortSignal` or `undefined`. */
export function signalOption(value: unknown): AbortSignal | undefined {
  if (value === undefined || value instanceof AbortSignal) return value;
  throw new InvalidOptionError('signal', `expected an AbortSignal, got ${describe(value)}`);
}

/**
 * An etcd-style URL: `http://` or `https://` with an explicit host and port and
 * no path, query or credentials. Returns it as `scheme://host:port`.
 */
export function parseHostPortUrl(raw: string): { url: string; error?: undefined } | { url?: undefined; error: string } {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return { error: `"${raw}" is not a URL` };
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    return { error: `"${raw}" must use http:// or https://` };
  }
  if (u.hostname === '') return { error: `"${raw}" has no host` };
  // URL drops a port equal to the scheme's default; etcd wants it written out.
  if (!/^[a-z]+:\/\/(\[[^\]]*\]|[^/:?#@]*):\d+\/?$/i.test(raw)) {
    if (u.username !== '' || u.password !== '') return { error: `"${raw}" must not carry credentials` };
    if (u.pathname !== '/' || u.search !== '' || u.hash !== '') {
      return { error: `"${raw}" must not have a path, query or fragment` };
    }
    return { error: `"${raw}" must give a port (host:port)` };
  }
  return { url: `${u.protocol}//${u.hostname}:${u.port === '' ? defaultPort(u.protocol) : u.port}` };
}

function defaultPort(protocol: string): string {
  return protocol === 'https:' ? '443' : '80';
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  return typeof value;
}

/** The options object of a constructor that needs a balancer (V2ProxyHandler, GrpcForwarder), and its balancer. */
export function balancerOption(options: unknown): EndpointBalancer {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError('options', `expected an object with a balancer, got ${describe(options)}`);
  }
  return balancerValue((options as { balancer?: unknown }).balancer);
}

/** `value` as the `balancer` option: one check for every class that takes a balancer. */
export function balancerValue(value: unknown): EndpointBalancer {
  if (value === null || typeof value !== 'object' || typeof (value as Partial<EndpointBalancer>).plan !== 'function') {
    throw new InvalidOptionError('balancer', `expected an EndpointBalancer, got ${describe(value)}`);
  }
  return value as EndpointBalancer;
}

/** etcd's `--proxy on|readonly` as `mode`; `undefined` is `readwrite`. */
export function modeOption(value: unknown): ProxyMode {
  if (value === undefined) return 'readwrite';
  if (value !== 'readwrite' && value !== 'readonly') {
    throw new InvalidOptionError('mode', `expected "readwrite" or "readonly", got ${describe(value)}`);
  }
  return value;
}
