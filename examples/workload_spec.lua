-- A scripted test scenario for sandboxed Python: copy this file to start.
-- Run it with `luaisolate test examples/workload_spec.lua` (or busted with
-- the module on LUA_PATH/LUA_CPATH, see the README).
local testing = require "isolate.testing"

describe("a scoring workload in a read-only cell", function()
  testing.fixtures() -- every testing.cell closes after each test, even a failed one

  local SCORE = "def score(xs):\n    return sum(x * x for x in xs)\n"

  it("computes what it should", function()
    local sb = testing.cell{ policy = "stdlib.readonly" }
    sb:exec(SCORE)
    assert.are.equal(14, sb:call("score", { 1, 2, 3 }))
    assert.posts(sb, "post(score([2, 2]))", 8)
  end)

  it("cannot read secrets or reach the network", function()
    local sb = testing.cell{ policy = "stdlib.readonly", imports = { "socket" } }
    assert.denied(sb, "open('/etc/shadow')", { op = "read", target = "/etc/shadow" })
    assert.denied(sb, "import socket\nsocket.create_connection(('127.0.0.1', 80))",
                  { op = "connect" })
    assert.allowed(sb, "import json\npost(json.dumps([1]))")
  end)

  it("asks the host through a capability, and only for what it was granted", function()
    local kv = testing.capability_spy("kv", function(action, key)
      return action == "get" and ("value of " .. key) or nil
    end)
    local sb = testing.cell{ capabilities = { "kv" } }
    assert.posts(sb, "post(request('kv', 'get', 'k'))", "value of k")
    assert.are.equal(1, #kv.calls)
    local r = testing.run(sb, "request('files', 'list', None)")
    assert.are.equal("guest", r.error.kind)
  end)

  it("stops at its time limit", function()
    local sb = testing.cell{ limits = { wall_ms = 100 } }
    assert.raises_kind("timeout", sb.exec, sb, "while True:\n    pass")
  end)
end)
