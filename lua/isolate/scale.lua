-- isolate.scale: the `gather` and `submit` commands. A sharded map is run
-- by the cluster's own scheduler: a Slurm job array (one task per shard)
-- with a gather job after it, or a Kubernetes Indexed Job with a gather
-- Job. Nothing here schedules, places or retries: Slurm and Kubernetes do.
--
--   luaisolate submit --slurm --shards 4 --out results map.lua
--   luaisolate submit --kubernetes --image IMG --shards 4 --dry-run map.lua
--   luaisolate gather --out results/results.jsonl results
--
-- Every shard task runs `luaisolate run --shard I/N script [args]` with
-- ISOLATE_SHARD_OUT set to the results folder; the script passes
-- { shard = sandbox.shard(), out = os.getenv("ISOLATE_SHARD_OUT") } to
-- pipeline:map (isolate.shard), so a resubmission redoes only the shards
-- whose file is missing.
local cli = require "isolate.cli"
local shard = require "isolate.shard"
local errors = require "isolate.error"

local M = {}

local PROG = "luaisolate"
local EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
local MAX_SHARDS = 100000

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function say(fmt, ...)
  io.stderr:write(PROG, ": ", string.format(fmt, ...), "\n")
end

-- An absolute path for name (relative to the current folder).
local function absolute(name)
  if name:sub(1, 1) == "/" then return name end
  local p = io.popen("pwd")
  local cwd = p:read("l")
  p:close()
  return cwd .. "/" .. name
end

-- ---- gather -------------------------------------------------------------------

function M.gather_parser()
  local p = cli.new_parser(PROG .. " gather",
    "Merge the shard files of a sharded map (DIR/shard-I-of-N.jsonl) in item "
    .. "order, after checking that every shard is there, whole, and from the "
    .. "same inputs and pipeline, and every item present exactly once. Writes "
    .. "one JSON line per item: {\"item\":i,\"ok\":true,\"value\":v} or "
    .. "{\"item\":i,\"ok\":false,\"error\":{\"kind\":k,...}}.",
    "Exit status: 0 when every item succeeded; 1 when a shard is missing, "
    .. "corrupt or from other inputs (nothing is written), or some items failed "
    .. "(all are written, the failures listed on stderr); 2 on a usage error.")
  p:argument("dir", "The results folder."):argname("DIR")
  p:option("--out", "Write the merged lines to FILE (atomically) instead of "
           .. "standard output."):argname("FILE")
  p:option("--wait", "Wait up to SECONDS for missing shards to appear "
           .. "(a gather Job started beside the shards)."):argname("SECONDS")
  return p
end

local function sleep(s) os.execute("sleep " .. s) end

-- gather, retrying while shards are missing and the wait allows.
local function gather_waiting(dir, wait)
  local deadline = os.time() + wait
  while true do
    local ok, outs, errs, info = pcall(shard.gather, dir)
    if ok then return outs, errs, info end
    if not errors.is(outs, "missing_shard") or os.time() >= deadline then
      error(outs, 0)
    end
    sleep(math.min(5, math.max(1, deadline - os.time())))
  end
end

local function merged_lines(outs, errs, info)
  local lines = {}
  for i = 1, info.items do
    local e = errs[i]
    if e then
      lines[i] = string.format('{"error":%s,"item":%d,"ok":false}',
        shard.encode({ kind = e.kind, message = e.message, stage = e.stage,
                       python = e.python, shard = e.shard }), i)
    else
      lines[i] = string.format('{"item":%d,"ok":true,"value":%s}', i,
                               shard.encode(outs[i]))
    end
  end
  return lines
end

local function write_out(name, text)
  local tmp = name .. ".tmp"
  local f, msg = io.open(tmp, "wb")
  if not f then return nil, msg end
  local ok, err = f:write(text)
  if ok then ok, err = f:close() else f:close() end
  if ok then ok, err = os.rename(tmp, name) end
  if not ok then os.remove(tmp) end
  return ok, err
end

