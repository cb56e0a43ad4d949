-- isolate.testing: fixtures, testing.run, the capability spy and the
-- assertions, passing and failing (a failed assertion's message is its
-- feature: it must show what the snippet did).
local sandbox = require "isolate"
local testing = require "isolate.testing"
local support = require "support"

-- The message of the assertion fn raises.
local function failure_of(fn)
  local ok, msg = pcall(fn)
  assert.is_false(ok, "the assertion should have failed")
  return tostring(msg)
end

for _, backend in ipairs(support.backends()) do
  describe("isolate.testing on " .. backend .. " cells", function()
    testing.fixtures()
    local function cell(opts)
      opts = opts or {}
      opts.backend = backend
      return testing.cell(opts)
    end

    it("testing.run returns posts, logs, denials and the error", function()
      local sb = cell{ policy = "stdlib.readonly" }
      local r = testing.run(sb, "post(1)\nlog('info', 'hi')\npost([2])\n" ..
                                 "try:\n    open('/etc/shadow')\nexcept OSError:\n    pass\n" ..
                                 "1 / 0")
      assert.are.same({ 1, { 2 } }, r.posts)
      assert.are.equal(1, #r.logs)
      assert.are.equal("hi", r.logs[1].message)
      assert.are.equal(1, #r.denials)
      assert.are.equal("/etc/shadow", r.denials[1].target)
      assert.are.equal("guest", r.error.kind)
      assert.are.equal("ZeroDivisionError", r.error.python)
      local ok = testing.run(sb, "post(3)")
      assert.is_nil(ok.error)
      assert.are.same({ 3 }, ok.posts)
    end)

    it("assert.denied passes on a matching denial and fails showing what happened", function()
      local sb = cell{ policy = "stdlib.readonly" }
      assert.denied(sb, "open('/etc/shadow')", { op = "read", target = "/etc/shadow",
                                                layer = "python-guard" })
      assert.denied(sb, "open('/etc/shadow')", { op = "fs" })
      local msg = failure_of(function()
        assert.denied(sb, "post('quiet')", { op = "read" })
      end)
      assert.truthy(msg:find('"quiet"', 1, true), msg)
      assert.truthy(msg:find("denials (0)", 1, true), msg)
      msg = failure_of(function()
        assert.denied(sb, "open('/etc/shadow')", { layer = "bpf" })
      end)
      assert.truthy(msg:find("/etc/shadow", 1, true), msg)
      assert.truthy(msg:find("denials (1)", 1, true), msg)
    end)

    it("assert.allowed fails on a denial or an error, showing it", function()
      local sb = cell{ policy = "stdlib.readonly" }
      assert.allowed(sb, "post(1)")
      local msg = failure_of(function() assert.allowed(sb, "open('/etc/shadow')") end)
      assert.truthy(msg:find("/etc/shadow", 1, true), msg)
      msg = failure_of(function() assert.allowed(sb, "raise KeyError('k')") end)
      assert.truthy(msg:find("KeyError", 1, true), msg)
      assert.is_not.allowed(sb, "1 / 0")
    end)

    it("assert.posts compares values deeply and shows the posts seen", function()
      local sb = cell{}
      assert.posts(sb, "post({'a': [1, 2]})", { a = { 1, 2 } })
      local msg = failure_of(function() assert.posts(sb, "post(41)", 42) end)
      assert.truthy(msg:find("42", 1, true), msg)
      assert.truthy(msg:find("posts (1)", 1, true), msg)
      assert.truthy(msg:find("41", 1, true), msg)
    end)

    it("testing.capability_spy records every call and answers", function()
      local spy = testing.capability_spy("kv_" .. backend, function(action, payload)
        return action .. ":" .. tostring(payload)
      end)
      local sb = cell{ capabilities = { "kv_" .. backend } }
      assert.posts(sb, "post(request('kv_" .. backend .. "', 'get', 'k1'))", "get:k1")
      sb:exec("request('kv_" .. backend .. "', 'put', [1, 2])")
      assert.are.equal(2, #spy.calls)
      assert.are.same({ action = "get", payload = "k1", cell = sb.name }, spy.calls[1])
      assert.are.same({ 1, 2 }, spy.calls[2].payload)
      local fixed = testing.capability_spy("fixed_" .. backend, 7)
      local sb2 = cell{ capabilities = { "fixed_" .. backend } }
      assert.posts(sb2, "post(request('fixed_" .. backend .. "', 'x', None))", 7)
      assert.are.equal(1, #fixed.calls)
    end)
  end)
end

describe("assert.raises_kind", function()
  it("passes on the kind and fails on another, on none, or on a plain error", function()
    assert.raises_kind("invalid_argument", sandbox.spawn, { backend = "nope" })
    local msg = failure_of(function()
      assert.raises_kind("timeout", sandbox.spawn, { backend = "nope" })
    end)
    assert.truthy(msg:find("invalid_argument", 1, true), msg)
    msg = failure_of(function() assert.raises_kind("timeout", function() end) end)
    assert.truthy(msg:find("no error", 1, true), msg)
    msg = failure_of(function() assert.raises_kind("timeout", error, "plain") end)
    assert.truthy(msg:find("non-isolate", 1, true), msg)
  end)
end)

describe("fixtures", function()
  it("testing.cleanup closes every fixture cell and may run twice", function()
    local a, b = testing.cell{}, testing.cell{ backend = "process" }
    testing.cleanup()
    assert.is_false(a:is_open())
    assert.is_false(b:is_open())
    testing.cleanup()
  end)

  it("close the cells of a test that failed", function()
    local out = os.tmpname()
    -- busted in the host under test (ctest sets ISOLATE_HOST; the
    -- sanitizer build's module loads only there), else in lua5.4
    local host = os.getenv("ISOLATE_HOST")
    local runner = host and (support.quote(host) .. " test") or "lua5.4 /usr/bin/busted"
    local cmd = string.format("ISOLATE_TESTING_OUT=%s %s -o TAP spec/testing/cleanup_fixture.lua >/dev/null 2>&1",
                              support.quote(out), runner)
    local ok = os.execute(cmd)
    assert.is_falsy(ok) -- the first test failed on purpose
    local f = assert(io.open(out))
    local verdict = f:read("a")
    f:close()
    os.remove(out)
    assert.are.equal("closed", verdict)
  end)

  it("testing.fixtures() outside a describe block is refused", function()
    local ok = pcall(load("return require('isolate.testing').fixtures()", "x", "t", {require = require}))
    assert.is_false(ok)
  end)
end)
