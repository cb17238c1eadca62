import type { ClientResponse } from '../forwarding/forward-request.js';

/**
 * Answers with etcd's error body, `{"message":"..."}`, as etcd's own proxy
 * does for the errors it produces itself (503, 502, 413, ...).
 * `extraHeaders`: more header names and values, alternating.
 */
export function sendJsonError(res: ClientResponse, status: number, message: string, extraHeaders?: readonly string[]): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ message });
  const headers = ['Content-Type', 'application/json', 'Content-Length', String(Buffer.byteLength(body))];
  if (extraHeaders !== undefined) headers.push(...extraHeaders);
  res.writeHead(status, undefined, headers);
  res.end(body);
}
