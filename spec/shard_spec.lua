-- Sharding a map (isolate.shard): the shard setting from --shard, Slurm and
-- Kubernetes and every bad one refused; slices that cover the inputs once;
-- shard files written whole, skipped when complete, never mixed with
-- other inputs; and gather (sandbox.gather, `luaisolate gather`) refusing
-- a missing shard, a corrupt file and a shard of other inputs.
local sandbox = require "isolate"
local shard = require "isolate.shard"

local support = require "support"
local err_of, q = support.err_of, support.quote

local HOST = os.getenv("ISOLATE_HOST")
if not HOST then
  print("# shard_spec: the command-line tests skipped, ISOLATE_HOST (path of the "
        .. "luaisolate binary) is not set")
end

-- A test of the luaisolate executable: only with ISOLATE_HOST.
local function host_it(name, fn)
  if HOST then it(name, fn) end
end

local SQUARE = [[
def run(x):
    if x == 7:
        raise ValueError(x)
    if x == 'bytes':
        return b'\xff\xfe'
    return x * x
]]

local function square_pipeline(backend)
  return sandbox.pipeline({ backend = backend })
    :stage("square", { code = SQUARE, entry = "run" })
end

local function numbers(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

local tmpdir = support.tmpdir

local function rm(dir) os.execute("rm -rf -- " .. q(dir)) end

local slurp = support.slurp

local spit = support.write

-- An env function over a table.
local function env(t) return function(k) return t[k] end end

local function resolve(cli, vars) return shard.resolve({ cli = cli, env = env(vars or {}) }) end

-- exit code and stdout, stderr of a shell command.
local function run(cmd)
  local errf = os.tmpname()
  local p = io.popen(cmd .. " 2>" .. q(errf))
  local out = p:read("a")
  local _, _, code = p:close()
  local err = slurp(errf)
  os.remove(errf)
  return code, out, err
end

describe("sandbox.shard", function()
  it("is {index = 0, count = 1} with no setting", function()
    assert.are.same({ index = 0, count = 1 }, resolve(nil, {}))
  end)

  it("reads --shard I/N", function()
    assert.are.same({ index = 2, count = 4 }, resolve("2/4"))
    assert.are.same({ index = 0, count = 1 }, resolve("0/1"))
  end)

  it("reads a Slurm array task with its count or its min and max", function()
    assert.are.same({ index = 3, count = 4 },
      resolve(nil, { SLURM_ARRAY_TASK_ID = "3", SLURM_ARRAY_TASK_COUNT = "4" }))
    assert.are.same({ index = 1, count = 3 },
      resolve(nil, { SLURM_ARRAY_TASK_ID = "6", SLURM_ARRAY_TASK_MIN = "5",
                     SLURM_ARRAY_TASK_MAX = "7" }))
    assert.are.same({ index = 2, count = 4 },
      resolve("2/4", { SLURM_ARRAY_TASK_ID = "2", SLURM_ARRAY_TASK_COUNT = "4",
                       SLURM_ARRAY_TASK_MIN = "0", SLURM_ARRAY_TASK_MAX = "3",
                       SLURM_ARRAY_TASK_STEP = "1" }))
  end)

  it("reads a Kubernetes completion index with a count", function()
    assert.are.same({ index = 5, count = 8 },
      resolve(nil, { JOB_COMPLETION_INDEX = "5", ISOLATE_SHARD_COUNT = "8" }))
    assert.are.same({ index = 5, count = 8 }, resolve("5/8", { JOB_COMPLETION_INDEX = "5" }))
  end)

  local BAD_CLI = { "4/4", "0/0", "5/4", "-1/4", "1/-4", "a/b", "1/4x", "1/", "/4",
                    " 1/4", "1 /4", "1.0/4", "0x1/4", "1/4/5", "1/9999999999", "" }
  for _, spec in ipairs(BAD_CLI) do
    it("refuses --shard " .. string.format("%q", spec), function()
      assert.are.equal("invalid_argument", err_of(resolve, spec).kind)
    end)
  end

  local BAD_ENV = {
    ["a task id without a count"] = { SLURM_ARRAY_TASK_ID = "1" },
    ["a task id out of its count"] = { SLURM_ARRAY_TASK_ID = "4", SLURM_ARRAY_TASK_COUNT = "4" },
    ["a task count of 0"] = { SLURM_ARRAY_TASK_ID = "0", SLURM_ARRAY_TASK_COUNT = "0" },
    ["a count that disagrees with min..max"] = { SLURM_ARRAY_TASK_ID = "1",
      SLURM_ARRAY_TASK_COUNT = "3", SLURM_ARRAY_TASK_MIN = "0", SLURM_ARRAY_TASK_MAX = "3" },
    ["min without max"] = { SLURM_ARRAY_TASK_ID = "1", SLURM_ARRAY_TASK_MIN = "0",
                            SLURM_ARRAY_TASK_COUNT = "4" },
    ["a task id below min"] = { SLURM_ARRAY_TASK_ID = "1", SLURM_ARRAY_TASK_MIN = "2",
                                SLURM_ARRAY_TASK_MAX = "5" },
    ["max below min"] = { SLURM_ARRAY_TASK_ID = "3", SLURM_ARRAY_TASK_MIN = "3",
                          SLURM_ARRAY_TASK_MAX = "2" },
    ["a step other than 1"] = { SLURM_ARRAY_TASK_ID = "2", SLURM_ARRAY_TASK_COUNT = "4",
                                SLURM_ARRAY_TASK_STEP = "2" },
    ["a task id that is not a number"] = { SLURM_ARRAY_TASK_ID = "x", SLURM_ARRAY_TASK_COUNT = "4" },
    ["an empty task id"] = { SLURM_ARRAY_TASK_ID = "", SLURM_ARRAY_TASK_COUNT = "4" },
    ["a negative task id"] = { SLURM_ARRAY_TASK_ID = "-1", SLURM_ARRAY_TASK_COUNT = "4" },
    ["a completion index without a count"] = { JOB_COMPLETION_INDEX = "0" },
    ["a completion index out of range"] = { JOB_COMPLETION_INDEX = "8", ISOLATE_SHARD_COUNT = "8" },
    ["a shard count without an index"] = { ISOLATE_SHARD_COUNT = "8" },
    ["a shard count of 0"] = { JOB_COMPLETION_INDEX = "0", ISOLATE_SHARD_COUNT = "0" },
    ["Slurm and Kubernetes disagreeing"] = { SLURM_ARRAY_TASK_ID = "1",
      SLURM_ARRAY_TASK_COUNT = "4", JOB_COMPLETION_INDEX = "2", ISOLATE_SHARD_COUNT = "4" },
  }
  for what, vars in pairs(BAD_ENV) do
    it("refuses " .. what, function()
      assert.are.equal("invalid_argument", err_of(resolve, nil, vars).kind)
    end)
  end

  it("refuses --shard disagreeing with Slurm or Kubernetes", function()
    local slurm = { SLURM_ARRAY_TASK_ID = "1", SLURM_ARRAY_TASK_COUNT = "4" }
    assert.are.equal("invalid_argument", err_of(resolve, "2/4", slurm).kind)
    assert.are.equal("invalid_argument", err_of(resolve, "1/5", slurm).kind)
    assert.are.equal("invalid_argument",
      err_of(resolve, "1/4", { JOB_COMPLETION_INDEX = "1", ISOLATE_SHARD_COUNT = "5" }).kind)
  end)

  host_it("comes from `luaisolate run --shard` and the environment", function()
    local code, out = run(q(HOST) .. " run --shard 3/5 -e "
                          .. q("local s = sandbox.shard() print(s.index, s.count)"))
    assert.are.equal(0, code)
    assert.are.equal("3\t5\n", out)
    code, out = run("SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_COUNT=3 " .. q(HOST)
                    .. " run -e " .. q("local s = sandbox.shard() print(s.index, s.count)"))
    assert.are.equal(0, code)
    assert.are.equal("2\t3\n", out)
    code, out = run(q(HOST) .. " run -e " .. q("local s = sandbox.shard() print(s.index, s.count)"))
    assert.are.equal(0, code)
    assert.are.equal("0\t1\n", out)
  end)

  host_it("refuses a bad --shard as a usage error, and a disagreeing one when read", function()
    for _, spec in ipairs({ "4/4", "x", "1/0" }) do
      local code, out = run(q(HOST) .. " run --shard " .. q(spec) .. " -e 'print(1)'")
      assert.are.equal(2, code, spec)
      assert.are.equal("", out)
    end
    local code, out = run("SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=4 " .. q(HOST)
      .. " run --shard 2/4 -e " .. q("local ok, e = pcall(sandbox.shard) print(ok, e.kind)"))
    assert.are.equal(0, code)
    assert.are.equal("false\tinvalid_argument\n", out)
  end)
end)

describe("the shard file codec", function()
  it("hashes with SHA-256", function()
    assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                     shard.sha256(""))
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                     shard.sha256("abc"))
    assert.are.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      shard.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
  end)

  it("hashes inputs by value, not by key order, and tells types apart", function()
    assert.are.equal(shard.hash({ a = 1, b = { 2, 3 } }), shard.hash({ b = { 2, 3 }, a = 1 }))
    assert.are_not.equal(shard.hash({ 1 }), shard.hash({ 1.0 }))
    assert.are_not.equal(shard.hash({ "1" }), shard.hash({ 1 }))
    assert.are_not.equal(shard.hash({ "a" }), shard.hash({ sandbox.bytes("a") }))
    assert.are_not.equal(shard.hash({ {} }), shard.hash({ sandbox.array({}) }))
    assert.are.equal("invalid_argument", err_of(shard.hash, { print }).kind)
  end)

  it("writes JSON that reads back exactly: integers, floats, strings, null, empty lists", function()
    local v = { 1, 2.0, 0.1, -3, 1e300, 2 ^ 53, math.mininteger, math.maxinteger,
                "q\"\\\n\1\127é😀", sandbox.null, sandbox.array({}), {}, { a = { 1, { b = true } } } }
    local text = shard.encode(v)
    local back = shard.decode(text)
    assert.are.equal(text, shard.encode(back))
    assert.are.equal("integer", math.type(back[1]))
    assert.are.equal("float", math.type(back[2]))
    assert.are.equal(0.1, back[3])
    assert.are.equal(math.mininteger, back[7])
    assert.are.equal(v[9], back[9])
    assert.are.equal(sandbox.null, back[10])
    assert.are.equal("isolate.array", getmetatable(back[11]).__name)
    assert.is_nil(getmetatable(back[12]))
  end)

  it("has no JSON for bytes that are not UTF-8, NaN, infinities and mixed tables", function()
    for _, v in ipairs({ "\255", 0 / 0, math.huge, { 1, a = 2 }, { [2] = 1 },
                         { [true] = 1 }, sandbox.bytes("a"), print }) do
      assert.is_nil(shard.encode(v))
    end
  end)

  it("refuses malformed JSON", function()
    for _, s in ipairs({ "", "[1,", "[1]]", '{"a":1,"a":2}', '"\\ud800"', '"\\udc00"',
                         '"\1"', '"\255"', "01x", "nul", "{1:2}", '"a', "[1 2]",
                         "99999999999999999999", string.rep("[", 200) }) do
      assert.is_nil(shard.decode(s), s)
    end
  end)
