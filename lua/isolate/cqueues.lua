-- isolate.cqueues: drive luaisolate from a cqueues controller.
--
--   local cqueues = require "cqueues"
--   local cq = cqueues.new()
--   local watch = require("isolate.cqueues").attach(cq)
--   cq:wrap(function() sb:call_async("math.sqrt", {2}, print) end)
--   assert(cq:loop())
--   watch:detach() -- when the application shuts down
--
-- One coroutine on cq waits with cqueues.poll for sandbox.fd() and calls
-- sandbox.step(). An error raised by a callback comes out of step() in
-- that coroutine: cqueues' usual path, cq:step() / cq:loop() return it
-- (nil, err), and the coroutine ends; opts.on_error(err) gets it instead
-- and keeps it going.
local sandbox = require "isolate"

local M = {}

local Watch = {}
Watch.__index = Watch

function Watch:detach()
  self.stopped = true
  self.cqueues.cancel(self.fd) -- wakes the coroutine in its poll
end

function M.attach(cq, opts)
  opts = opts or {}
  local cqueues = require "cqueues"
  local fd = sandbox.fd()
  local watch = setmetatable({ fd = fd, cqueues = cqueues, stopped = false },
                             Watch)
  local pollable = { pollfd = function() return fd end,
                     events = function() return "r" end }
  cq:wrap(function()
    while not watch.stopped do
      cqueues.poll(pollable)
      if watch.stopped then return end
      if opts.on_error then
        local ok, e = pcall(sandbox.step)
        if not ok then opts.on_error(e) end
      else
        sandbox.step()
      end
    end
  end)
  return watch
end

return M
