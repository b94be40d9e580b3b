-- wrk script of bench/ingest.py: GET /health, POST /events/send or POST /events/batch, every
-- event for a contact of its own (a new address per event: each one creates a contact, as a
-- sign-up does), and one line of JSON at the end for the bench to read.
--
-- Read from the environment: BENCH_MODE (health, send or batch), BENCH_BATCH (events per
-- batch request), BENCH_RUN (a prefix unique to the run), BENCH_API_KEY, and BENCH_PACE_MS:
-- if set, each connection waits a random time of that mean (exponential) after an answer
-- before its next request, so that many connections send at a chosen rate, arriving at random
-- as independent callers do (wrk measures a request's latency from when it is written, so
-- the wait is not counted). Unset: each connection sends its next request at once.

local mode = os.getenv("BENCH_MODE") or "health"
local batch = tonumber(os.getenv("BENCH_BATCH") or "100")
local run = os.getenv("BENCH_RUN") or "run"
local key = os.getenv("BENCH_API_KEY") or ""
local pace = tonumber(os.getenv("BENCH_PACE_MS") or "0")

local threads = {}
local counter = 0
local prefix = ""

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

function init(args)
  prefix = run .. "-" .. thread_number .. "-"
  math.randomseed(os.time() * 100 + thread_number)
  wrk.headers["Authorization"] = "Bearer " .. key
  if mode ~= "health" then
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
  end
end

local function event()
  counter = counter + 1
  return '{"event":"bench.event","email":"' .. prefix .. counter
    .. '@bench.test","payload":{"n":' .. counter .. '}}'
end

-- Only the event modes build a request per call: /health keeps wrk's static request.
if mode == "send" then
  function request()
    return wrk.format(nil, nil, nil, event())
  end
elseif mode == "batch" then
  function request()
    local events = {}
    for i = 1, batch do
      events[i] = event()
    end
    return wrk.format(nil, nil, nil, "[" .. table.concat(events, ",") .. "]")
  end
end

if pace > 0 then
  function delay()
    return -pace * math.log(1 - math.random())  -- ms; wrk takes whole milliseconds
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,'
      .. '"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