-- gather(argv) -> exit status; argv is what follows `gather`.
function M.gather(argv)
  local opts, status = cli.parse(M.gather_parser(), argv, function(a)
    if a.wait and not (tonumber(a.wait) and tonumber(a.wait) >= 0) then
      return "--wait must be a number of seconds"
    end
  end)
  if not opts then return status end
  local ok, outs, errs, info = pcall(gather_waiting, opts.dir, tonumber(opts.wait) or 0)
  if not ok then
    if not errors.is(outs) then error(outs, 0) end
    say("gather: %s: %s (shards: %s)", outs.kind, outs.message,
        table.concat(outs.shards or {}, ","))
    return EXIT_FAILED
  end
  local text = table.concat(merged_lines(outs, errs, info), "\n")
  text = text ~= "" and text .. "\n" or ""
  if opts.out then
    local wrote, msg = write_out(opts.out, text)
    if not wrote then say("gather: cannot write %s: %s", opts.out, msg); return EXIT_FAILED end
  else
    io.stdout:write(text)
  end
  for i = 1, info.items do
    local e = errs[i]
    if e then say("gather: shard %d: item %d failed: %s", e.shard, i, e.kind) end
  end
  say("gather: %d items from %d shards, %d failed", info.items, info.count, info.failures)
  return info.failures == 0 and EXIT_OK or EXIT_FAILED
end

-- ---- submit -------------------------------------------------------------------

function M.submit_parser()
  local p = cli.new_parser(PROG .. " submit",
    "Run script as N shards on a cluster: a Slurm job array (--slurm) with a "
    .. "gather job after it, or a Kubernetes Indexed Job (--kubernetes) with a "
    .. "gather Job. Each shard runs `luaisolate run --shard I/N script [args]` "
    .. "with ISOLATE_SHARD_OUT set to the results folder. --dry-run prints what "
    .. "would be submitted.",
    "Exit status: 0 when submitted (or printed), 1 when the scheduler refused, "
    .. "2 on a usage error.")
  p:argument("script", "The Lua script every shard runs."):argname("script")
  p:argument("args", "Its arguments (put -- before the script when one "
             .. "starts with -)."):args("*")
  p:flag("--slurm", "Submit to Slurm with sbatch.")
  p:flag("--kubernetes", "Emit (or apply with kubectl) an Indexed Job.")
  p:option("--shards", "N: how many shards (array tasks, Job completions)."):argname("N")
  p:option("--out", "The results folder (Slurm: a path every node sees; "
           .. "default results).", "results"):argname("DIR")
  p:flag("--dry-run", "Print the job scripts or manifests; submit nothing.")
  p:option("--partition", "Slurm partition."):argname("P")
  p:option("--time", "Slurm time limit per task, as sbatch --time."):argname("T")
  p:option("--cpus-per-task", "Slurm CPUs per task."):argname("C")
  p:option("--mem", "Slurm memory per task, as sbatch --mem."):argname("M")
  p:option("--program", "The luaisolate the tasks run (default: this one)."):argname("PATH")
  p:option("--image", "Kubernetes: the container image (see Containerfile)."):argname("IMAGE")
  p:option("--namespace", "Kubernetes namespace.", "default"):argname("NS")
  p:option("--name", "Job name (default: from the script's name)."):argname("NAME")
  p:option("--parallelism", "Kubernetes: shards running at once (default N)."):argname("P")
  p:option("--backoff-limit", "Kubernetes: pod failures before the Job fails "
           .. "(default N)."):argname("B")
  p:option("--claim", "Kubernetes: an existing ReadWriteMany PersistentVolumeClaim "
           .. "for the results (default: one is created)."):argname("PVC")
  p:option("--policy", "Kubernetes: a policy file mounted beside the script "
           .. "(repeatable)."):argname("FILE"):count("*")
  return p
end

local function positive(s)
  local n = math.tointeger(tonumber(s or ""))
  return n and n >= 1 and n <= MAX_SHARDS and tostring(n):match("^%d+$") == s and n or nil
end

-- A DNS-1123 label from s (Kubernetes names, Slurm job names).
local function job_name(s)
  local n = s:gsub("^.*/", ""):gsub("%.lua$", ""):lower():gsub("[^a-z0-9%-]", "-")
  n = n:gsub("^%-+", ""):sub(1, 40):gsub("%-+$", "")
  return n ~= "" and n or "map"
end

local SLURM_VALUE = "^[%w%.%-_:/+=,]+$" -- what may go into an #SBATCH line

