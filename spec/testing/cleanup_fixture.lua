-- Run by spec/testing_spec.lua in a busted of its own: the first test
-- fails on purpose with a cell open; the second proves the fixture closed
-- it and writes the verdict to $ISOLATE_TESTING_OUT.
local sandbox = require "isolate"
local testing = require "isolate.testing"

describe("a failing test with a fixture cell", function()
  testing.fixtures()
  local name

  it("fails on purpose while its cell is open", function()
    local sb = testing.cell{}
    name = sb.name
    sb:exec("x = 1")
    error("failing on purpose")
  end)

  it("finds that cell closed", function()
    local f = assert(io.open(os.getenv("ISOLATE_TESTING_OUT"), "w"))
    f:write(name and sandbox.list()[name] == nil and "closed" or "open")
    f:close()
  end)
end)
