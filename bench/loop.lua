-- Loop latency: run with `build/luaisolate bench/loop.lua [rounds]` (or
-- lua5.4 with LUA_PATH/LUA_CPATH set as .busted does) from the source root.
-- examples/loop_server.lua on each event loop (luv, cqueues) and backend:
-- 50 clients at once, half of them ~300 ms of CPU-bound Python, while a
-- 10 ms timer ticks. One row each: the timer's worst gap between two ticks
-- (10 ms is perfect), how many ticks were late (> 50 ms after the one
-- before), and requests per second. The sub-interpreter rows on CPython
-- 3.11 share one GIL: their requests/s is one core's; the loop's latency
-- is what the row is about. Figures are the best of `rounds` runs (2):
-- these VMs are noisy and shared.
local sandbox = require "isolate"
local server = dofile("examples/loop_server.lua")

local rounds = tonumber(arg and arg[1]) or 2
print(string.format("| loop | backend | clients | worst timer gap (ms) | late ticks "
  .. "(> %d ms) | requests/s |", server.LATE_MS))
print("|---|---|---|---|---|---|")
for _, loop in ipairs({ "luv", "cqueues" }) do
  for _, backend in ipairs(sandbox.IMPLEMENTED) do
    if backend ~= "microvm" then
      local best
      for _ = 1, rounds do
        local r = server.run({ loop = loop, backend = backend, clients = 50 })
        assert(#r.wrong == 0, "a client got a wrong answer")
        if not best or r.worst_ms < best.worst_ms then best = r end
      end
      print(string.format("| %s | %s | %d | %.1f | %d | %.1f |", loop, backend,
                          best.clients, best.worst_ms, best.late, best.rps))
    end
  end
end
