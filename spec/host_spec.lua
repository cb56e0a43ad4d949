-- The luaisolate executable: run, version, --help, exit statuses.
-- Needs ISOLATE_HOST (path of the luaisolate binary); ctest sets it.
local support = require "support"
local HOST = os.getenv("ISOLATE_HOST")
local SOURCE_DIR = os.getenv("ISOLATE_SOURCE_DIR") or "."


local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function host(...) return support.run(HOST, ...) end

local function has(haystack, needle)
  return haystack:find(needle, 1, true) ~= nil
end

if not HOST then
  print("# host_spec: skipped, ISOLATE_HOST (path of the luaisolate binary) is not set")
  return
end

describe("luaisolate", function()
  local scripts = {}

  -- A temporary script holding text; removed after each test.
  local function script(text)
    local path = os.tmpname()
    write_file(path, text)
    scripts[#scripts + 1] = path
    return path
  end

  after_each(function()
    for _, p in ipairs(scripts) do os.remove(p) end
    scripts = {}
  end)

  local ARGS = [[
print(arg[0])
print(#arg, arg[1], arg[2])
print(select("#", ...), ...)
]]

  describe("run --log-format", function()
    it("writes guest logs as JSON lines on stderr with json", function()
      local path = script([[
local sb <close> = sandbox.spawn{}
sb:exec("log('warning', 'disk low', pct=93)")
print("ok", ...)
]])
      local code, out, err = host("run", "--log-format", "json", path, "x")
      assert.are.equal(0, code, err)
      assert.are.equal("ok\tx\n", out)
      -- every line is a JSON object; the log's is the one of type log (a
      -- host that lacks a confinement layer also writes a warning)
      local line
      for l in err:gmatch("[^\n]+") do
        assert.is_truthy(l:match("^%b{}$"), err)
        if has(l, '"type":"log"') then line = l end
      end
      assert.is_truthy(line, err)
      assert.is_truthy(has(line, '"type":"log"'))
      assert.is_truthy(has(line, '"message":"disk low"'))
      assert.is_truthy(has(line, '"fields":{"pct":93}'))
      code, out, err = host("run", "--log-format", "text", path)
      assert.are.equal(0, code)
      -- text: one line, its type, cell and level first (events_cli_spec has more)
      assert.is_truthy(("\n" .. err):match("\nluaisolate: log: cell cell%-1: warning: [^\n]*\n"), err)
    end)

    it("refuses an unknown format with usage and exit 2", function()
      local code, _, err = host("run", "--log-format", "xml", script("print(1)"))
      assert.are.equal(2, code)
      assert.is_truthy(has(err, "usage"))
    end)
  end)

  describe("run FILE args", function()
    it("sets arg as lua does: arg[0] = script, arg[1..n]", function()
      local path = script(ARGS)
      local code, out, err = host("run", path, "a", "b c")
      assert.are.equal(0, code, err)
      assert.are.equal(path .. "\n2\ta\tb c\n2\ta\tb c\n", out)
      assert.are.equal("", err)
    end)

    it("passes no arguments when none are given", function()
      local code, out = host("run", script("print(#arg, select('#', ...))"))
      assert.are.equal(0, code)
      assert.are.equal("0\t0\n", out)
    end)

    it("provides the global sandbox, the isolate module", function()
      local code, out, err = host("run", script([[
print(type(sandbox), sandbox == require("isolate"))
local sb <close> = sandbox.spawn({})
print(sb:call("len", "abcd"))
]]))
      assert.are.equal(0, code, err)
      assert.are.equal("table\ttrue\n4\n", out)
    end)

    it("refuses a missing script with exit 1", function()
      local path = os.tmpname()
      os.remove(path)
      local code, out, err = host("run", path)
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.is_truthy(err:match("^luaisolate: "))
    end)

    it("without a script exits 2 and prints usage on stderr", function()
      local code, out, err = host("run")
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.is_truthy(err:lower():find("usage", 1, true))
    end)
  end)

  describe("FILE args (no subcommand)", function()
    it("runs the script with arg set the same way", function()
      local path = script(ARGS)
      local code, out, err = host(path, "a", "b c")
      assert.are.equal(0, code, err)
      assert.are.equal(path .. "\n2\ta\tb c\n2\ta\tb c\n", out)
    end)

    it("provides the global sandbox", function()
      local code, out = host(script("print(sandbox == require('isolate'))"))
      assert.are.equal(0, code)
      assert.are.equal("true\n", out)
    end)
  end)

  describe("a failing script", function()
    it("exits 1 with luaisolate: <error> and a traceback on stderr", function()
      local code, out, err = host("run", script("local function f() error('marker-42') end\nf()\n"))
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.is_truthy(err:match("^luaisolate: "))
      assert.is_truthy(has(err, "marker-42"))
      assert.is_truthy(has(err, "stack traceback"))
    end)

    it("prints an isolate.Error as isolate: <kind>: <message>", function()
      local code, _, err = host("run", script("sandbox.spawn({ backend = 'nope' })\n"))
      assert.are.equal(1, code)
      assert.is_truthy(err:match("^luaisolate: isolate: invalid_argument: "))
      assert.is_truthy(has(err, "stack traceback"))
    end)

    it("exits 1 for an error object that is not a string", function()
      local code, _, err = host("run", script("error({})\n"))
      assert.are.equal(1, code)
      assert.is_truthy(err:match("^luaisolate: "))
    end)

    it("exits 1 for a syntax error", function()
      local code, out, err = host("run", script("this is not lua\n"))
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.is_truthy(err:match("^luaisolate: "))
    end)

    it("keeps what it printed before the error", function()
      local code, out = host("run", script("print('before')\nerror('x')\n"))
      assert.are.equal(1, code)
      assert.are.equal("before\n", out)
    end)
  end)

  describe("cells a script leaves open", function()
    it("are closed at exit after a normal end: exit 0", function()
      local code, out, err = host("run", script("local sb = sandbox.spawn({})\nsb:exec('post(1)')\nprint('done')\n"))
      assert.are.equal(0, code, err)
      assert.are.equal("done\n", out)
    end)

    it("are closed at exit after an error: exit 1", function()
      local code, _, err = host("run", script("local sb = sandbox.spawn({})\nsb:exec('x = 1')\nerror('marker-7')\n"))
      assert.are.equal(1, code)
      assert.is_truthy(err:match("^luaisolate: "))
      assert.is_truthy(has(err, "marker-7"))
    end)
  end)

  it("exits with the status a script passes to os.exit", function()
    local code = host("run", script("os.exit(3)\n"))
    assert.are.equal(3, code)
  end)

  describe("version", function()
    it("exits 0 and prints luaisolate, Lua, CPython versions and the cell mode", function()
      local code, out, err = host("version")
      assert.are.equal(0, code, err)
      assert.is_truthy(has(out, "luaisolate " .. require("isolate")._VERSION))
      assert.is_truthy(has(out, "Lua 5.4"))
      assert.is_truthy(has(out, "CPython 3."))
      assert.is_truthy(has(out, "own GIL") or has(out, "shared GIL"))
      assert.are.equal("", err)
    end)

    it("reports the cell mode the module reports", function()
      local _, out = host("version")
      assert.is_truthy(has(out, require("isolate").info().cell_mode))
    end)
  end)

  describe("--help", function()
    it("exits 0 and prints usage on stdout", function()
      local code, out, err = host("--help")
      assert.are.equal(0, code)
      assert.is_truthy(out:lower():find("usage", 1, true))
      assert.are.equal("", err)
    end)
  end)

  describe("bad command lines", function()
    it("an unknown subcommand exits 2 and prints usage on stderr", function()
      local code, out, err = host("frobnicate")
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.is_truthy(err:lower():find("usage", 1, true))
    end)

    it("no arguments exits 2 and prints usage on stderr", function()
      local code, out, err = host()
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.is_truthy(err:lower():find("usage", 1, true))
    end)

    it("a missing script without run is an unknown subcommand: exit 2", function()
      local path = os.tmpname()
      os.remove(path)
      local code, out, err = host(path, "a")
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.is_truthy(err:lower():find("usage", 1, true))
    end)
  end)

  describe("examples/quickstart.lua", function()
    it("prints sqrt(2)", function()
      local path = SOURCE_DIR .. "/examples/quickstart.lua"
      local f = io.open(path, "r")
      if not f then
        pending("examples/quickstart.lua does not exist yet")
        return
      end
      f:close()
      local code, out, err = host(path)
      assert.are.equal(0, code, err)
      assert.are.equal("1.4142135623731\n", out)
    end)
  end)
end)
