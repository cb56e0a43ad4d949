-- Soak, short (issue 10, point 7): spawn / exec / kill cycles over both
-- backends leave fds, threads, guest processes and cgroup directories as
-- they were, and RSS about flat. The full run (1000 cycles, RSS at most
-- 1 MiB per 1000 cycles after warm-up) is bench/soak.lua; this one keeps
-- CI time short: ISOLATE_SOAK_CYCLES changes its length.
local support = require "support"

local HOST = os.getenv("ISOLATE_HOST")
local SOURCE_DIR = os.getenv("ISOLATE_SOURCE_DIR") or "."
local CYCLES = tonumber(os.getenv("ISOLATE_SOAK_CYCLES")) or 200
local WARMUP = 60

if not HOST then
  print("# soak_spec: skipped, ISOLATE_HOST is not set")
  return
end

describe("soak", function()
  it("spawn / exec / kill cycles leak nothing", function()
    local code, out = support.run(HOST, SOURCE_DIR .. "/bench/soak.lua",
                                  tostring(CYCLES), tostring(WARMUP))
    print("\n" .. out)
    local figures = {}
    for k, a, b in (out:match("soak%-figures ([^\n]*)") or ""):gmatch("(%w+)=(%d+)/(%d+)") do
      figures[k] = { tonumber(a), tonumber(b) }
    end
    for _, k in ipairs({ "fds", "threads", "guests", "cgroups" }) do
      assert.is_truthy(figures[k], k)
      assert.are.equal(figures[k][1], figures[k][2], k)
    end
    -- a short run: 1 MiB in all, not per 1000 cycles (allocator noise)
    assert.is_true(figures.rss_kib[2] - figures.rss_kib[1] <= 1024,
                   "RSS grew " .. (figures.rss_kib[2] - figures.rss_kib[1]) .. " KiB")
    assert.is_truthy(code == 0 or out:find("soak: grew: rss\n", 1, true), out)
  end)
end)
