-- isolate.luv: drive luaisolate from a luv (libuv) loop.
--
--   local uv = require "luv"
--   local watch = require("isolate.luv").attach(uv)
--   sb:call_async("math.sqrt", {2}, function(err, v) ... end)
--   uv.run()
--   watch:detach() -- when the application shuts down
--
-- One uv poll handle on sandbox.fd() calls sandbox.step() whenever the fd
-- is readable. An error raised by a callback comes out of step(), inside
-- luv's poll callback: luv's usual path for errors in callbacks (it prints
-- "Uncaught Error" and ends the process), unless opts.on_error(err) is
-- given, which then gets it and the loop goes on.
local sandbox = require "isolate"

local M = {}

local Watch = {}
Watch.__index = Watch

function Watch:detach()
  if not self.poll:is_closing() then self.poll:close() end
end

function M.attach(uv, opts)
  opts = opts or {}
  local poll = uv.new_poll(sandbox.fd())
  local on_error = opts.on_error
  poll:start("r", function(err)
    assert(not err, err)
    if not on_error then return sandbox.step() end
    local ok, e = pcall(sandbox.step)
    if not ok then on_error(e) end
  end)
  return setmetatable({ poll = poll }, Watch)
end

return M
