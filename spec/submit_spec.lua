-- `luaisolate submit`, offline: the Slurm batch scripts (--dry-run), run
-- here by bash as Slurm would run them; the Kubernetes manifests, read
-- back by a real YAML parser (PyYAML) and checked field by field; and
-- every bad option refused as a usage error. (kubectl's client-side
-- validation needs an API server for the OpenAPI schema, so it cannot run
-- offline: README, "Scale out".)
local shard = require "isolate.shard"
local support = require "support"

local q = support.quote
local HOST = os.getenv("ISOLATE_HOST")
if not HOST then
  print("# submit_spec: skipped, ISOLATE_HOST (path of the luaisolate binary) is not set")
  return
end
local SRC = os.getenv("ISOLATE_SOURCE_DIR") or "."
local MAP = SRC .. "/spec/scale/map.lua"
local PYTHON = "/usr/bin/python3" -- Debian's, with python3-yaml (scripts/setup.sh)

local slurp = support.slurp

local spit = support.write

local function run(cmd, input)
  local errf, inf = os.tmpname(), os.tmpname()
  spit(inf, input or "")
  local p = io.popen(cmd .. " <" .. q(inf) .. " 2>" .. q(errf))
  local out = p:read("a")
  local _, _, code = p:close()
  local err = slurp(errf)
  os.remove(errf)
  os.remove(inf)
  return code, out, err
end

local tmpdir = support.tmpdir

local function submit(args)
  return run("KUBECONFIG=/nonexistent " .. q(HOST) .. " submit " .. args)
end

describe("luaisolate submit --slurm --dry-run", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() os.execute("rm -rf -- " .. q(dir)) end)

  local function scripts(args)
    local code, out, err = submit("--slurm --dry-run " .. args)
    assert.are.equal(0, code, err)
    local array, gather = out:match("^# array job: sbatch %-%-parsable\n(.-)"
      .. "# gather job: sbatch %-%-parsable %-%-dependency=afterok:<array job>\n(.*)$")
    assert.is_truthy(array, out)
    return array, gather
  end

  it("prints a job array of one task per shard and a gather job", function()
    local array, gather = scripts("--shards 4 --out " .. q(dir .. "/out") .. " --partition short"
      .. " --time 0:10:00 --cpus-per-task 2 --mem 1G --program /opt/bin/luaisolate "
      .. q(MAP) .. " process " .. q("it's"))
    local lines = {}
    for l in array:gmatch("[^\n]+") do lines[l] = true end
    for _, want in ipairs({ "#!/bin/bash", "#SBATCH --job-name=map", "#SBATCH --array=0-3",
        "#SBATCH --requeue", "#SBATCH --partition=short", "#SBATCH --time=0:10:00",
        "#SBATCH --cpus-per-task=2", "#SBATCH --mem=1G",
        "#SBATCH --output=" .. dir .. "/out/slurm-%A_%a.log",
        "export ISOLATE_SHARD_OUT=" .. q(dir .. "/out"),
        "exec '/opt/bin/luaisolate' run --shard \"${SLURM_ARRAY_TASK_ID}/4\" "
          .. q(MAP) .. " 'process' " .. q("it's") }) do
      assert.is_true(lines[want], want)
    end
    assert.is_truthy(gather:find("#SBATCH --kill-on-invalid-dep=yes\n", 1, true))
    assert.is_truthy(gather:find("#SBATCH --job-name=map-gather\n", 1, true))
    assert.is_truthy(gather:find("exec '/opt/bin/luaisolate' gather --out "
      .. q(dir .. "/out/results.jsonl") .. " " .. q(dir .. "/out") .. "\n", 1, true))
    assert.is_nil(slurp(dir .. "/out/array.sbatch")) -- nothing written, nothing submitted
  end)

  it("gives scripts that run the map when bash runs them as Slurm would", function()
    local out = dir .. "/out"
    local array, gather = scripts("--shards 3 --out " .. q(out) .. " --program " .. q(HOST)
                                  .. " " .. q(MAP) .. " process")
    spit(dir .. "/array.sh", array)
    spit(dir .. "/gather.sh", gather)
    os.execute("mkdir -p " .. q(out))
    for k = 0, 2 do
      local code, stdout, err = run(string.format("SLURM_ARRAY_TASK_ID=%d SLURM_ARRAY_TASK_COUNT=3 "
        .. "SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_MAX=2 bash %s", k, q(dir .. "/array.sh")))
      assert.are.equal(0, code, err)
      assert.are.equal(string.format("shard %d/3 backend=process items=%d failures=0 skipped=false\n",
                                     k, k < 2 and 67 or 66), stdout)
    end
    local code, _, err = run("bash " .. q(dir .. "/gather.sh"))
    assert.are.equal(0, code, err)
    local n = 0
    for line in slurp(out .. "/results.jsonl"):gmatch("[^\n]+") do
      n = n + 1
      assert.are.same({ item = n, ok = true, value = { x = n, square = n * n, text = tostring(n) } },
                      shard.decode(line))
    end
    assert.are.equal(200, n)
  end)

  it("refuses a task whose shard the environment contradicts", function()
    local array = scripts("--shards 3 --out " .. q(dir .. "/out") .. " --program " .. q(HOST)
                          .. " " .. q(MAP) .. " process")
    spit(dir .. "/array.sh", array)
    os.execute("mkdir -p " .. q(dir .. "/out"))
    local code = run("SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=4 bash " .. q(dir .. "/array.sh"))
    assert.are.equal(1, code)
    assert.is_nil(slurp(dir .. "/out/shard-1-of-3.jsonl"))
  end)
