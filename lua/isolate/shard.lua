-- isolate.shard: one pipeline map split across many runs of the same
-- script (SPMD), with durable results and a gather that checks them.
--
--   local s = sandbox.shard()              --> {index = 2, count = 4}
--   p:map(inputs, { shard = s, out = "results" })
--   local outs, errs = sandbox.gather("results")
--
-- The shard comes from `luaisolate run --shard I/N`, Slurm's job array
-- (SLURM_ARRAY_TASK_ID with the array's count or min/max) or a Kubernetes
-- Indexed Job (JOB_COMPLETION_INDEX with ISOLATE_SHARD_COUNT or --shard);
-- every source given must agree. Item i (1-based) belongs to shard
-- (i - 1) % count: stable by index, so a rerun gets the same slice.
--
-- A shard's results are one file, DIR/shard-I-of-N.jsonl, written to a
-- temporary name, synced and renamed: a reader sees all of it or none.
-- Its first line is the manifest (the inputs' and the pipeline's SHA-256,
-- the item counts, each failure with its kind, the body's SHA-256); then
-- one line per item in index order. Values are written as exact JSON
-- (integers stay integers, floats keep every bit); a value JSON cannot
-- hold exactly (bytes that are not UTF-8, NaN, a table with mixed keys)
-- makes that item fail with kind `value`.
local core = require "isolate.core"
local errors = require "isolate.error"
local codec = require "isolate.shard_codec"

local raise = errors.raise

local M = {}

M.FORMAT = "luaisolate-shard/1"
-- How values are written and hashed (isolate.shard_codec).
M.sha256, M.hash = codec.sha256, codec.hash
M.encode, M.decode = codec.encode, codec.decode
local list_length = codec.list_length
local MAX_DIGITS = 9 -- indices and counts up to 999999999

-- ---- the shard setting ------------------------------------------------------

local function bad(fmt, ...) raise("invalid_argument", fmt, ...) end

-- A decimal of at most MAX_DIGITS digits, else nil.
local function natural(s)
  if type(s) ~= "string" or not s:match("^%d+$") or #s > MAX_DIGITS then
    return nil
  end
  return math.tointeger(tonumber(s))
end

local function check_range(index, count, from)
  if count < 1 then bad("%s: the shard count must be at least 1", from) end
  if index < 0 or index >= count then
    bad("%s: shard index %d is out of range 0..%d", from, index, count - 1)
  end
end

-- parse("I/N") -> index, count; raises invalid_argument.
function M.parse(spec)
  local i, n = tostring(spec):match("^(%d+)/(%d+)$")
  i, n = natural(i), natural(n)
  if not (i and n) then bad("--shard must be I/N, as in 0/4") end
  check_range(i, n, "--shard")
  return i, n
end

local cli_spec -- what `luaisolate run --shard` gave, if anything

-- set_cli(spec or nil): the host's --shard (checked now).
function M.set_cli(spec)
  if spec ~= nil then M.parse(spec) end
  cli_spec = spec
end

local function env_natural(env, name)
  local v = env(name)
  if v == nil then return nil end
  local n = natural(v)
  if not n then bad("%s must be a non-negative integer", name) end
  return n
end

-- Slurm sets the task id with the array's count, min, max and step.
local function slurm_source(env)
  local id = env_natural(env, "SLURM_ARRAY_TASK_ID")
  if id == nil then return nil end
  local count = env_natural(env, "SLURM_ARRAY_TASK_COUNT")
  local min = env_natural(env, "SLURM_ARRAY_TASK_MIN")
  local max = env_natural(env, "SLURM_ARRAY_TASK_MAX")
  local step = env_natural(env, "SLURM_ARRAY_TASK_STEP")
  if step ~= nil and step ~= 1 then bad("SLURM_ARRAY_TASK_STEP must be 1") end
  if (min == nil) ~= (max == nil) then
    bad("SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_MAX go together")
  end
  local index, n = id - (min or 0), count
  if min then
    if max < min or id < min or id > max then
      bad("SLURM_ARRAY_TASK_ID is outside SLURM_ARRAY_TASK_MIN..MAX")
    end
    n = max - min + 1
    if count ~= nil and count ~= n then
      bad("SLURM_ARRAY_TASK_COUNT disagrees with SLURM_ARRAY_TASK_MIN..MAX")
    end
  end
  if n == nil then
    bad("SLURM_ARRAY_TASK_ID needs SLURM_ARRAY_TASK_COUNT or MIN and MAX")
  end
  check_range(index, n, "SLURM_ARRAY_TASK_ID")
  return { from = "SLURM_ARRAY_TASK_ID", index = index, count = n }
end

-- Kubernetes gives the index only; the count is ISOLATE_SHARD_COUNT (set
-- by `luaisolate submit --kubernetes`) or the --shard given with it.
local function k8s_source(env, cli)
  local index = env_natural(env, "JOB_COMPLETION_INDEX")
  local count = env_natural(env, "ISOLATE_SHARD_COUNT")
  if index == nil then
    if count ~= nil then bad("ISOLATE_SHARD_COUNT without JOB_COMPLETION_INDEX") end
    return nil
  end
  count = count or (cli and cli.count)
  if count == nil then
    bad("JOB_COMPLETION_INDEX needs a count: ISOLATE_SHARD_COUNT or --shard")
  end
  check_range(index, count, "JOB_COMPLETION_INDEX")
  return { from = "JOB_COMPLETION_INDEX", index = index, count = count }
end

-- resolve{cli = "I/N" or nil, env = function(name) -> string or nil}
-- -> {index=, count=}; raises invalid_argument on a bad or disagreeing
-- setting. No setting at all: {index = 0, count = 1}.
function M.resolve(opts)
  local cli
  if opts.cli ~= nil then
    local i, n = M.parse(opts.cli)
    cli = { from = "--shard", index = i, count = n }
  end
  local sources = { cli, slurm_source(opts.env), k8s_source(opts.env, cli) }
  local first
  for k = 1, 3 do
    local s = sources[k]
    if s and first and (s.index ~= first.index or s.count ~= first.count) then
      bad("%s says shard %d/%d but %s says %d/%d", first.from, first.index,
          first.count, s.from, s.index, s.count)
    end
    first = first or s
  end
  if not first then return { index = 0, count = 1 } end
  return { index = first.index, count = first.count }
end

-- sandbox.shard() -> {index=, count=} of this run.
function M.shard()
  return M.resolve({ cli = cli_spec, env = os.getenv })
end

-- A shard table as map takes it, checked.
local function check_shard(s)
  if type(s) ~= "table" or math.type(s.index) ~= "integer"
     or math.type(s.count) ~= "integer" then
    bad("shard must be {index = integer, count = integer}, as sandbox.shard() gives")
  end
  check_range(s.index, s.count, "shard")
  return s
end

function M.file_name(index, count)
  return string.format("shard-%d-of-%d.jsonl", index, count)
end

-- ---- shard files ----------------------------------------------------------------

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function shard_error(kind, dir, shards, fmt, ...)
  local e = errors.new(kind, string.format(fmt, ...),
                       { dir = dir, shards = core.array(shards) })
  error(e, 3)
end

local function valid_text(s)
  if utf8.len(s) then return s end
  return (s:gsub("[\128-\255]", "?"))
end

-- The record of item i: its value, or its error (kinds kept as strings).
local function record_line(i, ok, v)
  if ok then
    local value = M.encode(v)
    if value then
      return string.format('{"item":%d,"ok":true,"value":%s}', i, value), nil
    end
    v = errors.new("value", "the result has no exact JSON form (bytes that "
                   .. "are not UTF-8, NaN or infinity, or a table with mixed keys)")
  end
  local e = { kind = tostring(v.kind), message = valid_text(tostring(v.message)),
              stage = v.stage and valid_text(tostring(v.stage)) or nil,
              python = v.python and valid_text(tostring(v.python)) or nil }
  return string.format('{"error":%s,"item":%d,"ok":false}', M.encode(e), i), e
end

-- Write text to path: a temporary file in the same folder, synced, then
-- renamed over path, and the folder synced.
local function write_atomic(dir, name, text)
  local tmp = string.format("%s/.%s.%d-%d.tmp", dir, name, os.time(),
                            math.random(0, 1 << 30))
  local f, msg = io.open(tmp, "wb")
  if not f then raise("invalid_argument", "cannot write in %s: %s", dir, msg) end
  local ok, err = f:write(text)
  ok = ok and f:close()
  if not ok then
    os.remove(tmp)
    raise("invalid_argument", "cannot write %s: %s", tmp, tostring(err))
  end
  os.execute("sync -- " .. quote(tmp))
  local renamed, rmsg = os.rename(tmp, dir .. "/" .. name)
  if not renamed then
    os.remove(tmp)
    raise("invalid_argument", "cannot rename into %s: %s", dir, rmsg)
  end
  os.execute("sync -- " .. quote(dir))
end

-- The first line of a file and its newline, or nil: a shard's manifest
-- without reading its items.
local function first_line(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local line = f:read("L")
  f:close()
  return line
end

-- The header of a shard file's text, or nil.
local function header_of(text)
  local line = text and text:match("^([^\n]*)\n")
  local h = line and M.decode(line)
  if type(h) ~= "table" or h.format ~= M.FORMAT then return nil end
  for _, k in ipairs({ "index", "count", "items", "items_total" }) do
    if math.type(h[k]) ~= "integer" then return nil end
  end
  for _, k in ipairs({ "inputs_sha256", "pipeline_sha256", "body_sha256" }) do
    if type(h[k]) ~= "string" then return nil end
  end
  if type(h.failures) ~= "table" then return nil end
  return h
end

-- The item indices of shard index/count among total items.
local function slice(index, count, total)
  local out = {}
  for i = index + 1, total, count do out[#out + 1] = i end
  return out
end

-- read(path, index, count) -> {header=, outputs=, errors=, failures=} or
-- nil and why: the file must be whole, match its own hashes and counts,
-- and hold exactly its slice's items, in order.
local function read_shard(path, index, count)
  local text = read_all(path)
  if not text then return nil, "unreadable" end
  local h = header_of(text)
  if not h then return nil, "no valid manifest" end
  if h.index ~= index or h.count ~= count then return nil, "names another shard" end
  local body = text:sub(#text:match("^[^\n]*\n") + 1)
  if M.sha256(body) ~= h.body_sha256 then return nil, "body does not match its hash" end
  local want = slice(index, count, h.items_total)
  local r = { header = h, outputs = {}, errors = {} }
  local n = 0
  for line in body:gmatch("([^\n]*)\n") do
    n = n + 1
    local rec = M.decode(line)
    if type(rec) ~= "table" or rec.item ~= want[n] then return nil, "bad item line" end
    if rec.ok == true and rec.value ~= nil then
      r.outputs[rec.item] = rec.value
    elseif rec.ok == false and type(rec.error) == "table"
           and type(rec.error.kind) == "string" then
      r.errors[rec.item] = errors.new(rec.error.kind, tostring(rec.error.message),
        { stage = rec.error.stage, python = rec.error.python, item = rec.item })
    else
      return nil, "bad item line"
    end
  end
  if n ~= #want or n ~= h.items or #body ~= #(body:match("^.*\n") or "") then
    return nil, "wrong item count"
  end
  return r
end

-- The shard files in dir: list of {name=, index=, count=}.
local function list_shards(dir)
  local p = io.popen("ls -1A -- " .. quote(dir) .. " 2>/dev/null")
  local out = {}
  for name in p:lines() do
    local i, n = name:match("^shard%-(%d+)%-of%-(%d+)%.jsonl$")
    i, n = natural(i), natural(n)
    if i and n then out[#out + 1] = { name = name, index = i, count = n } end
  end
  p:close()
  table.sort(out, function(a, b) return a.index < b.index end)
  return out
end

local function is_dir(path)
  return os.execute("test -d " .. quote(path)) == true
end

-- ---- map ----------------------------------------------------------------------

-- What the results depend on besides the inputs: each stage's name,
-- target, code and spawn options.
local function pipeline_hash(p)
  local stages = {}
  for i, st in ipairs(p.stages) do
    stages[i] = { st.name, st.target, st.code or false, st.spawn.backend or false,
                  st.spawn.imports, st.spawn.capabilities, st.spawn.limits }
  end
  return M.hash(stages)
end

-- No other shard in dir may be for other inputs, another pipeline or
-- another count: those results would be mixed with these.
local function check_neighbours(dir, want)
  for _, f in ipairs(list_shards(dir)) do
    local h = header_of(first_line(dir .. "/" .. f.name))
    if h and f.count == h.count and (h.count ~= want.count
        or h.inputs_sha256 ~= want.inputs_sha256
        or h.pipeline_sha256 ~= want.pipeline_sha256) then
      shard_error("mismatched_shard", dir, { f.index },
        "%s/%s holds results of other inputs, another pipeline or another "
        .. "shard count: use another folder", dir, f.name)
    end
  end
end

local function check_map_opts(inputs, opts)
  local rest = {}
  for k, v in pairs(opts) do rest[k] = v end
  rest.shard, rest.out = nil, nil
  local shard = opts.shard == nil and { index = 0, count = 1 } or check_shard(opts.shard)
  if opts.out ~= nil and (type(opts.out) ~= "string" or opts.out == "") then
    bad("out must be a folder name")
  end
  if type(inputs) ~= "table" or not list_length(inputs) then
    bad("inputs must be a list without holes")
  end
  return shard, rest
end

-- Run this shard's slice through map_fn and write its file.
local function run_shard(p, inputs, shard, rest, map_fn, want, dir)
  local items = slice(shard.index, shard.count, #inputs)
  local sub = {}
  for k, i in ipairs(items) do sub[k] = inputs[i] end
  local outs, errs = map_fn(p, sub, rest)
  local lines, r = {}, { outputs = {}, errors = {} }
  local failures = {}
  for k, i in ipairs(items) do
    local line, e = record_line(i, errs[k] == nil, errs[k] or outs[k])
    lines[k] = line .. "\n"
    if e then
      failures[#failures + 1] = { item = i, kind = e.kind, stage = e.stage }
      r.errors[i] = errors.new(e.kind, e.message, { stage = e.stage, python = e.python,
                                                    item = i })
    else
      r.outputs[i] = outs[k]
    end
  end
  local body = table.concat(lines)
  local header = { format = M.FORMAT, index = shard.index, count = shard.count,
                   items = #items, items_total = #inputs,
                   inputs_sha256 = want.inputs_sha256,
                   pipeline_sha256 = want.pipeline_sha256,
                   body_sha256 = M.sha256(body), failures = core.array(failures) }
  write_atomic(dir, M.file_name(shard.index, shard.count), M.encode(header) .. "\n" .. body)
  r.header = header
  return r
end

-- map(p, inputs, opts, map_fn) -> outputs, errors, info. map_fn is the
-- plain Pipeline.map. Without out: the slice only, nothing written.
function M.map(p, inputs, opts, map_fn)
  local shard, rest = check_map_opts(inputs, opts)
  local items = slice(shard.index, shard.count, #inputs)
  if opts.out == nil then
    local sub = {}
    for k, i in ipairs(items) do sub[k] = inputs[i] end
    local outs, errs = map_fn(p, sub, rest)
    local o, e = {}, {}
    for k, i in ipairs(items) do o[i], e[i] = outs[k], errs[k] end
    return o, e, { index = shard.index, count = shard.count, items = #items }
  end
  local dir = opts.out
  if not is_dir(dir) then
    os.execute("mkdir -p -- " .. quote(dir))
    if not is_dir(dir) then bad("cannot create the folder %s", dir) end
  end
  local want = { count = shard.count, inputs_sha256 = M.hash(inputs),
                 pipeline_sha256 = pipeline_hash(p) }
  check_neighbours(dir, want)
  local path = dir .. "/" .. M.file_name(shard.index, shard.count)
  local r = read_shard(path, shard.index, shard.count)
  local skipped = r ~= nil and r.header.inputs_sha256 == want.inputs_sha256
                  and r.header.pipeline_sha256 == want.pipeline_sha256
                  and r.header.items_total == #inputs
  if not skipped then r = run_shard(p, inputs, shard, rest, map_fn, want, dir) end
  return r.outputs, r.errors, { index = shard.index, count = shard.count,
    items = #items, failures = #r.header.failures, skipped = skipped, file = path }
end

-- ---- gather -------------------------------------------------------------------

local function read_all_shards(dir, files)
  local shards, corrupt, why = {}, {}, nil
  for _, f in ipairs(files) do
    local r, err = read_shard(dir .. "/" .. f.name, f.index, f.count)
    if r then
      shards[#shards + 1] = { file = f, r = r }
    else
      corrupt[#corrupt + 1] = f.index
      why = why or (f.name .. ": " .. err)
    end
  end
  if #corrupt > 0 then
    shard_error("corrupt_shard", dir, corrupt, "corrupt shard file %s/%s", dir, why)
  end
  return shards
end

local function check_same(dir, shards)
  local h1 = shards[1].r.header
  local odd = {}
  for _, s in ipairs(shards) do
    local h = s.r.header
    if h.count ~= h1.count or h.inputs_sha256 ~= h1.inputs_sha256
       or h.pipeline_sha256 ~= h1.pipeline_sha256 or h.items_total ~= h1.items_total then
      odd[#odd + 1] = s.file.index
    end
  end
  if #odd > 0 then
    shard_error("mismatched_shard", dir, odd, "%s mixes shards of other inputs, "
                .. "another pipeline or another count (shard %d differs from shard %d)",
                dir, odd[1], shards[1].file.index)
  end
  return h1
end

-- gather(dir) -> outputs, errors, info: the whole map's results in item
-- order (errors[i] for failed items), info = {count=, items=,
-- failures=, failed_shards=}. Raises missing_shard, corrupt_shard or
-- mismatched_shard (err.shards lists the shard indices).
function M.gather(dir)
  if type(dir) ~= "string" or dir == "" then bad("gather expects a folder name") end
  if not is_dir(dir) then shard_error("missing_shard", dir, {}, "no folder %s", dir) end
  local files = list_shards(dir)
  if #files == 0 then shard_error("missing_shard", dir, {}, "no shard file in %s", dir) end
  local shards = read_all_shards(dir, files)
  local h = check_same(dir, shards)
  local have, missing = {}, {}
  for _, s in ipairs(shards) do have[s.file.index] = true end
  for k = 0, h.count - 1 do
    if not have[k] then missing[#missing + 1] = k end
  end
  if #missing > 0 then
    shard_error("missing_shard", dir, missing, "%d of %d shards missing in %s (first: %d)",
                #missing, h.count, dir, missing[1])
  end
  local outputs, errs, seen, failed = {}, {}, {}, {}
  for _, s in ipairs(shards) do
    for i, v in pairs(s.r.outputs) do outputs[i], seen[i] = v, (seen[i] or 0) + 1 end
    for i, e in pairs(s.r.errors) do
      e.shard = s.file.index
      errs[i], seen[i] = e, (seen[i] or 0) + 1
    end
    if #s.r.header.failures > 0 then failed[#failed + 1] = s.file.index end
  end
  local nfail = 0
  for i = 1, h.items_total do
    if seen[i] ~= 1 then
      shard_error("corrupt_shard", dir, { (i - 1) % h.count },
                  "item %d is present %d times", i, seen[i] or 0)
    end
    if errs[i] then nfail = nfail + 1 end
  end
  return outputs, errs, { count = h.count, items = h.items_total, failures = nfail,
                          failed_shards = core.array(failed),
                          inputs_sha256 = h.inputs_sha256 }
end

return M
