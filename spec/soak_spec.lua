-- Soak, short (issue 10, point 7): spawn / exec / kill cycles over both
-- backends leave fds, threads, guest processes and cgroup directories as
-- they were. RSS is printed, not judged: over a few hundred cycles it
-- still climbs to its plateau (allocator and Lua heap), so the 1 MiB per
-- 1000 cycles figure is judged by the full run, bench/soak.lua (1000
-- cycles after warm-up; see NOTES-life.md for its figures).
-- ISOLATE_SOAK_CYCLES changes this one's length.
local support = require "support"

local HOST = os.getenv("ISOLATE_HOST")
local SOURCE_DIR = os.getenv("ISOLATE_SOURCE_DIR") or "."
local CYCLES = tonumber(os.getenv("ISOLATE_SOAK_CYCLES")) or 200

if not HOST then
  print("# soak_spec: skipped, ISOLATE_HOST is not set")
  return
end

-- Run bench/soak.lua with SOAK_BACKEND=backend (nil: both); its figures.
local function soak(backend, cycles, warmup)
  local env = backend and ("SOAK_BACKEND=" .. backend .. " ") or ""
  local p = io.popen(env .. support.quote(HOST) .. " " .. support.quote(SOURCE_DIR .. "/bench/soak.lua")
                     .. " " .. cycles .. " " .. warmup .. " 2>&1")
  local out = p:read("a")
  p:close()
  print("\n" .. out)
  local figures = {}
  for k, a, b in (out:match("soak%-figures ([^\n]*)") or ""):gmatch("([%w_]+)=(%d+)/(%d+)") do
    figures[k] = { before = tonumber(a), after = tonumber(b) }
  end
  for _, k in ipairs({ "fds", "threads", "guests", "cgroups", "rss_kib" }) do
    assert.is_truthy(figures[k], "no figure for " .. k .. " in: " .. out)
  end
  return figures
end

describe("soak", function()
  it("spawn / exec / kill cycles over both backends leak no fd, thread, guest or cgroup", function()
    local f = soak(nil, CYCLES, 60)
    for _, k in ipairs({ "fds", "threads", "guests", "cgroups" }) do
      assert.are.equal(f[k].before, f[k].after, k)
    end
  end)
end)
