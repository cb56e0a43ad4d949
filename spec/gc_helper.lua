-- busted --helper for the specs' second run under garbage-collector stress
-- (ctest label `gc`, tests gc_<spec>; as luv's CI reruns its suite).
--
-- The collector is generational and never waits long: a minor collection
-- after every 1% the heap grows, a major one after every 10% (Lua's own
-- lua5.4 uses 20% and 100%). An object dropped by a spec is finalized
-- about eight times sooner than under the defaults (a cell, a value or a
-- plan within a thousand small allocations), usually while other cells,
-- values and plans are still in use: a __gc or __close that frees what
-- something else still holds, or runs in the wrong order, fails the spec
-- (or trips ASan in build-asan/) instead of going unnoticed until exit.
-- After each test a full collection finalizes whatever the test left
-- behind, while the cells' host side is still alive.
--
-- Why not more: incremental mode with pause 100-102 (a new cycle at once)
-- finalizes within ~30-130 allocations but makes allocating Lua code
-- ~25 times slower, and a spec that must reload a policy four times in
-- 1.5 s (reload_spec's connect hammer) then fails for want of time, not
-- of correctness. (pause 0 means "leave it as it is" in Lua 5.4.)
--
-- ISOLATE_GC="generational,MINOR,MAJOR" or "incremental,PAUSE,STEPMUL,
-- STEPSIZE" overrides the setting (README, "Installing, testing, docs").
local spec = os.getenv("ISOLATE_GC") or "generational,1,10"
local mode, a, b, c = spec:match("^(%a+),?(%d*),?(%d*),?(%d*)$")
assert(mode == "incremental" or mode == "generational", "ISOLATE_GC: " .. spec)
collectgarbage(mode, tonumber(a), tonumber(b), tonumber(c))

local busted = require("busted")
busted.subscribe({ "test", "end" }, function()
  collectgarbage()
  return nil, true
end)
