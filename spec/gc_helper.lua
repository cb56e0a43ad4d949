-- busted --helper for the specs' second run under garbage-collector stress
-- (ctest label `gc`, tests gc_<spec>; as luv's CI reruns its suite).
--
-- The collector runs all the time: a new cycle starts as soon as one ends
-- (pause 100: no wait), and it works four times as fast as the program
-- allocates, in steps after every kilobyte (stepmul 400, stepsize 10): a
-- cycle every ~20 small allocations on a heap of a megabyte. A userdata
-- dropped by a spec is then finalized within a few allocations, usually
-- while other cells, values and plans are still in use: a __gc or __close
-- that frees what something else still holds, or runs in the wrong order,
-- fails the spec (or trips ASan in build-asan/) instead of going unnoticed
-- until exit. After each test a full collection finalizes whatever the
-- test left behind, while the cells' host side is still alive.
--
-- (In Lua 5.4 a 0 argument means "leave it as it is", so pause 0 is no
-- stress at all; pause 1-99 restarts a cycle after each allocation, which
-- makes the suite ~100 times slower for little more.)
--
-- ISOLATE_GC="incremental,PAUSE,STEPMUL,STEPSIZE" or "generational,MINOR,
-- MAJOR" overrides the setting (README, "Tests").
local spec = os.getenv("ISOLATE_GC") or "incremental,100,400,10"
local mode, a, b, c = spec:match("^(%a+),?(%d*),?(%d*),?(%d*)$")
assert(mode == "incremental" or mode == "generational", "ISOLATE_GC: " .. spec)
collectgarbage(mode, tonumber(a), tonumber(b), tonumber(c))

local busted = require("busted")
busted.subscribe({ "test", "end" }, function()
  collectgarbage()
  return nil, true
end)
