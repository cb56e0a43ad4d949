-- Helpers shared by the specs (spec/ is on LUA_PATH under ctest).
local sandbox = require "isolate"
local assert = require "luassert"

local support = {}

-- Call fn(...), expect it to raise an isolate.Error, and return that error.
function support.err_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  assert.are.equal(sandbox.Error, getmetatable(err), "not an isolate.Error: " .. tostring(err))
  return err
end

return support
