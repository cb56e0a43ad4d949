-- Strings that cross into C keep their whole length: a Lua string with a
-- NUL byte must never reach C as the shorter string before the NUL (issue
-- 10, point 4). One case per place a Lua string becomes a C string.
local sandbox = require "isolate"
local core = require "isolate.core"
local policy = require "isolate.policy"
local support = require "support"
local err_of = support.err_of

local function kind_of(fn, ...) return err_of(fn, ...).kind end

-- The problem paths of a policy error (the compiler reports, not raises).
local function problem_paths(t)
  local e = err_of(policy.compile, t)
  assert.are.equal("policy", e.kind)
  local paths = {}
  for i, p in ipairs(e.problems) do paths[i] = p.path end
  return paths
end

describe("cell names", function()
  for _, backend in ipairs(support.backends()) do
    it("are refused over their full length, NUL included (" .. backend .. ")", function()
      for _, name in ipairs({ "x\0y", "x\0", "\0", "\0x", "ok\0../../etc" }) do
        assert.are.equal("invalid_argument",
                         kind_of(sandbox.spawn, { name = name, backend = backend }))
        assert.is_nil(sandbox.list()[name:match("^[^%z]*")])
      end
      assert.is_false(core.name_valid("x\0y"))
      -- the valid prefix alone is still a good name: only the NUL is refused
      local sb <close> = sandbox.spawn({ name = "x", backend = backend })
      assert.are.equal("x", sb.name)
    end)
  end

  it("are refused by core.spawn itself, below the Lua checks", function()
    local e = err_of(core.spawn, { name = "x\0y", backend = "subinterpreter" }, print)
    assert.are.equal("invalid_argument", e.kind)
    e = err_of(core.spawn, { name = "x", backend = "process\0junk" }, print)
    assert.are.equal("invalid_argument", e.kind)
  end)
end)

describe("policy strings", function()
  it("an fs pattern with a NUL is a policy problem at its path", function()
    assert.are.same({ "fs[1].read" }, problem_paths({ fs = { { read = "/tmp\0/etc/**" } } }))
  end)

  it("a net rule with a NUL is a policy problem at its path", function()
    assert.are.same({ "net[1].connect" },
                    problem_paths({ net = { { connect = "127.0.0.1:80\0:443" } } }))
  end)

  it("a syscall name with a NUL is unknown", function()
    assert.is_false(core.syscall_known("ptrace\0x"))
    assert.is_true(core.syscall_known("ptrace"))
    local paths = problem_paths({ syscalls = { deny = { "ptrace\0x" } } })
    assert.are.equal(1, #paths)
    assert.is_truthy(paths[1]:find("^syscalls%.deny"))
  end)

  it("import and capability names with a NUL are policy problems", function()
    local paths = problem_paths({ imports = { "math\0os" }, capabilities = { "kv\0x" } })
    table.sort(paths)
    assert.are.equal(2, #paths)
    assert.is_truthy(paths[1]:find("^capabilities"))
    assert.is_truthy(paths[2]:find("^imports"))
  end)

  it("extends with a NUL is a policy problem", function()
    assert.are.same({ "extends" }, problem_paths({ extends = "base\0x" }))
  end)

  it("a policy file path or name with a NUL is refused, never opened short", function()
    local file = os.tmpname() .. ".lua"
    local f = assert(io.open(file, "w"))
    f:write("return { version = 1 }")
    f:close()
    assert.is_true(policy.is_policy(policy.load(file)))
    assert.are.equal("invalid_argument", kind_of(policy.load, file .. "\0junk"))
    assert.are.equal("invalid_argument", kind_of(policy.load, "stdlib.readonly\0x"))
    assert.are.equal("invalid_argument",
                     kind_of(sandbox.spawn, { policy = file .. "\0junk" }))
    os.remove(file)
  end)

  it("core.normalize_path and plan checks refuse a path with a NUL", function()
    assert.are.equal("invalid_argument", kind_of(core.normalize_path, "/tmp\0/etc"))
    local p = policy.compile({ fs = { { read = "/tmp/**" } } })
    assert.are.equal("invalid_argument", kind_of(p.check, p, "read", "/tmp/x\0/../../etc/passwd"))
    assert.are.equal("invalid_argument", kind_of(p.check, p, "connect", "127.0.0.1:80\0x"))
  end)

  it("the plan builder refuses rule targets with a NUL", function()
    assert.are.equal("invalid_argument",
                     kind_of(core.plan, { fs = { { access = "read", pattern = "/tmp\0/etc" } } }))
    assert.are.equal("invalid_argument",
                     kind_of(core.plan, { net = { { action = "connect", spec = "127.0.0.1:1\0" } } }))
  end)
end)

describe("other strings into C", function()
  it("core.spawn lists (imports, capabilities, syscalls) refuse a NUL", function()
    for _, key in ipairs({ "imports", "capabilities", "syscalls_deny" }) do
      local cfg = { name = "nul-list", backend = "subinterpreter", [key] = { "a\0b" } }
      assert.are.equal("invalid_argument", kind_of(core.spawn, cfg, print), key)
    end
  end)

  it("a call target with a NUL is refused", function()
    local sb <close> = sandbox.spawn({ imports = { "math" } })
    assert.are.equal("invalid_argument", kind_of(sb.call, sb, "math.sqrt\0x", 4))
    assert.are.equal(2.0, sb:call("math.sqrt", 4))
  end)

  it("backend and mode names with a NUL are refused", function()
    assert.are.equal("invalid_argument", kind_of(sandbox.configure, { mode = "dev\0x" }))
    assert.are.equal("invalid_argument", kind_of(core.backend_check, "process\0x"))
    assert.are.equal("invalid_argument",
                     kind_of(sandbox.spawn, { backend = "process\0x" }))
  end)

  for _, backend in ipairs(support.backends()) do
    it("metric tags and log messages from the guest keep their NUL bytes (" .. backend .. ")", function()
      local sb <close> = sandbox.spawn({ backend = backend })
      sb:exec("metric('a', 1, {'k': 'a\\0b'})\nlog('info', 'x\\0y')\npost('p\\0q')")
      assert.are.equal("p\0q", sb:recv(1))
      local names = {}
      for ev in sb:events() do names[ev.type] = ev.tags and ev.tags.k or ev.message end
      assert.are.equal("a\0b", names.metric)
      assert.are.equal("x\0y", names.log)
      -- a metric name is never cut at a NUL: it is refused whole
      assert.are.equal("ValueError", err_of(sb.exec, sb, "metric('a\\0b', 1)").python)
    end)

    it("a capability name with a NUL from the guest is refused (" .. backend .. ")", function()
      sandbox.capability("kv", function() return "granted" end)
      local sb <close> = sandbox.spawn({ backend = backend, capabilities = { "kv" } })
      sb:exec("post(request('kv', 'get'))")
      assert.are.equal("granted", sb:recv(1))
      local e = err_of(sb.exec, sb, "request('kv\\0x', 'get')")
      assert.are.equal("guest", e.kind)
      assert.are.equal("ValueError", e.python)
    end)
  end
end)
