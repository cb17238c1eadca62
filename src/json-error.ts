import type { ServerResponse } from 'node:http';

/**
 * Answers with etcd's error body, `{"message":"..."}`, as etcd's own proxy
 * does for the errors it produces itself (503, 502, 413, ...).
 */
export function sendJsonError(res: ServerResponse, status: number, message: string, extraHeaders?: Record<string, string>): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ message });
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    ...extraHeaders,
  });
  res.end(body);
}
