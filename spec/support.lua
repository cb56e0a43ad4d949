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

-- The backends the ABI and value specs run against: every implemented one
-- that runs guest code (so the two cannot drift apart).
function support.backends()
  local out = {}
  for _, b in ipairs(sandbox.IMPLEMENTED) do
    if b ~= "microvm" then out[#out + 1] = b end
  end
  return out
end

-- spawn(opts) for one backend.
function support.spawner(backend)
  return function(opts)
    opts = opts or {}
    opts.backend = backend
    return sandbox.spawn(opts)
  end
end

return support
