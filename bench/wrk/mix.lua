-- 90/10 read/write mix: on each connection, every 10th request is a PUT of a
-- 64-byte value to the path given after `--` (default /v2/keys/bench/put),
-- the other nine GET the URL given on wrk's command line.
-- At the end prints one line, WRK_JSON {...}, that bench/run.ts reads.
local get_req, put_req
local n = 0

function init(args)
  local put_path = args[1] or "/v2/keys/bench/put"
  get_req = wrk.format("GET", nil, nil, nil)
  put_req = wrk.format("PUT", put_path,
    { ["Host"] = wrk.headers["Host"], ["Content-Type"] = "application/x-www-form-urlencoded" },
    "value=" .. string.rep("m", 64))
end

function request()
  n = n + 1
  if n % 10 == 0 then
    return put_req
  end
  return get_req
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
