-- `luaisolate submit --slurm` on a real single-node Slurm cluster
-- (scripts/slurm-local.sh: munged, slurmctld, slurmd from a generated
-- configuration in a temporary folder): a 4-task job array runs a map of
-- 200 items on each backend and the gather job after it merges every
-- result; a cancelled task leaves its shard missing, the gather job never
-- runs, and a resubmission redoes only that shard. Where Slurm cannot
-- start here, setup fails saying why: this suite is never skipped.
local sandbox = require "isolate"
local shard = require "isolate.shard"
local support = require "support"

local q = support.quote
local HOST = os.getenv("ISOLATE_HOST")
if not HOST then
  print("# slurm_spec: skipped, ISOLATE_HOST (path of the luaisolate binary) is not set")
  return
end
local SRC = os.getenv("ISOLATE_SOURCE_DIR") or "."
local MAP = SRC .. "/spec/scale/map.lua"
local ITEMS, SHARDS = 200, 4
local WAIT_S = 60

local root, conf

local slurp = support.slurp

-- exit code, stdout and stderr of a shell command run against the cluster.
local function sh(cmd)
  local errf = os.tmpname()
  local p = io.popen("SLURM_CONF=" .. q(conf or "") .. " " .. cmd .. " 2>" .. q(errf))
  local out = p:read("a")
  local _, _, code = p:close()
  local err = slurp(errf)
  os.remove(errf)
  return code, out, err
end

local function sleep(s) os.execute("sleep " .. s) end

-- Poll until fn() is true, or fail saying what did not happen.
local function wait_until(what, fn)
  local deadline = os.time() + WAIT_S
  while not fn() do
    assert(os.time() < deadline, "gave up after " .. WAIT_S .. " s waiting for " .. what)
    sleep(0.25)
  end
end

local function submit(out, ...)
  local args = {}
  for _, a in ipairs({ ... }) do args[#args + 1] = q(a) end
  local code, stdout, err = sh(q(HOST) .. " submit --slurm --shards " .. SHARDS
                               .. " --out " .. q(out) .. " " .. q(MAP) .. " "
                               .. table.concat(args, " "))
  assert.are.equal(0, code, err)
  local array, gather = stdout:match("^array (%d+)\ngather (%d+)\n$")
  assert.is_truthy(array, stdout)
  return array, gather
end

-- Until Slurm has no job of these ids pending or running.
local function wait_done(...)
  local ids = table.concat({ ... }, ",")
  wait_until("jobs " .. ids .. " to end", function()
    local code, out = sh("squeue -h -o %i -j " .. ids)
    return code == 0 and out == ""
  end)
end

local function state(id)
  local _, out = sh("scontrol -o show job " .. id)
  return out:match("JobState=(%u+)")
end

local function inode(path)
  local _, out = sh("stat -c %i " .. q(path))
  return out
end

local function expected(i)
  return { item = i, ok = true, value = { x = i, square = i * i, text = tostring(i) } }
end

-- Every item once, in order, right; from the gather job's file and from
-- sandbox.gather.
local function check_results(out)
  local text = assert(slurp(out .. "/results.jsonl"), "the gather job wrote no results")
  local i = 0
  for line in text:gmatch("([^\n]*)\n") do
    i = i + 1
    assert.are.same(expected(i), shard.decode(line))
  end
  assert.are.equal(ITEMS, i)
  local outs, errs, info = sandbox.gather(out)
  assert.is_nil(next(errs))
  assert.are.same({ SHARDS, ITEMS, 0 }, { info.count, info.items, info.failures })
  for k = 1, ITEMS do assert.are.same(expected(k).value, outs[k]) end
end

-- What each task of array job `id` printed: skipped=true|false by shard.
local function skipped_by_shard(out, id)
  local t = {}
  for k = 0, SHARDS - 1 do
    local log = slurp(string.format("%s/slurm-%s_%d.log", out, id, k)) or ""
    t[k] = log:match("^shard " .. k .. "/" .. SHARDS .. " .- skipped=(%a+)\n")
  end
  return t
end

describe("luaisolate submit --slurm on a one-node cluster", function()
  setup(function()
    local p = io.popen("mktemp -d")
    root = p:read("l")
    p:close()
    os.execute("chmod 711 " .. q(root)) -- munged: its socket's folders searchable
    local code, out, err = sh(q(SRC .. "/scripts/slurm-local.sh") .. " start "
                              .. q(root .. "/cluster"))
    assert(code == 0, "Slurm could not start here, so this suite fails: "
           .. (err or "") .. (out or ""))
    conf = root .. "/cluster/slurm.conf"
  end)

  teardown(function()
    if root then
      sh(q(SRC .. "/scripts/slurm-local.sh") .. " stop " .. q(root .. "/cluster"))
      os.execute("rm -rf -- " .. q(root))
    end
  end)

  for _, backend in ipairs(support.backends()) do
    it("maps 200 items as a 4-task array and gathers them (" .. backend .. ")", function()
      local out = root .. "/" .. backend
      local array, gather = submit(out, backend)
      wait_done(array, gather)
      for k = 0, SHARDS - 1 do
        assert.are.equal("COMPLETED", state(array .. "_" .. k))
      end
      assert.are.equal("COMPLETED", state(gather))
      check_results(out)
      assert.are.same({ [0] = "false", "false", "false", "false" },
                      skipped_by_shard(out, array))
    end)
  end

  it("redoes only a cancelled task's shard on resubmission", function()
    local out = root .. "/cancelled"
    local array, gather = submit(out, "process", "2")
    wait_until("task 2 to be running", function()
      return slurp(out .. "/holding-2") ~= nil
    end)
    local code, _, err = sh("scancel " .. array .. "_2")
    assert.are.equal(0, code, err)
    wait_done(array, gather)
    assert.are.equal("CANCELLED", state(array .. "_2"))
    assert.are_not.equal("COMPLETED", state(gather)) -- afterok never held
    assert.is_nil(slurp(out .. "/results.jsonl"))
    local ok, e = pcall(sandbox.gather, out)
    assert.is_false(ok)
    assert.are.equal("missing_shard", e.kind)
    assert.are.same({ 2 }, e.shards)
    local inodes = {}
    for _, k in ipairs({ 0, 1, 3 }) do
      inodes[k] = inode(string.format("%s/shard-%d-of-4.jsonl", out, k))
    end

    local array2, gather2 = submit(out, "process")
    wait_done(array2, gather2)
    assert.are.equal("COMPLETED", state(gather2))
    check_results(out)
    assert.are.same({ [0] = "true", "true", "false", "true" },
                    skipped_by_shard(out, array2))
    for _, k in ipairs({ 0, 1, 3 }) do -- not rewritten: the same file
      assert.are.equal(inodes[k], inode(string.format("%s/shard-%d-of-4.jsonl", out, k)))
    end
  end)
end)
