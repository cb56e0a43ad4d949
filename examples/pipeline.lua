-- An operator pipeline: build/luaisolate examples/pipeline.lua [records]
--
-- Latency reports arrive as JSON lines. Three stages, each in its own
-- cells under the stdlib.readonly policy (no files, no network): parse the
-- line, score the user's latencies, render a report line. One record runs
-- through with run(); a batch goes through map() with two workers per
-- stage, where a bad record fails alone and says in which stage.
local sandbox = sandbox or require "isolate" -- luacheck: ignore 113

local records = tonumber(arg and arg[1]) or 200

local SCORE = [[
def score(r):
    lat = sorted(r["latencies"])
    if not lat:
        raise ValueError("no latencies for %s" % r["user"])
    mid = len(lat) // 2
    p50 = lat[mid] if len(lat) % 2 else (lat[mid - 1] + lat[mid]) / 2
    return {"user": r["user"], "p50": p50, "mean": sum(lat) / len(lat),
            "worst": lat[-1]}
]]

local RENDER = [[
def render(s):
    flag = "SLOW" if s["p50"] > 40 else "ok"
    return "%-8s p50=%5.1f mean=%5.1f worst=%3d %s" % (
        s["user"], s["p50"], s["mean"], s["worst"], flag)
]]

local p = sandbox.pipeline{ policy = "stdlib.readonly", limits = { wall_ms = 2000 } }
  :stage("parse", { call = "json.loads" })
  :stage("score", { code = SCORE, entry = "score" })
  :stage("render", { code = RENDER, entry = "render" })

print(p:run('{"user": "ada", "latencies": [12, 15, 11, 90]}'))

-- A batch, with two broken records: one is not JSON, one has no latencies.
local lines = {}
for i = 1, records do
  local a, b, c = i % 50, (i * 7) % 60, (i * 13) % 70
  lines[i] = string.format('{"user": "u%d", "latencies": [%d, %d, %d]}', i, a, b, c)
end
lines[7] = '{"user": "u7", "latencies": [1, 2'
lines[12] = '{"user": "u12", "latencies": []}'

-- on_progress = true: a progress line on stderr when it is a terminal.
local outs, errs = p:map(lines, { workers = 2, on_progress = true })
local slow, failed = 0, 0
for i = 1, records do
  if errs[i] then
    failed = failed + 1
    local e = errs[i]
    print(string.format("record %d failed in stage %s: %s: %s", i, e.stage,
                        e.python or e.kind, e.message))
  elseif outs[i]:find("SLOW", 1, true) then
    slow = slow + 1
  end
end
print(string.format("%d records: %d slow, %d failed; first: %s", records, slow,
                    failed, outs[1]))

-- wrap: a Python function as a Lua one. reuse = true keeps one cell for
-- every call; the handle closes it when it goes out of scope.
local to_json, cell <close> = sandbox.wrap("json.dumps",
  { policy = "stdlib.readonly", reuse = true })
print(to_json({ records = records, slow = slow, failed = failed }))
