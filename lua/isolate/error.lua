-- isolate.Error objects raised by the pure-Lua layer. The metatable (and
-- its __tostring, "isolate: <kind>: <message>") belongs to isolate.core so
-- that errors from C and from Lua are the same kind of value.
local core = require "isolate.core"

local M = { Error = core.Error }

function M.new(kind, message, fields)
  local e = { kind = kind, message = message }
  for k, v in pairs(fields or {}) do e[k] = v end
  return setmetatable(e, core.Error)
end

-- raise(kind, fmt, ...): raise at the caller of the API function.
function M.raise(kind, fmt, ...)
  error(M.new(kind, string.format(fmt, ...)), 3)
end

function M.is(v, kind)
  return getmetatable(v) == core.Error and (kind == nil or v.kind == kind)
end

return M