local function check_submit(a)
  if a.slurm == a.kubernetes then return "give exactly one of --slurm and --kubernetes" end
  a.n = positive(a.shards)
  if not a.n then return "--shards must be an integer from 1 to " .. MAX_SHARDS end
  for _, k in ipairs({ "partition", "time", "cpus_per_task", "mem" }) do
    if a[k] and not a.slurm then return "--" .. k:gsub("_", "-") .. " goes with --slurm" end
    if a[k] and not a[k]:match(SLURM_VALUE) then
      return "--" .. k:gsub("_", "-") .. " has a character sbatch would not take"
    end
  end
  for _, k in ipairs({ "image", "parallelism", "backoff_limit", "claim" }) do
    if a[k] and not a.kubernetes then return "--" .. k:gsub("_", "-") .. " goes with --kubernetes" end
  end
  if #a.policy > 0 and not a.kubernetes then return "--policy goes with --kubernetes" end
  if a.kubernetes and not a.image then return "--kubernetes needs --image" end
  if a.name and job_name(a.name) ~= a.name then
    return "--name must be lower-case letters, digits and -"
  end
  if a.out:find("[\n%%]") then return "--out may not hold a newline or %" end
end

-- This program: $PPID of the shell io.popen starts is this process.
local function this_program()
  local p = io.popen("readlink -- /proc/$PPID/exe")
  local exe = p:read("l")
  p:close()
  return exe
end

-- ---- Slurm ----------------------------------------------------------------------