end)

-- The manifests as data: PyYAML reads them, JSON carries them over.
local function manifests(args)
  local code, out, err = submit("--kubernetes --dry-run " .. args)
  assert.are.equal(0, code, err)
  local c2, json, e2 = run(PYTHON .. " -c " .. q("import sys, yaml, json; "
    .. "print(json.dumps(list(yaml.safe_load_all(sys.stdin))))"), out)
  assert.are.equal(0, c2, e2)
  local docs = assert(shard.decode(json:gsub("\n$", "")))
  local by = {}
  for _, d in ipairs(docs) do by[d.kind .. "/" .. d.metadata.name] = d end
  return docs, by
end

describe("luaisolate submit --kubernetes", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() os.execute("rm -rf -- " .. q(dir)) end)

  it("emits a ConfigMap, a results claim, an Indexed Job and a gather Job", function()
    spit(dir .. "/strict.lua", "return { extends = 'compute-only' }\n")
    local docs, by = manifests("--image registry.example/luaisolate:1 --shards 5 "
      .. "--namespace batch --policy " .. q(dir .. "/strict.lua") .. " " .. q(MAP) .. " process")
    assert.are.equal(4, #docs)
    for _, d in ipairs(docs) do
      assert.are.equal("batch", d.metadata.namespace)
      assert.are.equal("map", d.metadata.labels["luaisolate/job"])
      assert.is_truthy(d.metadata.name:match("^[a-z0-9][-a-z0-9]*[a-z0-9]$"))
      assert.is_true(#d.metadata.name <= 63)
    end
    local cm = by["ConfigMap/map-job"]
    assert.are.equal("v1", cm.apiVersion)
    assert.are.equal(slurp(MAP), cm.data["map.lua"])
    assert.are.equal("return { extends = 'compute-only' }\n", cm.data["strict.lua"])
    local pvc = by["PersistentVolumeClaim/map-results"]
    assert.are.same({ "ReadWriteMany" }, pvc.spec.accessModes)

    local job = by["Job/map"]
    assert.are.equal("batch/v1", job.apiVersion)
    assert.are.same({ "Indexed", 5, 5, 5 }, { job.spec.completionMode, job.spec.completions,
                                              job.spec.parallelism, job.spec.backoffLimit })
    local pod = job.spec.template.spec
    assert.are.equal("Never", pod.restartPolicy)
    local c = pod.containers[1]
    assert.are.equal("registry.example/luaisolate:1", c.image)
    assert.are.same({ "luaisolate", "run", "--shard", "$(JOB_COMPLETION_INDEX)/5",
                      "/job/map.lua", "process" }, c.command)
    assert.are.same({ { name = "ISOLATE_SHARD_COUNT", value = "5" },
                      { name = "ISOLATE_SHARD_OUT", value = "/results" } }, c.env)
    assert.are.equal("/job", c.workingDir)
    assert.are.same({ { name = "job", mountPath = "/job", readOnly = true },
                      { name = "results", mountPath = "/results" } }, c.volumeMounts)
    assert.are.same({ { name = "job", configMap = { name = "map-job" } },
                      { name = "results", persistentVolumeClaim = { claimName = "map-results" } } },
                    pod.volumes)
    assert.are.same({ "ALL" }, c.securityContext.capabilities.drop)
    assert.is_false(c.securityContext.allowPrivilegeEscalation)

    local g = by["Job/map-gather"]
    assert.are.equal(1, g.spec.completions)
    local gc = g.spec.template.spec.containers[1]
    assert.are.same({ "luaisolate", "gather", "--wait", "86400", "--out",
                      "/results/results.jsonl", "/results" }, gc.command)
    assert.are.same(pod.volumes, g.spec.template.spec.volumes)
  end)

  it("takes --claim, --name, --parallelism and --backoff-limit", function()
    local docs, by = manifests("--image i --shards 8 --claim shared --name grade "
                               .. "--parallelism 3 --backoff-limit 10 " .. q(MAP))
    assert.are.equal(3, #docs) -- no claim created
    local job = by["Job/grade"]
    assert.are.same({ 8, 3, 10 }, { job.spec.completions, job.spec.parallelism,
                                    job.spec.backoffLimit })
    assert.are.equal("shared", job.spec.template.spec.volumes[2].persistentVolumeClaim.claimName)
    assert.is_truthy(by["ConfigMap/grade-job"])
    assert.is_truthy(by["Job/grade-gather"])
    assert.are.same({ "luaisolate", "run", "--shard", "$(JOB_COMPLETION_INDEX)/8",
                      "/job/map.lua" }, job.spec.template.spec.containers[1].command)
  end)

  it("prints the manifests when no cluster is configured", function()
    local code, out, err = submit("--kubernetes --image i --shards 2 " .. q(MAP))
    assert.are.equal(0, code, err)
    assert.is_truthy(out:find("completionMode: \"Indexed\"", 1, true))
  end)

  it("refuses files a ConfigMap cannot hold", function()
    spit(dir .. "/bin.lua", "\255\254")
    local code, out = submit("--kubernetes --dry-run --image i --shards 2 " .. q(dir .. "/bin.lua"))
    assert.are.equal(1, code)
    assert.are.equal("", out)
    spit(dir .. "/map.lua", "return {}\n")
    code, out = submit("--kubernetes --dry-run --image i --shards 2 --policy "
                       .. q(dir .. "/map.lua") .. " " .. q(MAP))
    assert.are.equal(1, code) -- two files named map.lua
    assert.are.equal("", out)
    code, out = submit("--kubernetes --dry-run --image i --shards 2 " .. q(dir .. "/none.lua"))
    assert.are.equal(1, code)
    assert.are.equal("", out)
  end)
end)

describe("luaisolate submit usage", function()
  local BAD = {
    "--shards 2 " .. q(MAP),                                  -- neither
    "--slurm --kubernetes --image i --shards 2 " .. q(MAP),   -- both
    "--slurm " .. q(MAP),                                     -- no --shards
    "--slurm --shards 0 " .. q(MAP),
    "--slurm --shards -1 " .. q(MAP),
    "--slurm --shards x " .. q(MAP),
    "--slurm --shards 1.5 " .. q(MAP),
    "--slurm --shards 04 " .. q(MAP),
    "--slurm --shards 100001 " .. q(MAP),
    "--slurm --shards 2",                                     -- no script
    "--slurm --shards 2 --image i " .. q(MAP),
    "--slurm --shards 2 --policy p.lua " .. q(MAP),
    "--slurm --shards 2 --partition 'a b' " .. q(MAP),
    "--slurm --shards 2 --mem '1G\n#SBATCH --uid=0' " .. q(MAP),
    "--slurm --shards 2 --out 'a\nb' " .. q(MAP),
    "--slurm --shards 2 --name Bad_Name " .. q(MAP),
    "--kubernetes --shards 2 " .. q(MAP),                     -- no --image
    "--kubernetes --image i --shards 2 --partition p " .. q(MAP),
    "--kubernetes --image i --shards 2 --parallelism 0 " .. q(MAP),
    "--kubernetes --image i --shards 2 --backoff-limit x " .. q(MAP),
    "--slurm --shards 2 --bogus " .. q(MAP),
  }
  for _, args in ipairs(BAD) do
    it("refuses " .. args:gsub("\n", "\\n"), function()
      local code, out = submit(args .. " --dry-run")
      assert.are.equal(2, code)
      assert.are.equal("", out)
    end)
  end
end)

-- The image: Debian packages only, and a runtime stage that installs the
-- package of every shared library luaisolate and its worker load.
describe("the Containerfile", function()
  local text = assert(slurp(SRC .. "/Containerfile"))

  -- the packages of each stage's apt-get install, in order
  local function stages()
    local out, bodies = {}, {}
    for line in text:gmatch("[^\n]*") do
      if line:match("^FROM ") then bodies[#bodies + 1] = ""
      elseif #bodies > 0 then bodies[#bodies] = bodies[#bodies] .. line .. "\n" end
    end
    for _, body in ipairs(bodies) do
      local pkgs = {}
      local install = body:match("apt%-get install(.-)&&") or ""
      for word in install:gmatch("%S+") do
        if not word:match("^%-") and word ~= "\\" then pkgs[word] = true end
      end
      out[#out + 1] = pkgs
    end
    return out
  end

  it("builds from Debian images and packages, fetching nothing else", function()
    for from in text:gmatch("\nFROM (%S+)") do
      assert.is_truthy(from:match("^docker%.io/library/debian:12"), from)
    end
    for _, word in ipairs({ "curl", "wget", "pip", "luarocks", "npm", "ADD ", "git clone" }) do
      local code_only = text:gsub("#[^\n]*", "")
      assert.is_nil(code_only:find(word, 1, true), word)
    end
    local s = stages()
    assert.are.equal(2, #s)
    local setup = assert(slurp(SRC .. "/scripts/setup.sh"))
    for pkg in pairs(s[1]) do -- the build stage: what setup.sh installs
      assert.is_truthy(setup:find("[%s(]" .. pkg:gsub("%p", "%%%0") .. "[%s)]"), pkg)
    end
  end)

  it("installs the package of every library luaisolate loads", function()
    local runtime = stages()[2]
    local dir = HOST:match("^(.*)/[^/]*$")
    local function libs(file)
      local code, out = run("ldd " .. q(file))
      assert.are.equal(0, code)
      local t = {}
      for path in out:gmatch("=> (/%S+)") do t[#t + 1] = path end
      return t
    end
    -- A sanitizer build links the sanitizer runtimes and what they load:
    -- the image is not such a build, so those are not its libraries.
    local ignore = {}
    for _, bin in ipairs({ HOST, dir .. "/luaisolate-cell" }) do
      for _, path in ipairs(libs(bin)) do
        if path:match("/lib%a*san%.so") then
          ignore[path] = true
          for _, dep in ipairs(libs(path)) do ignore[dep] = true end
        end
      end
    end
    local checked = 0
    for _, bin in ipairs({ HOST, dir .. "/luaisolate-cell" }) do
      for _, path in ipairs(libs(bin)) do
        local c2, owner = run("dpkg -S " .. q(path) .. " 2>/dev/null || dpkg -S "
                              .. q((path:gsub("^/lib/", "/usr/lib/"))))
        local pkg = c2 == 0 and owner:match("^([^:]+)")
        -- libc6 is in every Debian image; a CPython not from Debian
        -- (build-py313) is owned by no package and not what the image builds
        if pkg and pkg ~= "libc6" and not ignore[path] then
          assert.is_true(runtime[pkg] == true, path .. " comes from " .. pkg)
          checked = checked + 1
        end
      end
    end
    assert.is_true(checked >= 5, "checked only " .. checked .. " libraries")
  end)
end)