end)

for _, backend in ipairs(support.backends()) do

describe("a sharded map (" .. backend .. ")", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() rm(dir) end)

  it("gives each shard exactly its slice, and the slices cover every item once", function()
    local p = square_pipeline(backend)
    local inputs = numbers(23)
    local seen = {}
    for k = 0, 3 do
      local outs, errs, info = p:map(inputs, { shard = { index = k, count = 4 }, workers = 2 })
      local n = 0
      for i = 1, #inputs do
        if (i - 1) % 4 == k and i ~= 7 then
          assert.are.equal(i * i, outs[i]); n = n + 1
        elseif (i - 1) % 4 == k then
          assert.are.equal("guest", errs[i].kind); n = n + 1
        else
          assert.is_nil(outs[i]); assert.is_nil(errs[i])
        end
        if outs[i] or errs[i] then seen[i] = (seen[i] or 0) + 1 end
      end
      assert.are.equal(n, info.items)
    end
    for i = 1, #inputs do assert.are.equal(1, seen[i]) end
  end)

  it("writes shard files that gather merges into the plain map's results", function()
    local p = square_pipeline(backend)
    local inputs = numbers(30)
    inputs[11] = "bytes"
    for k = 0, 2 do
      local _, errs, info = p:map(inputs, { shard = { index = k, count = 3 }, out = dir })
      assert.is_false(info.skipped)
      assert.are.equal(10, info.items)
      if k == 1 then assert.are.equal("value", errs[11].kind) end
      assert.is_truthy(slurp(dir .. "/shard-" .. k .. "-of-3.jsonl"))
    end
    local outs, errs, info = sandbox.gather(dir)
    local want_outs, want_errs = p:map(inputs)
    for i = 1, 30 do
      if i == 7 or i == 11 then
        assert.is_nil(outs[i])
      else
        assert.are.equal(want_outs[i], outs[i])
        assert.are.equal("integer", math.type(outs[i]))
      end
    end
    assert.are.equal(want_errs[7].kind, errs[7].kind)
    assert.are.equal("ValueError", errs[7].python)
    assert.are.equal("square", errs[7].stage)
    assert.are.equal(0, errs[7].shard)
    assert.are.equal("value", errs[11].kind)
    assert.are.equal(1, errs[11].shard)
    assert.are.same({ count = 3, items = 30, failures = 2 },
                    { count = info.count, items = info.items, failures = info.failures })
    assert.are.same({ 0, 1 }, info.failed_shards)
  end)

  it("writes a manifest: inputs hash, item counts, failures with kinds", function()
    local p = square_pipeline(backend)
    local inputs = numbers(8)
    p:map(inputs, { shard = { index = 0, count = 2 }, out = dir })
    local text = slurp(dir .. "/shard-0-of-2.jsonl")
    local h = shard.decode(text:match("^[^\n]*"))
    assert.are.equal(shard.FORMAT, h.format)
    assert.are.same({ 0, 2, 4, 8 }, { h.index, h.count, h.items, h.items_total })
    assert.are.equal(shard.hash(inputs), h.inputs_sha256)
    assert.are.same({ { item = 7, kind = "guest", stage = "square" } }, h.failures)
    local lines = 0
    for _ in text:gmatch("\n") do lines = lines + 1 end
    assert.are.equal(5, lines)
    -- nothing but the file itself is left behind (the temporary is renamed)
    local code, out = run("ls -A " .. q(dir))
    assert.are.equal(0, code)
    assert.are.equal("shard-0-of-2.jsonl\n", out)
  end)

  it("skips a shard already complete for the same inputs", function()
    local p = square_pipeline(backend)
    local inputs = numbers(12)
    p:map(inputs, { shard = { index = 0, count = 3 }, out = dir })
    local before = slurp(dir .. "/shard-0-of-3.jsonl")
    local calls = 0
    local outs, errs, info = p:map(inputs, { shard = { index = 0, count = 3 }, out = dir,
                                             on_progress = function() calls = calls + 1 end })
    assert.is_true(info.skipped)
    assert.are.equal(0, calls)
    assert.are.equal(before, slurp(dir .. "/shard-0-of-3.jsonl"))
    assert.are.equal(16, outs[4])
    assert.is_nil(outs[2])
    assert.are.equal("guest", errs[7].kind)
  end)

  it("redoes its own shard when its file is corrupt", function()
    local p = square_pipeline(backend)
    local inputs = numbers(12)
    p:map(inputs, { shard = { index = 0, count = 2 }, out = dir })
    local path = dir .. "/shard-0-of-2.jsonl"
    local good = slurp(path)
    spit(path, good:gsub('"value":9}', '"value":10}'))
    local outs, _, info = p:map(inputs, { shard = { index = 0, count = 2 }, out = dir })
    assert.is_false(info.skipped)
    assert.are.equal(9, outs[3])
    assert.are.equal(good, slurp(path))
  end)

  it("refuses to write beside a shard of other inputs, another pipeline or count", function()
    local p = square_pipeline(backend)
    p:map(numbers(12), { shard = { index = 0, count = 3 }, out = dir })
    local other = numbers(12)
    other[12] = 13
    local e = err_of(p.map, p, other, { shard = { index = 1, count = 3 }, out = dir })
    assert.are.equal("mismatched_shard", e.kind)
    assert.are.same({ 0 }, e.shards)
    -- not even over its own slot
    e = err_of(p.map, p, other, { shard = { index = 0, count = 3 }, out = dir })
    assert.are.equal("mismatched_shard", e.kind)
    e = err_of(p.map, p, numbers(12), { shard = { index = 0, count = 4 }, out = dir })
    assert.are.equal("mismatched_shard", e.kind)
    local p2 = sandbox.pipeline({ backend = backend })
      :stage("square", { code = SQUARE .. "\n# changed\n", entry = "run" })
    e = err_of(p2.map, p2, numbers(12), { shard = { index = 1, count = 3 }, out = dir })
    assert.are.equal("mismatched_shard", e.kind)
    assert.is_nil(slurp(dir .. "/shard-1-of-3.jsonl"))
  end)

  it("refuses bad shard and out options", function()
    local p = square_pipeline(backend)
    for _, s in ipairs({ { index = 4, count = 4 }, { index = -1, count = 4 },
                         { index = 0, count = 0 }, { index = 0.5, count = 2 },
                         { index = 0 }, "0/4", 3 }) do
      assert.are.equal("invalid_argument",
        err_of(p.map, p, numbers(3), { shard = s }).kind)
    end
    for _, out in ipairs({ "", 3, true }) do
      assert.are.equal("invalid_argument",
        err_of(p.map, p, numbers(3), { shard = { index = 0, count = 1 }, out = out }).kind)
    end
    assert.are.equal("invalid_argument",
      err_of(p.map, p, { 1, nil, 3 }, { shard = { index = 0, count = 1 }, out = dir }).kind)
    assert.are.equal("invalid_argument",
      err_of(p.map, p, numbers(3), { shard = { index = 0, count = 1 }, bogus = 1 }).kind)
  end)
