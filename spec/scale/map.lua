-- The map spec/slurm_spec.lua submits: 200 items through one Python stage,
-- on the backend given as arg[1], sharded by sandbox.shard() and written to
-- $ISOLATE_SHARD_OUT. With arg[2] = I, shard I marks itself running
-- (holding-I) and waits there, for the spec to scancel it mid-run.
local backend, hold = arg[1], tonumber(arg[2])
local out = assert(os.getenv("ISOLATE_SHARD_OUT"), "ISOLATE_SHARD_OUT is not set")
local s = sandbox.shard()
if hold == s.index then
  assert(io.open(out .. "/holding-" .. s.index, "w")):close()
  while true do os.execute("sleep 1") end
end
local inputs = {}
for i = 1, 200 do inputs[i] = i end
local p = sandbox.pipeline({ backend = backend })
  :stage("square", { code = "def run(x):\n"
                     .. "    return {'x': x, 'square': x * x, 'text': str(x)}\n",
                     entry = "run" })
local _, _, info = p:map(inputs, { shard = s, out = out, workers = 2 })
print(string.format("shard %d/%d backend=%s items=%d failures=%d skipped=%s",
                    s.index, s.count, backend, info.items, info.failures,
                    tostring(info.skipped)))
