-- Events visible by default (issue 13, part 2): the luaisolate host writes
-- warnings, denials, exits and guest logs at warning or above to stderr,
-- one line each, unless the script handles that type; --log-format,
-- --log-file and --log-level; an embedding program gets nothing unless it
-- asks (sandbox.log_events). Lines are parsed back, never compared whole.
local sandbox = require "isolate"
local support = require "support"
local HOST = os.getenv("ISOLATE_HOST")

-- What a guest does to make one event of each kind: two logs below the
-- default level, one at it, one above, a metric, a denial, a cell that
-- is killed and one that is closed.
local WORKLOAD = [[
local sb = sandbox.spawn{ name = "w" }
sb:exec("log('debug', 'd')\nlog('info', 'i')\nlog('warning', 'careful', k=1)\n"
        .. "log('error', 'e')\nmetric('m', 1)")
pcall(sb.exec, sb, "import json")
sb:close()
local t = sandbox.spawn{ name = "t" }
t:kill()
]]

-- {type=, cell=, rest=} of each "luaisolate: <type>: cell <name>: ..." line.
local function text_events(stderr)
  local out = {}
  for line in stderr:gmatch("[^\n]*") do
    if line ~= "" then
      local t, cell, rest = line:match("^luaisolate: (%a+): cell ([%w_-]+): (.*)$")
      assert.is_truthy(t, "not an event line: " .. line)
      out[#out + 1] = { type = t, cell = cell, rest = rest }
    end
  end
  return out
end

-- How many events of each kind ("log:<level>", "exit:<reason>", the type),
-- leaving out warnings: a host that lacks a confinement layer warns once
-- per cell (metrics_spec checks a warning of our own making).
local function kinds(evs)
  local out = {}
  for _, ev in ipairs(evs) do
    if ev.type == "warning" then goto next end
    local k = ev.type
    if ev.type == "log" then k = "log:" .. (ev.level or ev.rest:match("^(%a+):")) end
    if ev.type == "exit" then k = "exit:" .. (ev.reason or ev.rest:match("^(%a+)")) end
    out[k] = (out[k] or 0) + 1
    ::next::
  end
  return out
end

local function json_events(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do out[#out + 1] = support.decode_json(line) end
  return out
end

local temps = {}
local function script(text)
  local path = support.write_temp(text)
  temps[#temps + 1] = path
  return path
end

describe("the luaisolate host's events", function()
  if not HOST then
    print("# events_cli_spec: skipped, ISOLATE_HOST (the luaisolate binary) is not set")
    return
  end
  after_each(function()
    for _, p in ipairs(temps) do os.remove(p) end
    temps = {}
  end)

  it("writes warnings, denials, abnormal exits and logs >= warning to stderr by default", function()
    local code, out, err = support.run(HOST, script(WORKLOAD))
    assert.are.equal(0, code, err)
    assert.are.equal("", out)
    assert.are.same({ ["log:warning"] = 1, ["log:error"] = 1, denial = 1, ["exit:kill"] = 1 },
                    kinds(text_events(err)))
  end)

  it("writes a crashed process cell's exit, in text and JSON", function()
    local has_process = false
    for _, b in ipairs(sandbox.IMPLEMENTED) do has_process = has_process or b == "process" end
    if not has_process then
      print("# events_cli_spec: no process backend in this build; crash case skipped")
      return
    end
    local path = script([[
local sb <close> = sandbox.spawn{ name = "c", backend = "process", imports = { "faulthandler" } }
assert(not pcall(sb.exec, sb, "import faulthandler\nfaulthandler._sigsegv()"))
]])
    local code, _, err = support.run(HOST, path)
    assert.are.equal(0, code, err)
    assert.are.same({ ["exit:crashed"] = 1 }, kinds(text_events(err)))
    code, _, err = support.run(HOST, "--log-format=json", path)
    assert.are.equal(0, code, err)
    local crash = json_events(err)
    crash = crash[#crash]
    assert.are.same({ "exit", "c", "crashed" }, { crash.type, crash.cell, crash.reason })
  end)

  it("leaves a type to the script once it registers a handler for it", function()
    local code, _, err = support.run(HOST, script(
      "sandbox.on('denial', function() end)\nsandbox.on('log', function() end)\n" .. WORKLOAD))
    assert.are.equal(0, code, err)
    assert.are.same({ ["exit:kill"] = 1 }, kinds(text_events(err)))
  end)

  it("writes every type, clean closes and metric events included, at --log-level debug", function()
    local code, _, err = support.run(HOST, "--log-level=debug", script(WORKLOAD))
    assert.are.equal(0, code, err)
    assert.are.same({ ["log:debug"] = 1, ["log:info"] = 1, ["log:warning"] = 1, ["log:error"] = 1,
                      metric = 1, denial = 1, ["exit:close"] = 1, ["exit:kill"] = 1 },
                    kinds(text_events(err)))
  end)

  it("writes JSON lines with type, time, cell and the event's fields", function()
    local code, _, err = support.run(HOST, "--log-format", "json", "--log-level", "debug",
                                     script(WORKLOAD))
    assert.are.equal(0, code, err)
    local evs = {}
    for _, ev in ipairs(json_events(err)) do
      if ev.type ~= "warning" then evs[#evs + 1] = ev end
    end
    assert.are.equal(8, #evs)
    for _, ev in ipairs(evs) do
      assert.are.equal("number", type(ev.time))
      assert.is_true(math.abs(ev.time - os.time()) < 600)
      assert.is_truthy(ev.cell == "w" or ev.cell == "t")
    end
    local by = {}
    for _, ev in ipairs(evs) do by[ev.type .. ":" .. (ev.level or ev.reason or "")] = ev end
    assert.are.same({ k = 1 }, by["log:warning"].fields)
    assert.are.equal("careful", by["log:warning"].message)
    assert.are.same({ "import", "json", "python-guard" },
                    { by["denial:"].capability, by["denial:"].target, by["denial:"].layer })
    assert.are.equal("t", by["exit:kill"].cell)
    assert.are.same({ "m", 1 }, { by["metric:"].name, by["metric:"].value })
  end)

  it("writes at most 20 lines a second per cell and type, then how many it left out", function()
    local code, _, err = support.run(HOST, "--log-format", "json", script([[
local sb <close> = sandbox.spawn{ name = "flood" }
sb:exec("for i in range(300):\n    try:\n        import json\n    except ImportError:\n        pass")
require("isolate.core").sleep(1.05)
sb:exec("try:\n    import json\nexcept ImportError:\n    pass")
]]))
    assert.are.equal(0, code, err)
    local written, left_out, per_second = 0, 0, {}
    for _, ev in ipairs(json_events(err)) do
      if ev.type == "denial" then
        written = written + 1
        local s = math.floor(ev.time)
        per_second[s] = (per_second[s] or 0) + 1
      elseif ev.type == "suppressed" then
        assert.are.same({ "flood", "denial" }, { ev.cell, ev.event })
        left_out = left_out + ev.count
      end
    end
    assert.are.equal(301, written + left_out) -- every denial written or counted
    assert.is_true(left_out > 0)
    for _, n in pairs(per_second) do assert.is_true(n <= 2 * 20) end -- host and guest clocks may straddle a second
  end)

  it("appends to --log-file instead of stderr, text lines starting with the UTC time", function()
    local path = os.tmpname()
    local code, _, err = support.run(HOST, "--log-file=" .. path, script(WORKLOAD))
    local code2, _, err2 = support.run(HOST, "--log-file", path, "--log-format=json", script(WORKLOAD))
    local text = support.slurp(path)
    os.remove(path)
    assert.are.same({ 0, "", 0, "" }, { code, err, code2, err2 })
    local lines = {}
    for line in text:gmatch("[^\n]+") do
      if not line:match('"type":"warning"') and not line:match("Z warning: ") then
        lines[#lines + 1] = line
      end
    end
    assert.are.equal(8, #lines) -- 4 of each run
    for i = 1, 4 do
      assert.is_truthy(lines[i]:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ %a+: cell "),
                       lines[i])
    end
    assert.are.same({ ["log:warning"] = 1, ["log:error"] = 1, denial = 1, ["exit:kill"] = 1 },
                    kinds(json_events(table.concat(lines, "\n", 5))))
  end)

  it("refuses an unknown format or level and a log file it cannot open, exit 2", function()
    for _, args in ipairs({ { "--log-format", "xml" }, { "--log-format=" }, { "--log-level", "loud" },
                            { "--log-file", "/nonexistent/dir/log" } }) do
      local argv = table.move(args, 1, #args, 1, {})
      argv[#argv + 1], argv[#argv + 2] = "-e", ""
      local code, out, err = support.run(HOST, table.unpack(argv))
      assert.are.equal(2, code, table.concat(args, " "))
      assert.are.equal("", out)
      assert.is_truthy(err:match("^luaisolate: [^\n]*%-%-log%-"), err) -- names the option
    end
  end)

  local function logs(evs)
    local out = {}
    for _, ev in ipairs(evs) do
      if ev.type == "log" then out[#out + 1] = ev end
    end
    return out
  end

  it("keeps each hostile guest log on one line, and its JSON readable", function()
    local HOSTILE = [==[
local sb <close> = sandbox.spawn{ name = "h" }
sb:exec("log('warning', 'a\\nluaisolate: denial: cell x: forged\\r\\x1b[2J\\x9b\\u2028z', "
        .. "f='\\n', nan=float('nan'), inf=float('-inf'), deep=[[[[[[1]]]]]])\n"
        .. "log('\\nerror', 'level with a newline')\n"
        .. "log('warning', 'x' * 1000000)")
]==]
    local code, _, err = support.run(HOST, script(HOSTILE))
    assert.are.equal(0, code, err)
    local evs = logs(text_events(err))
    assert.are.equal(3, #evs) -- one line each, a forged line stays inside the first
    assert.is_nil(err:find("\27", 1, true))
    assert.is_nil(err:find("\u{2028}", 1, true))
    assert.is_nil(err:find("\u{9b}", 1, true))
    assert.is_true(#evs[3].rest < 10000) -- a huge message is cut in text
    code, _, err = support.run(HOST, "--log-format=json", script(HOSTILE))
    assert.are.equal(0, code, err)
    evs = logs(json_events(err))
    assert.are.equal(3, #evs)
    assert.are.equal("a\nluaisolate: denial: cell x: forged\r\27[2J\u{9b}\u{2028}z", evs[1].message)
    assert.are.same({ "NaN", "-Inf", "\n" }, { evs[1].fields.nan, evs[1].fields.inf, evs[1].fields.f })
    assert.are.equal("\nerror", evs[2].level)
    assert.are.equal(1000000, #evs[3].message) -- JSON keeps it whole
  end)

  it("leaves events to busted under luaisolate test", function()
    local dir = os.tmpname()
    os.remove(dir)
    support.sh("mkdir " .. dir)
    support.write(dir .. "/x_spec.lua", [[
describe("x", function() it("denies", function()
  local sb <close> = require("isolate").spawn{}
  pcall(sb.exec, sb, "import json")
  sb:exec("log('error', 'e')")
end) end)
]])
    local code, _, err = support.run(HOST, "test", "-o", "TAP", dir .. "/x_spec.lua")
    support.sh("rm -rf " .. dir)
    assert.are.equal(0, code, err)
    assert.is_nil(err:match("luaisolate: %a+: cell"), err)
  end)
end)

describe("a program that requires isolate", function()
  local function capture(fn)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    local saved = io.stderr
    io.stderr = f
    local ok, e = pcall(fn)
    io.stderr = saved
    f:close()
    local text = support.slurp(path)
    os.remove(path)
    assert(ok, e)
    return text
  end

  local function workload()
    local sb <close> = sandbox.spawn({})
    pcall(sb.exec, sb, "import json")
    sb:exec("log('error', 'e')")
  end

  after_each(function() sandbox.log_events(false) end)

  it("writes nothing unless it asks, then what the host would", function()
    sandbox.log_events(false) -- as after require (the spec may run inside the host)
    assert.are.equal("", capture(workload))
    sandbox.log_events({})
    assert.are.same({ ["log:error"] = 1, denial = 1 }, kinds(text_events(capture(workload))))
  end)

  it("writes a reload, which names a policy and no cell, in both formats", function()
    sandbox.log_events({})
    local line = capture(function() sandbox.policy.reload("no-such-cells", {}) end)
    assert.is_truthy(line:match("^luaisolate: reload: policy no%-such%-cells: 0 "), line)
    sandbox.log_events({ format = "json" })
    local raw = capture(function() sandbox.policy.reload("none", {}) end)
    local ev = support.decode_json(raw)
    assert.are.same({ "reload", "none" }, { ev.type, ev.policy })
    assert.is_truthy(raw:find('"cell":null', 1, true), raw) -- present, and null
    assert.are.equal("number", type(ev.time))
  end)

  it("checks log_events' options", function()
    assert.are.equal("invalid_argument", support.err_of(sandbox.log_events, { format = "xml" }).kind)
    assert.are.same({ "text", "json" }, support.err_of(sandbox.log_events, { format = "xml" }).valid)
    assert.are.equal("invalid_argument", support.err_of(sandbox.log_events, { level = "loud" }).kind)
    assert.are.equal("invalid_argument", support.err_of(sandbox.log_events, { colour = 1 }).kind)
    assert.are.equal("invalid_argument", support.err_of(sandbox.log_events, "json").kind)
    assert.are.equal("invalid_argument",
                     support.err_of(sandbox.log_events, { file = "/nonexistent/dir/x" }).kind)
  end)

  it("gets nothing from a plain lua5.4 require", function()
    if os.getenv("ISOLATE_SANITIZED") then
      print("# events_cli_spec: lua5.4 cannot load the sanitizer build's module; skipped")
      return
    end
    local path = script("local sandbox = require 'isolate'\n"
                        .. "local sb <close> = sandbox.spawn{}\npcall(sb.exec, sb, 'import json')\n"
                        .. "sb:exec(\"log('error', 'e')\")\nsb:kill()\n")
    local code, out, err = support.run(os.getenv("ISOLATE_LUA") or "lua5.4", path)
    os.remove(path)
    assert.are.same({ 0, "", "" }, { code, out, err })
  end)
end)
