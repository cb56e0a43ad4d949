-- Soak: spawn / exec / kill cycles over both backends, watching what a
-- leak would grow: fds, threads, child processes (the zygote and cells),
-- cgroup directories and RSS (with its anonymous and file-backed parts
-- and the Lua heap, to tell a leak from a library paged in). Run with
--   build/luaisolate bench/soak.lua [cycles=1000] [warmup=100]
-- Prints the figures; exits 1 when anything grew (RSS: more than 1 MiB per
-- 1000 cycles after the warm-up, issue 10).
local sandbox = require "isolate"
local now = require("isolate.core").now

local cycles = tonumber(arg and arg[1]) or 1000
local warmup = tonumber(arg and arg[2]) or math.min(100, cycles // 10)
local SELF = io.open("/proc/self/stat"):read("l"):match("^%d+")

local function count_lines(cmd)
  local p = io.popen(cmd)
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

local function status_field(name)
  for line in io.lines("/proc/self/status") do
    local v = line:match("^" .. name .. ":%s+(%d+)")
    if v then return tonumber(v) end
  end
end

local function cgroup_root()
  for line in io.lines("/proc/self/mountinfo") do
    local mp = line:match("^%S+ %S+ %S+ %S+ (%S+) .- %- cgroup2 ")
    if mp then return mp .. "/luaisolate" end
  end
end
local ROOT = cgroup_root()

local base_threads -- after the first cycles: the zygote's starter, the pools
local base_fds

-- The fewest fds seen in 5 looks: a leaked fd stays, while one a
-- background thread holds for a moment (the cgroup reaper reading a
-- directory, say) may be caught in any single look.
local function fd_count()
  local fewest = math.huge
  for _ = 1, 5 do -- (/proc/self would be ls's)
    fewest = math.min(fewest, count_lines("ls -1 /proc/" .. SELF .. "/fd"))
    require("isolate.core").sleep(0.02)
  end
  return fewest
end

-- The fewest threads seen over 0.3 s: a leaked thread stays, while a
-- short-lived one (an interrupter, a knock at a shared-GIL door) may be
-- caught in any single look.
local function lasting_threads()
  local fewest, t = status_field("Threads"), now()
  while now() - t < 0.3 do
    require("isolate.core").sleep(0.01)
    fewest = math.min(fewest, status_field("Threads"))
  end
  return fewest
end

-- The process pool full again (its workers, their fds and cgroups are the
-- host's, as the zygote is): a refill must not land between two looks.
local function pool_full()
  local t = now()
  while now() - t < 5 and sandbox.pool().process.ready < sandbox.pool().process.target do
    require("isolate.core").sleep(0.005)
  end
end

local function settle()
  collectgarbage()
  collectgarbage()
  pool_full()
  -- a killed cell's thread, fds and cgroup may take a moment to go (a
  -- thread that missed its close grace ends on its own a little later)
  local t = now()
  while now() - t < 5 and (lasting_threads() > base_threads or fd_count() > base_fds or count_lines(
      "ls -1d " .. (ROOT or "/nonexistent") .. "/host-" .. SELF .. "/*/ 2>/dev/null") > 0) do
    require("isolate.core").sleep(0.01)
  end
end

-- What each of this host's fds is ("N -> target"), to show a leaked one.
local function fd_targets()
  local p, out = io.popen("ls -l /proc/" .. SELF .. "/fd"), {}
  for line in p:lines() do
    local fd, target = line:match("(%d+) %-> (.*)$")
    if fd then out[fd] = target end
  end
  p:close()
  return out
end

local function snapshot()
  settle()
  return {
    fd_list = fd_targets(),
    fds = fd_count(),
    threads = lasting_threads(),
    -- the zygote and its cells: every luaisolate-cell naming this host
    guests = count_lines("pgrep -f '^luaisolate-cell --zygote " .. SELF .. " '"),
    cgroups = ROOT and count_lines("ls -1d " .. ROOT .. "/cells-" .. SELF .. "/*/ "
                                   .. ROOT .. "/host-" .. SELF .. "/*/ 2>/dev/null") or 0,
    rss_kib = status_field("VmRSS"),
    lua_kib = math.floor(collectgarbage("count")),
    anon_kib = status_field("RssAnon"),
    file_kib = status_field("RssFile"),
  }
end

local backends = { "subinterpreter", "process" }
if os.getenv("SOAK_BACKEND") then backends = { os.getenv("SOAK_BACKEND"), os.getenv("SOAK_BACKEND") } end
local function cycle(i)
  local backend = backends[i % 2 + 1]
  local sb = sandbox.spawn{ backend = backend }
  sb:exec("post(sum(range(1000)))")
  assert(sb:recv(5) == 499500)
  -- killed running (process cells only: an abandoned spinning
  -- sub-interpreter thread can hold 3.11's shared GIL for long)
  if i % 3 == 0 and backend == "process" then sb:start_exec("while True: pass") end
  sb:kill()
  if os.getenv("SOAK_TRACE") then io.stderr:write(i, " ", backend, "\n") end
end

-- One of each first: the zygote and the pools are part of the host after.
cycle(0)
cycle(1)
collectgarbage()
pool_full()
base_threads = lasting_threads()
base_fds = fd_count()
local t0 = now()
for i = 1, warmup do cycle(i) end
local before = snapshot()
for i = warmup + 1, warmup + cycles do cycle(i) end
local after = snapshot()
local took = now() - t0

local grew = {}
print(string.format("soak: %d cycles after %d warm-up (both backends) in %.1f s",
                    cycles, warmup, took))
print(string.format("  %-8s %10s %10s", "", "before", "after"))
for _, k in ipairs({ "fds", "threads", "guests", "cgroups", "rss_kib", "lua_kib", "anon_kib", "file_kib" }) do
  print(string.format("  %-8s %10d %10d", k, before[k], after[k]))
  if not k:match("_kib$") and after[k] > before[k] then grew[#grew + 1] = k end
end
for fd, target in pairs(after.fd_list) do -- (the listing's own pipe differs)
  if before.fd_list[fd] ~= target and not target:match("^pipe:") then
    print(string.format("  fd %s: %s / %s", fd, before.fd_list[fd] or "-", target))
  end
end
local figures = {}
for _, k in ipairs({ "fds", "threads", "guests", "cgroups", "rss_kib" }) do
  figures[#figures + 1] = string.format("%s=%d/%d", k, before[k], after[k])
end
print("soak-figures " .. table.concat(figures, " "))
local per_1000 = (after.rss_kib - before.rss_kib) * 1000 / cycles
print(string.format("  rss growth: %.0f KiB per 1000 cycles (limit 1024)", per_1000))
if per_1000 > 1024 then grew[#grew + 1] = "rss" end
if #grew > 0 then
  print("soak: grew: " .. table.concat(grew, ", "))
  os.exit(1)
end
print("soak: ok")
