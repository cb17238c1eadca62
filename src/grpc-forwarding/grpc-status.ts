import type { OutgoingHttpHeaders } from 'node:http2';

/**
 * gRPC status codes and the header blocks this proxy answers a gRPC call
 * with itself (a "trailers-only" response: one HEADERS frame with
 * `grpc-status`, sent through node:http2).
 */

/** The gRPC status codes this proxy sends itself, by gRPC's numbering. */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** gRPC's names of the status codes, as go-grpc-prometheus labels them (`grpc_code`). */
const CODE_NAMES = [
  'OK',
  'Canceled',
  'Unknown',
  'InvalidArgument',
  'DeadlineExceeded',
  'NotFound',
  'AlreadyExists',
  'PermissionDenied',
  'ResourceExhausted',
  'FailedPrecondition',
  'Aborted',
  'OutOfRange',
  'Unimplemented',
  'Internal',
  'Unavailable',
  'DataLoss',
  'Unauthenticated',
];

/** The `grpc_code` label of a status code (`Unknown` for a number gRPC does not define). */
export function grpcCodeName(code: number): string {
  return CODE_NAMES[code] ?? 'Unknown';
}

/** The status code of a `grpc-status` header value; UNKNOWN when absent or not a number, as gRPC clients read it. */
export function parseGrpcStatus(value: string | string[] | undefined): number {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || !/^\d+$/.test(text)) return GrpcCode.UNKNOWN;
  return Number(text);
}

/** A trailers-only response: HTTP status 200, the status and its message. */
export function trailersOnly(code: number, message: string): OutgoingHttpHeaders {
  return { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': percentEncode(message) };
}

/** Trailers that end a call whose response headers were sent. */
export function statusTrailers(code: number, message: string): OutgoingHttpHeaders {
  return { 'grpc-status': String(code), 'grpc-message': percentEncode(message) };
}

/** gRPC's percent-encoding of grpc-message: printable ASCII but '%' as is, the rest as %XX of UTF-8. */
export function percentEncode(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
