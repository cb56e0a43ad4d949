-- The luaisolate command line as lua5.4 users expect it (-e, -l, -v, -,
-- --opt=value, --help everywhere, exit statuses 0/1/2, syntax errors as
-- lua5.4 prints them), and how an uncaught guest exception is reported:
-- its Python type, the guest traceback, then the Lua traceback.
-- lua5.4 itself is the oracle where the two overlap. Needs ISOLATE_HOST.
local support = require "support"
local HOST = os.getenv("ISOLATE_HOST")
local LUA = os.getenv("ISOLATE_LUA") or "lua5.4"

local function has(haystack, needle)
  return haystack:find(needle, 1, true) ~= nil
end

if not HOST then
  print("# cli_spec: skipped, ISOLATE_HOST (path of the luaisolate binary) is not set")
  return
end

local function host(...) return support.run(HOST, ...) end

-- code, stdout, stderr of program with args, stdin from the text `input`.
local function run_with_stdin(program, input, ...)
  local path = support.write_temp(input)
  local cmd = { support.quote(program) }
  for _, a in ipairs({ ... }) do cmd[#cmd + 1] = support.quote(a) end
  local out, err = os.tmpname(), os.tmpname()
  local _, how, code = os.execute(table.concat(cmd, " ") .. " <" .. path
                                  .. " >" .. out .. " 2>" .. err)
  assert.are.equal("exit", how)
  local stdout, stderr = support.slurp(out), support.slurp(err)
  os.remove(out); os.remove(err); os.remove(path)
  return code, stdout, stderr
end

-- What lua5.4 prints, with its program name (its argv[0]) as luaisolate's.
local function as_host(s)
  return (s:gsub(LUA:gsub("%p", "%%%0"), "luaisolate"))
end

local temps = {}
local function script(text)
  local path = support.write_temp(text)
  temps[#temps + 1] = path
  return path
end

describe("luaisolate, where it overlaps lua5.4", function()
  after_each(function()
    for _, p in ipairs(temps) do os.remove(p) end
    temps = {}
  end)

  -- prints the whole arg table, negative indices too, and the varargs
  local SHOW_ARG = [[
local lo = 0
while arg[lo - 1] ~= nil do lo = lo - 1 end
for i = lo + 1, #arg do io.write(i, "=", arg[i], " ") end
print("|", select("#", ...), ...)
]]

  it("runs -e statements and -l libraries in command-line order", function()
    local code, out, err = host("-e", "x = 40", "-l", "cjson", "-e", "print(x + 2, type(cjson))")
    assert.are.equal(0, code, err)
    assert.are.equal("42\ttable\n", out)
    code, out = host("-ex=1", "-lcjson", "-eprint(x, type(cjson.encode))")
    assert.are.equal(0, code)
    assert.are.equal("1\tfunction\n", out)
  end)

  it("has sandbox in -e statements", function()
    local code, out, err = host("-e", "print(sandbox == require('isolate'))")
    assert.are.equal(0, code, err)
    assert.are.equal("true\n", out)
  end)

  it("reads the script from standard input for -", function()
    local code, out, err = run_with_stdin(HOST, "print('in', ...)", "-", "a", "b")
    assert.are.equal(0, code, err)
    assert.are.equal("in\ta\tb\n", out)
  end)

  it("sets arg as lua5.4 does, for a file, for - and for -e", function()
    local path = script(SHOW_ARG)
    for _, argv in ipairs({ { path, "a", "-e", "--mode=x" }, { "-e", "y=1", path, "b" },
                            { "--", path, "-v" }, { "-l", "cjson", path } }) do
      local _, want = support.run(LUA, table.unpack(argv))
      local code, out, err = host(table.unpack(argv))
      assert.are.equal(0, code, err)
      assert.are.equal(as_host(want), out)
    end
    local _, want = run_with_stdin(LUA, SHOW_ARG, "-e", "z=1", "-", "x")
    local code, out = run_with_stdin(HOST, SHOW_ARG, "-e", "z=1", "-", "x")
    assert.are.equal(0, code)
    assert.are.equal(as_host(want), out)
  end)

  it("treats options after the script as the script's arguments", function()
    local path = script("print(...)")
    local code, out = host(path, "--mode", "bogus", "-e", "error()", "--help")
    assert.are.equal(0, code)
    assert.are.equal("--mode\tbogus\t-e\terror()\t--help\n", out)
  end)

  it("prints the versions for -v, then runs what it was given", function()
    local code, out, err = host("-v")
    assert.are.equal(0, code, err)
    assert.is_truthy(out:match("^luaisolate [^\n]+\nLua 5%.4"), out)
    code, out = host("-v", "-e", "print('after')")
    assert.are.equal(0, code)
    assert.is_truthy(out:match("\nafter\n$"), out)
  end)

  it("prints a syntax error as lua5.4 does, with no traceback", function()
    local path = script("local x = 1\nthis is not lua\n")
    local _, _, want = support.run(LUA, path)
    local code, out, err = host(path)
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.are.equal(as_host(want), err)
    assert.is_truthy(has(err, path .. ":2:"))
    assert.is_falsy(has(err, "traceback"))
    _, _, want = support.run(LUA, "-e", "x x")
    code, _, err = host("-e", "x x")
    assert.are.equal(1, code)
    assert.are.equal(as_host(want), err)
  end)

  it("stops at the first failing -e, as lua5.4 does", function()
    local code, out, err = host("-e", "print(1)", "-e", "error('stop')", "-e", "print(2)")
    assert.are.equal(1, code)
    assert.are.equal("1\n", out)
    assert.is_truthy(has(err, "stack traceback"))
    assert.are.equal(3, (host("-e", "os.exit(3)")))
    assert.are.equal(1, (host("-l", "no.such.module.anywhere")))
  end)

  it("exits 1 with the Lua traceback ending in the main chunk, as lua5.4", function()
    local path = script("local function f() error('marker') end\nf()\n")
    local _, _, want = support.run(LUA, path)
    local code, _, err = host(path)
    assert.are.equal(1, code)
    assert.are.equal(as_host(want), err)
  end)
end)

describe("luaisolate options and help", function()
  it("gives every command --help (and -h) on stdout, exit 0", function()
    for _, argv in ipairs({ { "--help" }, { "-h" }, { "help" }, { "run", "--help" },
                            { "check", "--help" }, { "check", "-h" }, { "doctor", "--help" },
                            { "version", "--help" }, { "run", "--mode=dev", "-h" } }) do
      local code, out, err = host(table.unpack(argv))
      assert.are.equal(0, code, table.concat(argv, " "))
      assert.is_truthy(out:match("^usage: luaisolate"), out)
      assert.are.equal("", err)
    end
  end)

  it("takes --opt=value and --opt value alike", function()
    local show = "print(sandbox.info().mode)"
    for _, argv in ipairs({ { "--mode=compat", "-e", show }, { "--mode", "compat", "-e", show },
                            { "run", "--mode=compat", "-e", show } }) do
      local code, out, err = host(table.unpack(argv))
      assert.are.equal(0, code, err)
      assert.are.equal("compat\n", out)
    end
    for _, argv in ipairs({ { "check", "--backend=process", "compute-only" },
                            { "check", "--backend", "process", "compute-only" },
                            { "doctor", "--mode=dev", "--clean" } }) do
      assert.are.equal(0, (host(table.unpack(argv))), table.concat(argv, " "))
    end
  end)

  -- exit 2, nothing on stdout, the reason naming what was wrong, the usage
  -- after it, and never a traceback
  local function usage_error(needle, ...)
    local code, out, err = host(...)
    assert.are.equal(2, code, err)
    assert.are.equal("", out)
    assert.is_truthy(has(err, needle), err)
    assert.is_truthy(has(err, "usage: luaisolate"), err)
    assert.is_falsy(has(err, "traceback"), err)
  end

  it("refuses a bad value with the reason and exit 2", function()
    local path = os.tmpname()
    usage_error("--mode", "run", "--mode", "bogus", path)
    usage_error("--mode", "--mode=bogus", path)
    usage_error("--log-format", "run", "--log-format", "xml", path)
    usage_error("--log-format", "--log-format=xml", path)
    usage_error("--backend", "check", "--backend=vm", "compute-only")
    usage_error("--mode", "doctor", "--mode=paranoid")
    os.remove(path)
  end)

  it("refuses unknown options and missing values with exit 2", function()
    usage_error("--json", "version", "--json")
    usage_error("extra", "version", "extra")
    usage_error("-i", "-i")
    usage_error("-e", "-e")
    usage_error("--mode", "run", "--mode")
    usage_error("--frobnicate", "check", "--frobnicate", "compute-only")
    usage_error("frobnicate", "frobnicate")
  end)

  it("writes guest logs as JSON with --log-format=json", function()
    local path = support.write_temp("local sb <close> = sandbox.spawn{}\n"
                                    .. "sb:exec(\"log('warning', 'w', path='/a/b')\")\n")
    local code, _, err = host("--log-format=json", path)
    os.remove(path)
    assert.are.equal(0, code, err)
    local ev = support.decode_json(err)
    assert.are.same({ "log", "w", "/a/b" }, { ev.type, ev.message, ev.fields.path })
  end)
end)

describe("an uncaught guest exception", function()
  local RAISE = [[
local sb <close> = sandbox.spawn{ backend = %q }
sb:exec("def inner():\n    raise KeyError('marker-key')\n\ndef outer():\n    inner()\n")
sb:call("outer")
]]

  for _, backend in ipairs(support.backends()) do
    it("shows its type, the guest traceback, then the Lua one: " .. backend, function()
      local path = support.write_temp(RAISE:format(backend))
      local code, out, err = host(path)
      os.remove(path)
      assert.are.equal(1, code)
      assert.are.equal("", out)
      local first = err:match("^[^\n]*")
      assert.is_truthy(first:match("^luaisolate: isolate: guest: KeyError: "), first)
      assert.is_truthy(has(first, "marker-key"))
      local guest = err:find("Traceback (most recent call last):", 1, true)
      local lua_tb = err:find("\nstack traceback:\n", 1, true)
      assert.is_truthy(guest, err)
      assert.is_truthy(lua_tb, err)
      assert.is_true(guest < lua_tb)
      -- the guest frames, innermost last, between the two
      local frames = err:sub(guest, lua_tb)
      local outer = frames:find("line 5, in outer", 1, true)
      local inner = frames:find("line 2, in inner", 1, true)
      assert.is_truthy(outer and inner and outer < inner, frames)
      assert.is_truthy(err:find(path:gsub("%p", "%%%0") .. ":3: in main chunk"), err)
    end)
  end

  it("names its Python type in tostring(err)", function()
    local sandbox = require "isolate"
    local sb <close> = sandbox.spawn({})
    local ok, e = pcall(sb.exec, sb, "raise ValueError('v')")
    assert.is_false(ok)
    assert.are.equal("guest", e.kind)
    assert.are.equal("ValueError", e.python)
    assert.is_truthy(tostring(e):match("^isolate: guest: ValueError: "), tostring(e))
  end)

  it("is not confused with errors that have no guest traceback", function()
    local code, _, err = host("-e", "sandbox.spawn{ backend = 'nope' }")
    assert.are.equal(1, code)
    assert.is_truthy(err:match("^luaisolate: isolate: invalid_argument: "), err)
    assert.is_falsy(has(err, "Traceback (most recent call last)"))
    assert.is_truthy(has(err, "stack traceback"))
  end)
end)

describe("luaisolate test", function()
  -- The TAP lines of a busted run: how many passed, how many failed.
  local function tally(stdout)
    local ok, failed = 0, 0
    for line in stdout:gmatch("[^\n]+") do
      if line:match("^ok %d") then ok = ok + 1 end
      if line:match("^not ok %d") then failed = failed + 1 end
    end
    return ok, failed
  end

  it("runs the example spec inside the host, every test passing", function()
    local code, stdout = host("test", "-o", "TAP", "examples/workload_spec.lua")
    assert.are.equal(0, code)
    assert.are.same({ 4, 0 }, { tally(stdout) })
  end)

  it("exits non-zero when a spec fails, and its fixture cells are closed", function()
    local out = os.tmpname()
    local code, stdout = support.run("env", "ISOLATE_TESTING_OUT=" .. out, HOST, "test", "-o", "TAP",
                                     "spec/testing/cleanup_fixture.lua")
    assert.are_not.equal(0, code)
    assert.are.same({ 1, 1 }, { tally(stdout) })
    assert.are.equal("closed", support.slurp(out))
    os.remove(out)
  end)
end)
