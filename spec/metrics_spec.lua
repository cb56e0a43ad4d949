-- Guest metric() values in sandbox.metrics() (issue 13, part 3): valid
-- Prometheus text (read back by our strict parser and by prometheus_client),
-- names sanitised and namespaced, bounded series, hostile input refused;
-- --metrics-file written atomically at an interval and at exit.
local sandbox = require "isolate"
local support = require "support"
local prom = require "prom"
local metrics = require "isolate.metrics"

local HOST = os.getenv("ISOLATE_HOST")

local function families()
  return prom.parse(sandbox.metrics())
end

describe("guest metrics in sandbox.metrics()", function()
  for _, backend in ipairs(support.backends()) do
    it("are gauges named isolate_guest_<name>, labelled by cell and tags (" .. backend .. ")", function()
      local sb <close> = sandbox.spawn({ backend = backend })
      sb:exec("metric('requests.total', 3, {'route': '/a', 'ok': True})\n"
              .. "metric('temp-c', 21.5)\nmetric('temp-c', -2.25)\n"
              .. "metric('big', 2**62)\npost(0)")
      sb:recv(5)
      for _ in sb:events() do end
      local fams = families()
      assert.are.equal("gauge", fams.isolate_guest_requests_total.type)
      local s = prom.sample(fams, "isolate_guest_requests_total", { cell = sb.name })
      assert.are.same({ cell = sb.name, route = "/a", ok = "true" }, s.labels)
      assert.are.equal(3, s.value)
      -- the last value of a series is kept
      assert.are.equal(-2.25, prom.sample(fams, "isolate_guest_temp_c", { cell = sb.name }).value)
      assert.are.equal(2 ^ 62, prom.sample(fams, "isolate_guest_big", { cell = sb.name }).value)
    end)
  end

  it("outlive their cell, for a batch job's last write", function()
    local sb = sandbox.spawn({})
    sb:exec("metric('done', 1)")
    sb:close()
    assert.are.equal(1, prom.sample(families(), "isolate_guest_done", { cell = sb.name }).value)
  end)

  it("escape label values so that prometheus_client reads back what the guest wrote", function()
    local sb <close> = sandbox.spawn({})
    sb:exec([[metric('escaped', 1, {'v': 'a"b\\c\nd}{,=é\u2028'})]])
    for _ in sb:events() do end
    local text = sandbox.metrics()
    local fams = prom.parse(text)
    local want = 'a"b\\c\nd}{,=é\u{2028}'
    assert.are.equal(want, prom.sample(fams, "isolate_guest_escaped", { cell = sb.name }).labels.v)
    local py = prom.python_parse(text)
    if not py then
      print("# metrics_spec: prometheus_client not installed, second opinion skipped")
      return
    end
    local found
    for _, s in ipairs(py) do
      if s.name == "isolate_guest_escaped" and s.labels.cell == sb.name then found = s end
    end
    assert.are.equal(want, found.labels.v)
    -- every sample of ours is one of theirs, and no more
    local ours = 0
    for _, fam in pairs(fams) do ours = ours + #fam.samples end
    assert.are.equal(ours, #py)
  end)
end)

describe("the guest's metric()", function()
  -- what breaks a rule, and the exception the guest gets for it
  local REFUSED = {
    { "metric('x' * (1 << 20), 1)", "ValueError" },          -- a huge name
    { "metric('', 1)", "ValueError" },
    { "metric('a\\nb', 1)", "ValueError" },                  -- a control character
    { "metric('a\\x1b[2J', 1)", "ValueError" },
    { "metric('x{cell=\"y\"}', 1)", "ValueError" },
    { "metric('caf\\u00e9', 1)", "ValueError" },            -- not ASCII
    { "metric('x' * 65, 1)", "ValueError" },
    { "metric('n', float('nan'))", "ValueError" },
    { "metric('n', float('inf'))", "ValueError" },
    { "metric('n', 2**64)", "ValueError" },
    { "metric('n', True)", "TypeError" },
    { "metric('n', '1')", "TypeError" },
    { "metric('n', None)", "TypeError" },
    { "metric('n', 1, ['k'])", "TypeError" },
    { "metric('n', 1, {'cell': 'other'})", "ValueError" },
    { "metric('n', 1, {'__name__': 'x'})", "ValueError" },
    { "metric('n', 1, {'a-b': 'x'})", "ValueError" },
    { "metric('n', 1, {'1a': 'x'})", "ValueError" },
    { "metric('n', 1, {1: 'x'})", "TypeError" },
    { "metric('n', 1, {'t%d' % i: 'v' for i in range(9)})", "ValueError" },
    { "metric('n', 1, {'k': 'v' * 129})", "ValueError" },
    { "metric('n', 1, {'k': '\\u00e9' * 65})", "ValueError" }, -- 130 bytes of UTF-8
    { "metric('n', 1, {'k': b'x'})", "TypeError" },
    { "metric('n', 1, {'k': [1]})", "TypeError" },
    { "metric('n', 1, {'k': float('nan')})", "ValueError" },
    { "metric('n', 1, {'k': '\\ud800'})", "UnicodeEncodeError" },
  }

  for _, backend in ipairs(support.backends()) do
    it("refuses a bad name, value or tags with the reason, the cell intact (" .. backend .. ")", function()
      local sb <close> = sandbox.spawn({ backend = backend })
      local before = prom.sample(families(), "isolate_metrics_dropped_total", { reason = "invalid" }).value
      for _, case in ipairs(REFUSED) do
        local e = support.err_of(sb.exec, sb, case[1])
        assert.are.same({ "guest", case[2] }, { e.kind, e.python }, case[1])
        assert.is_truthy(#e.message > 0)
      end
      -- and what fits, right at the bounds, is kept
      sb:exec("metric('x' * 64, 1, {'t%d' % i: 'v' * 128 for i in range(8)})\n"
              .. "metric('n', -2**63, {'k': '\\u00e9' * 64, 'b': False, 'f': 0.5, 'i': 3})")
      for _ in sb:events() do end
      local fams = families()
      assert.are.equal(1, prom.sample(fams, "isolate_guest_" .. string.rep("x", 64), { cell = sb.name }).value)
      assert.are.same({ cell = sb.name, k = string.rep("\u{e9}", 64), b = "false", f = "0.5", i = "3" },
                      prom.sample(fams, "isolate_guest_n", { cell = sb.name }).labels)
      assert.are.equal(-2 ^ 63, prom.sample(fams, "isolate_guest_n", { cell = sb.name }).value)
      -- nothing reached the host to be dropped there
      assert.are.equal(before, prom.sample(fams, "isolate_metrics_dropped_total",
                                           { reason = "invalid" }).value)
    end)
  end
end)

describe("isolate.metrics' rules, which the host applies to whatever a cell sends", function()
  local cases = {
    { "a huge name", { name = string.rep("n", 1 << 20), value = 1 } },
    { "an empty name", { name = "", value = 1 } },
    { "a control character", { name = "a\nb", value = 1 } },
    { "a brace in the name", { name = 'x{cell="y"}', value = 1 } },
    { "a space", { name = "a b", value = 1 } },
    { "a name that is not a string", { name = 7, value = 1 } },
    { "NaN", { name = "n", value = 0 / 0 } },
    { "an infinity", { name = "n", value = math.huge } },
    { "a string value", { name = "n", value = "1" } },
    { "a boolean value", { name = "n", value = true } },
    { "tags that are not a table", { name = "n", value = 1, tags = "x" } },
    { "a tag named cell", { name = "n", value = 1, tags = { cell = "other" } } },
    { "a tag named __x", { name = "n", value = 1, tags = { __name__ = "x" } } },
    { "a tag name with a dash", { name = "n", value = 1, tags = { ["a-b"] = "x" } } },
    { "an integer tag name", { name = "n", value = 1, tags = { [1] = "x" } } },
    { "a huge tag value", { name = "n", value = 1, tags = { k = string.rep("v", 129) } } },
    { "a tag value that is not UTF-8", { name = "n", value = 1, tags = { k = "\255" } } },
    { "a table tag value", { name = "n", value = 1, tags = { k = {} } } },
    { "a NaN tag value", { name = "n", value = 1, tags = { k = 0 / 0 } } },
  }
  local nine = {}
  for i = 1, metrics.TAGS_MAX + 1 do nine["t" .. i] = "v" end
  cases[#cases + 1] = { "too many tags", { name = "n", value = 1, tags = nine } }

  for _, c in ipairs(cases) do
    it("refuses " .. c[1], function()
      assert.is_truthy(metrics.refusal(c[2]))
    end)
  end

  it("accepts what a guest may send", function()
    local eight = {}
    for i = 1, metrics.TAGS_MAX do eight["t" .. i] = "v" end
    assert.is_nil(metrics.refusal({ name = "a.b-c_D9", value = 1.5, tags = eight }))
    assert.is_nil(metrics.refusal({ name = string.rep("n", metrics.NAME_MAX), value = -3,
                                    tags = { k = string.rep("v", 128), b = false, i = 2 } }))
  end)
end)

-- The bounds, in a host of their own: a fresh module, whatever ran before.
describe("series bounds", function()
  if not HOST then
    print("# metrics_spec: bounds skipped, ISOLATE_HOST is not set")
    return
  end

  local function run(script)
    local path = support.write_temp(script)
    local code, out, err = support.run(HOST, path)
    os.remove(path)
    assert.are.equal(0, code, err)
    return prom.parse(out), err
  end

  it("keep at most SERIES_PER_CELL per cell, count the rest and warn once", function()
    local fams, err = run([[
local sb <close> = sandbox.spawn{ name = "flood" }
sb:exec("for i in range(1500):\n    metric('flood', i, {'id': str(i)})")
sb:exec("metric('flood', 1, {'id': 'x'})")  -- still refused, no second warning
io.write(sandbox.metrics())
]])
    assert.are.equal(metrics.SERIES_PER_CELL, #fams.isolate_guest_flood.samples)
    assert.are.equal(501, prom.sample(fams, "isolate_metrics_dropped_total",
                                      { reason = "series" }).value)
    local warnings = 0
    for line in err:gmatch("[^\n]+") do
      if line:match("^luaisolate: warning: cell flood: ") then warnings = warnings + 1 end
    end
    assert.are.equal(1, warnings)
    assert.are.equal(metrics.SERIES_PER_CELL, fams.isolate_metrics_series.samples[1].value)
  end)

  it("make room for live cells by forgetting closed cells' series, oldest first", function()
    local fams = run([[
local m = require "isolate.metrics"
m.SERIES_MAX = 50
for _, name in ipairs({ "old", "newer" }) do
  local sb = sandbox.spawn{ name = name }
  sb:exec("for i in range(20):\n    metric('s', i, {'id': str(i)})")
  sb:close()
end
local live <close> = sandbox.spawn{ name = "live" }
live:exec("for i in range(30):\n    metric('s', i, {'id': str(i)})")
live:exec("for i in range(30, 60):\n    metric('s', i, {'id': str(i)})")
io.write(sandbox.metrics())
]])
    local per = {}
    for _, s in ipairs(fams.isolate_guest_s.samples) do
      per[s.labels.cell] = (per[s.labels.cell] or 0) + 1
    end
    assert.is_nil(per.old)            -- closed first, forgotten first
    assert.are.equal(50, fams.isolate_metrics_series.samples[1].value)
    assert.are.equal(50, (per.newer or 0) + per.live)
    assert.is_true(per.live >= 30)
    assert.is_true(prom.sample(fams, "isolate_metrics_dropped_total",
                               { reason = "series" }).value > 0)
  end)
end)

describe("--metrics-file", function()
  if not HOST then
    print("# metrics_spec: --metrics-file skipped, ISOLATE_HOST is not set")
    return
  end
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    support.sh("mkdir " .. support.quote(dir))
  end)
  after_each(function() support.sh("rm -rf " .. support.quote(dir)) end)

  -- The script reads the file while the cell sleeps past a few intervals.
  -- A handle opened before keeps reading the first file: a rename leaves
  -- it alone, a rewrite in place would change what it reads.
  local SCRIPT = [[
local path = ...
local sb = sandbox.spawn{ name = "job", imports = { "time" } }
local held = io.open(path)
sb:exec("import time\nmetric('progress', 1)\ntime.sleep(0.6)")
local f = io.open(path); local mid = f:read("a"); f:close()
local old = held:read("a"); held:close()
io.write(old:find("isolate_guest_progress", 1, true) and "rewritten\n" or "renamed\n")
io.write((mid:match('isolate_guest_progress{cell="job"} (%%S+)') or "none"), "\n")
sb:exec("metric('progress', 2)")
%s
]]

  local function run(ending, ...)
    local path = dir .. "/job.prom"
    local script = support.write_temp(SCRIPT:format(ending))
    local code, out, err = support.run(HOST, "--metrics-file", path, "--metrics-interval",
                                       "0.1", script, path, ...)
    os.remove(script)
    local text = support.slurp(path)
    return code, out, err, text
  end

  local function leftovers()
    local p = io.popen("ls -A " .. support.quote(dir))
    local names = p:read("a")
    p:close()
    return names
  end

  it("is written at an interval (by rename) and at the end", function()
    local code, out, err, text = run("")
    assert.are.equal(0, code, err)
    assert.are.same({ "renamed", "1" }, { out:match("^(%a+)\n(%S+)\n$") })
    assert.are.equal(2, prom.sample(prom.parse(text), "isolate_guest_progress",
                                    { cell = "job" }).value)
    assert.are.equal("job.prom\n", leftovers()) -- no temporary file left
  end)

  it("is written when the script calls os.exit", function()
    local code, _, err, text = run("os.exit(3)")
    assert.are.equal(3, code, err)
    assert.are.equal(2, prom.sample(prom.parse(text), "isolate_guest_progress",
                                    { cell = "job" }).value)
  end)

  it("is written when the script raises", function()
    local code, _, _, text = run("error('boom')")
    assert.are.equal(1, code)
    assert.are.equal(2, prom.sample(prom.parse(text), "isolate_guest_progress",
                                    { cell = "job" }).value)
  end)

  it("that cannot be written, or a bad interval, is a usage error", function()
    local code = support.run(HOST, "--metrics-file", dir .. "/no/such/dir.prom", "-e", "")
    assert.are.equal(2, code)
    for _, bad in ipairs({ "0", "-1", "nan", "inf", "x" }) do
      code = support.run(HOST, "--metrics-file", dir .. "/m.prom",
                         "--metrics-interval=" .. bad, "-e", "")
      assert.are.equal(2, code, bad)
    end
  end)
end)