end)

end

describe("gather", function()
  local dir, p, inputs
  setup(function() p = square_pipeline(support.backends()[1]) end)
  before_each(function()
    dir = tmpdir()
    inputs = numbers(20)
    inputs[7] = 6 -- no failures: gather exits 0
    for k = 0, 3 do p:map(inputs, { shard = { index = k, count = 4 }, out = dir }) end
  end)
  after_each(function() rm(dir) end)

  local function file(k) return dir .. "/shard-" .. k .. "-of-4.jsonl" end

  it("merges every item in order", function()
    local outs, errs, info = sandbox.gather(dir)
    for i = 1, 20 do assert.are.equal(inputs[i] * inputs[i], outs[i]) end
    assert.is_nil(next(errs))
    assert.are.equal(20, info.items)
  end)

  it("refuses a missing shard, naming it", function()
    os.remove(file(2))
    local e = err_of(sandbox.gather, dir)
    assert.are.equal("missing_shard", e.kind)
    assert.are.same({ 2 }, e.shards)
    os.remove(file(0))
    assert.are.same({ 0, 2 }, err_of(sandbox.gather, dir).shards)
  end)

  it("refuses an empty or absent folder", function()
    local empty = tmpdir()
    assert.are.equal("missing_shard", err_of(sandbox.gather, empty).kind)
    rm(empty)
    assert.are.equal("missing_shard", err_of(sandbox.gather, empty).kind)
    assert.are.equal("invalid_argument", err_of(sandbox.gather, "").kind)
    assert.are.equal("invalid_argument", err_of(sandbox.gather, 3).kind)
  end)

  local CORRUPTIONS = {
    ["truncated"] = function(s) return s:sub(1, #s - 10) end,
    ["a value changed"] = function(s) return (s:gsub('"value":36}', '"value":37}')) end,
    ["a line dropped"] = function(s) return (s:gsub('\n{"item":6,[^\n]*', "")) end,
    ["a line added"] = function(s) return s .. '{"item":21,"ok":true,"value":1}\n' end,
    ["garbage"] = function() return "\0\1\2 not json\n" end,
    ["empty"] = function() return "" end,
    ["the header edited"] = function(s) return (s:gsub('"items":5', '"items":4')) end,
    ["no header"] = function(s) return (s:gsub("^[^\n]*\n", "")) end,
  }
  for what, corrupt in pairs(CORRUPTIONS) do
    it("refuses a corrupt shard file: " .. what, function()
      spit(file(1), corrupt(slurp(file(1))))
      local e = err_of(sandbox.gather, dir)
      assert.are.equal("corrupt_shard", e.kind)
      assert.are.same({ 1 }, e.shards)
    end)
  end

  it("refuses a shard file renamed to another index", function()
    os.rename(file(1), file(2))
    local e = err_of(sandbox.gather, dir)
    assert.are.equal("corrupt_shard", e.kind)
    assert.are.same({ 2 }, e.shards)
  end)

  it("refuses a shard of other inputs", function()
    local other = numbers(20)
    other[7] = 6
    other[3] = 99
    local odir = tmpdir()
    p:map(other, { shard = { index = 3, count = 4 }, out = odir })
    os.rename(odir .. "/shard-3-of-4.jsonl", file(3))
    rm(odir)
    local e = err_of(sandbox.gather, dir)
    assert.are.equal("mismatched_shard", e.kind)
    assert.are.same({ 3 }, e.shards)
  end)

  it("refuses shards of another count in the same folder", function()
    local odir = tmpdir()
    p:map(inputs, { shard = { index = 0, count = 2 }, out = odir })
    os.rename(odir .. "/shard-0-of-2.jsonl", dir .. "/shard-0-of-2.jsonl")
    rm(odir)
    assert.are.equal("mismatched_shard", err_of(sandbox.gather, dir).kind)
  end)

  host_it("is `luaisolate gather`: every item in order, exit 0", function()
    local code, out = run(q(HOST) .. " gather " .. q(dir))
    assert.are.equal(0, code)
    local i = 0
    for line in out:gmatch("[^\n]+") do
      i = i + 1
      local rec = shard.decode(line)
      assert.are.same({ item = i, ok = true, value = inputs[i] * inputs[i] }, rec)
    end
    assert.are.equal(20, i)
    code, out = run(q(HOST) .. " gather --out " .. q(dir .. "/all.jsonl") .. " " .. q(dir))
    assert.are.equal(0, code)
    assert.are.equal("", out)
    assert.are.equal(20, select(2, slurp(dir .. "/all.jsonl"):gsub("\n", "")))
  end)

  host_it("exits 1 and writes nothing on a missing or corrupt shard", function()
    os.remove(file(3))
    local code, out = run(q(HOST) .. " gather " .. q(dir))
    assert.are.equal(1, code)
    assert.are.equal("", out)
    spit(file(3), "x\n")
    code, out = run(q(HOST) .. " gather " .. q(dir))
    assert.are.equal(1, code)
    assert.are.equal("", out)
  end)

  host_it("exits 1 when items failed, after writing them all", function()
    local fdir = tmpdir()
    for k = 0, 1 do p:map(numbers(9), { shard = { index = k, count = 2 }, out = fdir }) end
    local code, out = run(q(HOST) .. " gather " .. q(fdir))
    rm(fdir)
    assert.are.equal(1, code)
    local recs = {}
    for line in out:gmatch("[^\n]+") do recs[#recs + 1] = shard.decode(line) end
    assert.are.equal(9, #recs)
    assert.are.same({ kind = "guest", python = "ValueError", stage = "square", shard = 0 },
      { kind = recs[7].error.kind, python = recs[7].error.python,
        stage = recs[7].error.stage, shard = recs[7].error.shard })
    assert.is_false(recs[7].ok)
  end)

  host_it("waits for missing shards with --wait, then gives up", function()
    os.remove(file(0))
    local t0 = os.time()
    local code = run(q(HOST) .. " gather --wait 1 " .. q(dir))
    assert.are.equal(1, code)
    assert.is_true(os.time() - t0 >= 1)
  end)

  host_it("refuses bad usage with exit 2", function()
    for _, args in ipairs({ "", "--wait x " .. q(dir), "--wait -1 " .. q(dir), "--bogus " .. q(dir) }) do
      local code, out = run(q(HOST) .. " gather " .. args)
      assert.are.equal(2, code, args)
      assert.are.equal("", out)
    end
  end)
end)
