-- Embedding in an event loop: one pollable fd for the whole host
-- (sandbox.fd), one non-blocking step (sandbox.step), and requests that
-- end in a callback (sb:exec_async, sb:call_async, sb:on_post). Any loop
-- that can watch an fd drives it: isolate.luv and isolate.cqueues are the
-- two adapters shipped.
--
-- Every callback runs from step(), on the Lua thread, exactly once per
-- request. step() never blocks: collecting a result, serving a broker
-- request and dispatching events are sb:result(0)'s, as after start_exec.
-- An error raised by a callback, a post handler or a sandbox.on handler
-- during step() does not stop the others of that step; step() raises the
-- first of them at its end (with err.more = how many others there were,
-- when it is a table), so it reaches the loop's usual path for errors.
local core = require "isolate.core"
local errors = require "isolate.error"

local M = {}

local inflight = {}                                -- cell -> its request
local on_post = setmetatable({}, { __mode = "k" }) -- cell -> fn(value)
local queued = {}    -- callbacks due: {fn, n, args...}, in order
local stepping       -- the running step's {failures = {...}, count = n}
local stats = { steps = 0, longest = 0 } -- sandbox.loop_stats()

-- A request's handle: h:cancel(), h.done, h.cell.
local Request = {}
Request.__index = Request

function Request:cancel()
  if self.done or inflight[self.cell] ~= self then return false end
  return self.cell:cancel()
end

local function queue(fn, ...)
  queued[#queued + 1] = table.pack(fn, ...)
end

-- The request is over: its callback is due at the next step, once.
local function finish(req, err, value)
  if req.done then return end
  req.done = true
  if inflight[req.cell] == req then inflight[req.cell] = nil end
  queue(req.cb, err, value)
end

local function check_cb(cb, what)
  if type(cb) ~= "function" then
    errors.raise("invalid_argument", "%s: cb must be a function, got %s",
                 what, type(cb))
  end
end

-- Submit through start (sb.start_exec / sb.start_call). What the cell
-- refuses (closed, already running, a value that cannot cross) is the
-- callback's error too, at the next step: cb is always called once.
local function submit(cell, cb, start, ...)
  core.loop_fd() -- made before the cell can ring for the result
  local mt = getmetatable(cell)
  mt.__close = mt.__index(cell, "close") -- `local sb <close>` as sb:close()
  local req = setmetatable({ cell = cell, cb = cb, done = false }, Request)
  local ok, err = pcall(start, cell, ...)
  if ok then
    inflight[cell] = req
  else
    finish(req, err)
  end
  core.loop_kick() -- the next step watches the cell (a process cell's socket)
  return req
end

local function exec_async(cell, code, cb)
  check_cb(cb, "exec_async")
  return submit(cell, cb, cell.start_exec, code)
end

-- sb:call_async(target, {args...}, cb): cb(err, value)
local function call_async(cell, target, args, cb)
  check_cb(cb, "call_async")
  if args ~= nil and type(args) ~= "table" then
    errors.raise("invalid_argument", "call_async: args must be a list, got %s",
                 type(args))
  end
  args = args or {}
  return submit(cell, cb, cell.start_call, target,
                table.unpack(args, 1, args.n or #args))
end

-- sb:on_post(fn): every value the cell posts goes to fn(value) from
-- step() instead of waiting for sb:recv; on_post(nil) stops that.
local function set_on_post(cell, fn)
  if fn ~= nil then check_cb(fn, "on_post") end
  core.loop_fd()
  on_post[cell] = fn
end

-- Values the cell posted, to its on_post handler.
local function take_posts(cell, fn)
  while true do
    local ok, v, err = pcall(cell.recv, cell, 0)
    if not ok or (v == nil and err ~= nil) then return end
    queue(fn, v)
  end
end

-- One cell the poll found ready. The result is looked at first and the
-- posts taken after it: a guest may post and finish between the two
-- looks, and what it posted before its result must reach on_post before
-- the request's callback.
local function look(cell)
  local req = inflight[cell]
  local ok, over, value
  if req then ok, over, value = pcall(cell.result, cell, 0) end
  local fn = on_post[cell]
  if fn then take_posts(cell, fn) end
  if fn and not cell:is_open() then on_post[cell] = nil end -- nothing more comes
  if req and not ok then
    finish(req, over)
  elseif req and over then
    finish(req, nil, value)
  end
end

local function trap(ok, err)
  stepping.count = stepping.count + 1
  if not ok then table.insert(stepping.failures, err) end
end

local function run_queued()
  local due = queued
  queued = {}
  for _, call in ipairs(due) do
    trap(pcall(call[1], table.unpack(call, 2, call.n)))
  end
end

local function watched()
  local cells = {}
  for cell in pairs(inflight) do cells[#cells + 1] = cell end
  for cell in pairs(on_post) do
    if not inflight[cell] then cells[#cells + 1] = cell end
  end
  return cells
end

local function raise_first(failures)
  local first = failures[1]
  if type(first) == "table" and #failures > 1 then first.more = #failures - 1 end
  error(first, 0)
end

-- Closing a cell lets its running request finish first, for up to 2 s
-- (a sub-interpreter cell's grace): a loop must not wait that long, so a
-- cell whose async request runs is stopped as kill stops it. Its callback
-- gets kind closed all the same.
local function wrap_close(methods)
  local close = methods.close
  methods.close = function(cell)
    if inflight[cell] and cell:is_open() then return cell:kill() end
    return close(cell)
  end
end

function M.install(sandbox)
  local methods = core.cell_methods
  methods.exec_async, methods.call_async = exec_async, call_async
  methods.on_post = set_on_post
  wrap_close(methods)

  -- sandbox.fd() -> fd: readable whenever step() has something to do.
  function sandbox.fd()
    return core.loop_fd()
  end

  -- sandbox.step() -> n: do what is ready without blocking; n callbacks
  -- (completions, posts, event handlers) ran. Raises the first error one
  -- of them raised, after all of them ran. Re-entering it does nothing.
  function sandbox.step()
    if stepping then return 0 end
    stepping = { failures = {}, count = 0, began = core.now() }
    local cells = watched()
    local ready = core.loop_poll(cells)
    sandbox._handler_trap = trap
    local ok, err = pcall(function()
      for _, i in ipairs(ready) do look(cells[i]) end
    end)
    sandbox._handler_trap = nil
    run_queued()
    core.loop_arm(watched()) -- after the callbacks: they may submit more
    local done = stepping
    stepping = nil
    stats.steps = stats.steps + 1
    stats.longest = math.max(stats.longest, core.now() - done.began)
    if not ok then table.insert(done.failures, 1, err) end
    if #done.failures > 0 then raise_first(done.failures) end
    return done.count
  end

  -- {steps=, longest_ms=}: the steps taken, and the longest one (with its
  -- callbacks): what the host kept the loop from doing at once, at most.
  function sandbox.loop_stats()
    return { steps = stats.steps, longest_ms = stats.longest * 1000 }
  end

  -- How many requests wait for their callback (a test's leak check).
  function sandbox.pending()
    local n = #queued
    for _ in pairs(inflight) do n = n + 1 end
    return n
  end
end

return M
