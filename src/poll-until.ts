/**
 * Resolves once `done()` is true, checked every 50 ms, or after `timeoutMs`
 * whatever it says: how a graceful stop waits for the requests in flight
 * (V2ProxyHandler.drain, GrpcForwarder.drain).
 */
export async function pollUntil(done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done() && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(50, Math.max(1, deadline - Date.now()))));
  }
}
