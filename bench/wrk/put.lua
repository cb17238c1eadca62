-- PUT a 64-byte value (a form post, as etcd's v2 clients send it) to the
-- URL given on wrk's command line, on keep-alive connections.
-- At the end prints one line, WRK_JSON {...}, that bench/run.ts reads.
wrk.method = "PUT"
wrk.body = "value=" .. string.rep("p", 64)
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
