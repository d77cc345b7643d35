-- wrk script used by bench/run.py (see bench/README.md).
--
-- Sends POST requests with a JSON body read from the file named by $BENCH_BODY_FILE and
-- "Content-Type: application/json". With $BENCH_UNIQUE=1, the text BENCH_N in the body
-- is replaced by "<$BENCH_SEED>-<counter>" on every request, so that each request asks
-- a new question (a cache miss). done() prints one line "BENCH_RESULT <json>" with the
-- request count, duration and latency percentiles in microseconds.

local function read_body()
  local path = assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE is not set")
  local file = assert(io.open(path, "rb"))
  local text = file:read("*a")
  file:close()
  return text
end

local body = read_body()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

if os.getenv("BENCH_UNIQUE") == "1" then
  local first, last = string.find(body, "BENCH_N", 1, true)
  assert(first, "BENCH_UNIQUE=1 needs the text BENCH_N in the body")
  local head = string.sub(body, 1, first - 1) .. (os.getenv("BENCH_SEED") or "0") .. "-"
  local tail = string.sub(body, last + 1)
  local counter = 0

  -- A global request() makes wrk build every request anew instead of reusing one.
  function request()
    counter = counter + 1
    return wrk.format(nil, nil, nil, head .. counter .. tail)
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