-- The two batch scripts: the array (one task per shard) and the gather.
function M.slurm_scripts(a)
  local out, name = absolute(a.out), a.name or job_name(a.script)
  local prog = a.program or this_program()
  local cmd = { quote(prog), "run", "--shard", '"${SLURM_ARRAY_TASK_ID}/' .. a.n .. '"',
                quote(absolute(a.script)) }
  for _, x in ipairs(a.args) do cmd[#cmd + 1] = quote(x) end
  local head = { "#!/bin/bash", "#SBATCH --job-name=" .. name }
  for _, k in ipairs({ "partition", "time", "cpus_per_task", "mem" }) do
    if a[k] then head[#head + 1] = "#SBATCH --" .. k:gsub("_", "-") .. "=" .. a[k] end
  end
  local array = table.move(head, 1, #head, 1, {})
  for _, l in ipairs({
    "#SBATCH --array=0-" .. (a.n - 1),
    "#SBATCH --requeue",
    "#SBATCH --output=" .. out .. "/slurm-%A_%a.log",
    "# one task per shard: a task whose shard file is already complete for",
    "# the same inputs skips it, so resubmitting redoes only what is missing",
    "set -eu",
    "cd " .. quote(absolute(".")),
    "export ISOLATE_SHARD_OUT=" .. quote(out),
    "exec " .. table.concat(cmd, " "),
  }) do array[#array + 1] = l end
  local gather = table.move(head, 1, #head, 1, {})
  gather[2] = "#SBATCH --job-name=" .. name .. "-gather"
  for _, l in ipairs({
    "#SBATCH --kill-on-invalid-dep=yes",
    "#SBATCH --output=" .. out .. "/slurm-gather-%j.log",
    "# submitted with --dependency=afterok:<the array job>",
    "set -eu",
    "exec " .. quote(prog) .. " gather --out " .. quote(out .. "/results.jsonl")
      .. " " .. quote(out),
  }) do gather[#gather + 1] = l end
  return table.concat(array, "\n") .. "\n", table.concat(gather, "\n") .. "\n"
end

-- sbatch --parsable file [extra] -> job id, or nil and what sbatch said.
local function sbatch(file, extra)
  local p = io.popen("sbatch --parsable " .. (extra or "") .. " " .. quote(file) .. " 2>&1")
  local text = p:read("a")
  local ok = p:close()
  local id = text:match("^(%d+)")
  if not ok or not id then return nil, text end
  return id
end

local function submit_slurm(a)
  local array, gather = M.slurm_scripts(a)
  if a.dry_run then
    io.stdout:write("# array job: sbatch --parsable\n", array,
                    "# gather job: sbatch --parsable --dependency=afterok:<array job>\n",
                    gather)
    return EXIT_OK
  end
  local out = absolute(a.out)
  os.execute("mkdir -p -- " .. quote(out))
  local files = { out .. "/array.sbatch", out .. "/gather.sbatch" }
  for k, text in ipairs({ array, gather }) do
    local ok, msg = write_out(files[k], text)
    if not ok then say("submit: cannot write %s: %s", files[k], msg); return EXIT_FAILED end
  end
  local id, msg = sbatch(files[1])
  if not id then say("submit: sbatch refused the array: %s", msg); return EXIT_FAILED end
  local gid, gmsg = sbatch(files[2], "--dependency=afterok:" .. id)
  if not gid then say("submit: sbatch refused the gather: %s", gmsg); return EXIT_FAILED end
  io.stdout:write(string.format("array %s\ngather %s\n", id, gid))
  return EXIT_OK
end

-- ---- Kubernetes ---------------------------------------------------------------

-- A small YAML writer: maps with keys in the given order ({k, v} pairs),
-- lists, and every string double-quoted with JSON escapes (valid YAML).
local ORDERED = {}

local function ordered(...) return setmetatable({ ... }, ORDERED) end

local function scalar(v)
  if type(v) == "string" then return shard.encode(v) end
  return tostring(v)
end

local yaml

local function yaml_item(key, v, indent, out)
  local pad = string.rep("  ", indent)
  if type(v) == "table" and next(v) ~= nil then
    out[#out + 1] = pad .. key
    yaml(v, indent + 1, out)
  elseif type(v) == "table" then
    out[#out + 1] = pad .. key .. " " .. (getmetatable(v) == ORDERED and "{}" or "[]")
  else
    out[#out + 1] = pad .. key .. " " .. scalar(v)
  end
end

yaml = function(v, indent, out)
  if getmetatable(v) == ORDERED then
    for _, kv in ipairs(v) do yaml_item(kv[1] .. ":", kv[2], indent, out) end
  else
    for _, x in ipairs(v) do
      local sub = {}
      if type(x) == "table" then
        yaml(x, indent + 1, sub)
        sub[1] = string.rep("  ", indent) .. "- " .. sub[1]:gsub("^%s+", "")
        table.move(sub, 1, #sub, #out + 1, out)
      else
        out[#out + 1] = string.rep("  ", indent) .. "- " .. scalar(x)
      end
    end
  end
end

function M.to_yaml(docs)
  local parts = {}
  for i, d in ipairs(docs) do
    local out = {}
    yaml(d, 0, out)
    parts[i] = "---\n" .. table.concat(out, "\n") .. "\n"
  end
  return table.concat(parts)
end

local function kv(k, v) return { k, v } end

local function read_file(name)
  local f, msg = io.open(name, "rb")
  if not f then return nil, msg end
  local s = f:read("a")
  f:close()
  return s
end

local function basename(s) return (s:gsub("^.*/", "")) end

-- The script and the policies, as ConfigMap data (keys are file names).
local function config_data(a)
  local data, seen = {}, {}
  for _, file in ipairs({ a.script, table.unpack(a.policy) }) do
    local key = basename(file)
    if not key:match("^[%w%._%-]+$") or seen[key] then
      return nil, string.format("%s: a file name twice, or one a ConfigMap cannot hold", file)
    end
    local text, msg = read_file(file)
    if not text then return nil, msg end
    if not utf8.len(text) then return nil, file .. ": not UTF-8 text" end
    seen[key] = true
    data[#data + 1] = kv(key, text)
  end
  return ordered(table.unpack(data))
end

-- Every object is labelled with the job's name, to list or delete them.
local function meta(name, ns, job)
  return ordered(kv("name", name), kv("namespace", ns),
                 kv("labels", ordered(kv("app.kubernetes.io/name", "luaisolate"),
                                      kv("luaisolate/job", job))))
end

-- The pod's security context: nothing beyond the runtime's defaults; the
-- README ("Scale out") says what each layer needs on top.
local function container_security()
  return ordered(kv("allowPrivilegeEscalation", false),
                 kv("capabilities", ordered(kv("drop", { "ALL" }))),
                 kv("seccompProfile", ordered(kv("type", "RuntimeDefault"))))
end

local function pod_spec(a, name, command, env)
  local claim = a.claim or (name .. "-results")
  return ordered(
    kv("restartPolicy", "Never"),
    kv("containers", { ordered(
      kv("name", "shard"), kv("image", a.image), kv("workingDir", "/job"),
      kv("command", command), kv("env", env),
      kv("securityContext", container_security()),
      kv("volumeMounts", {
        ordered(kv("name", "job"), kv("mountPath", "/job"), kv("readOnly", true)),
        ordered(kv("name", "results"), kv("mountPath", "/results")) })) }),
    kv("volumes", {
      ordered(kv("name", "job"), kv("configMap", ordered(kv("name", name .. "-job")))),
      ordered(kv("name", "results"), kv("persistentVolumeClaim",
        ordered(kv("claimName", claim)))) }))
end

-- The manifests: ConfigMap, PVC (unless --claim), Indexed Job, gather Job.
function M.kubernetes_manifests(a)
  local name, ns = a.name or job_name(a.script), a.namespace
  local data, msg = config_data(a)
  if not data then return nil, msg end
  local docs = { ordered(kv("apiVersion", "v1"), kv("kind", "ConfigMap"),
                         kv("metadata", meta(name .. "-job", ns, name)), kv("data", data)) }
  if not a.claim then
    docs[#docs + 1] = ordered(kv("apiVersion", "v1"), kv("kind", "PersistentVolumeClaim"),
      kv("metadata", meta(name .. "-results", ns, name)),
      kv("spec", ordered(kv("accessModes", { "ReadWriteMany" }),
        kv("resources", ordered(kv("requests", ordered(kv("storage", "1Gi"))))))))
  end
  local command = { "luaisolate", "run", "--shard",
                    "$(JOB_COMPLETION_INDEX)/" .. a.n, "/job/" .. basename(a.script) }
  for _, x in ipairs(a.args) do command[#command + 1] = x end
  local env = { ordered(kv("name", "ISOLATE_SHARD_COUNT"), kv("value", tostring(a.n))),
                ordered(kv("name", "ISOLATE_SHARD_OUT"), kv("value", "/results")) }
  docs[#docs + 1] = ordered(kv("apiVersion", "batch/v1"), kv("kind", "Job"),
    kv("metadata", meta(name, ns, name)),
    kv("spec", ordered(
      kv("completionMode", "Indexed"), kv("completions", a.n),
      kv("parallelism", positive(a.parallelism) or a.n),
      kv("backoffLimit", math.tointeger(tonumber(a.backoff_limit)) or a.n),
      kv("template", ordered(kv("metadata", ordered(kv("labels",
          ordered(kv("luaisolate/job", name))))),
        kv("spec", pod_spec(a, name, command, env)))))))
  docs[#docs + 1] = ordered(kv("apiVersion", "batch/v1"), kv("kind", "Job"),
    kv("metadata", meta(name .. "-gather", ns, name)),
    kv("spec", ordered(kv("completions", 1), kv("backoffLimit", 2),
      kv("template", ordered(kv("spec", pod_spec(a, name,
        { "luaisolate", "gather", "--wait", "86400", "--out",
          "/results/results.jsonl", "/results" }, {})))))))
  return M.to_yaml(docs)
end

local function has_cluster()
  return os.execute("kubectl config current-context >/dev/null 2>&1") == true
end

local function submit_kubernetes(a)
  if a.backoff_limit and not math.tointeger(tonumber(a.backoff_limit)) then
    say("submit: --backoff-limit must be an integer"); return EXIT_USAGE
  end
  if a.parallelism and not positive(a.parallelism) then
    say("submit: --parallelism must be a positive integer"); return EXIT_USAGE
  end
  local text, msg = M.kubernetes_manifests(a)
  if not text then say("submit: %s", msg); return EXIT_FAILED end
  if a.dry_run or not has_cluster() then
    if not a.dry_run then say("submit: no kubectl cluster configured: printing the Job") end
    io.stdout:write(text)
    return EXIT_OK
  end
  local p = io.popen("kubectl apply -f - ", "w")
  p:write(text)
  return p:close() and EXIT_OK or EXIT_FAILED
end

-- submit(argv) -> exit status; argv is what follows `submit`.
function M.submit(argv)
  local a, status = cli.parse(M.submit_parser(), argv, check_submit)
  if not a then return status end
  if a.slurm then return submit_slurm(a) end
  return submit_kubernetes(a)
end

return M
