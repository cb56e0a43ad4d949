-- Hardened mode checked ahead of time (issue 13, part 5): `luaisolate
-- check --mode hardened` reports what spawn refuses, from the same
-- decision (Policy:refusals), each refusal with its fix; every shipped
-- template passes, or its header says why and a hardened variant ships
-- beside it.
local sandbox = require "isolate"
local cli = require "isolate.cli"
local core = require "isolate.core"
local support = require "support"

local policy = sandbox.policy
local err_of, decode = support.err_of, support.decode_json
local HOST = os.getenv("ISOLATE_HOST")


-- exit code and the decoded JSON document of `check --json argv...`
local function check_json(argv)
  local ok, code, out = support.captured(cli.check, table.move(argv, 1, #argv, 2, { "--json" }))
  assert(ok, code)
  return code, decode(out)
end

-- The templates on the default path, by name.
local function templates()
  local lfs = require "lfs"
  local names = {}
  for _, dir in ipairs(policy.default_path()) do
    for f in lfs.dir(dir) do
      local name = f:match("^(.+)%.lua$")
      if name then names[#names + 1] = name end
    end
  end
  table.sort(names)
  return names
end

local function header_of(name)
  local text = assert(support.slurp(policy.load(name).source))
  return text:match("^(.-)\nreturn")
end

local BACKENDS = { "subinterpreter", "process" }

describe("check --mode hardened", function()
  it("reports each refused rule with its fix, and exits 1", function()
    local code, doc = check_json({ "--mode", "hardened", "--backend", "subinterpreter",
                                   "readonly-fs" })
    assert.are.equal(1, code)
    assert.is_false(doc.ok)
    local fixes = {}
    for _, r in ipairs(doc.results[1].refusals) do
      assert.are.equal("unenforceable", r.kind)
      fixes[r.rule] = r.fix or false
    end
    -- Landlock grants whole directories: the directory itself is the fix
    assert.are.equal('{read="/usr/share"}', fixes['fs {read="/usr/share/**"}'])
    assert.are.equal('{read="/srv/data"}', fixes['fs {read="/srv/data/**"}'])
    -- a deny rule has no rule to write instead: it goes
    assert.is_false(fixes['fs {deny="/etc/shadow"}'])
  end)

  it("accepts the fix it suggests", function()
    local p = policy.compile({ fs = { { read = "/usr/share" } } })
    assert.are.same({}, p:refusals("subinterpreter", { hardened = true, look = true }))
    local q = policy.compile({ fs = { { read = "/usr/share/**" } } })
    local r = q:refusals("subinterpreter", { hardened = true, look = true })
    assert.are.equal(1, #r)
    assert.are.same({ "unenforceable", '{read="/usr/share"}' }, { r[1].error, r[1].fix })
    -- the fix grants what the rule granted
    for _, path in ipairs({ "/usr/share", "/usr/share/doc/a/b" }) do
      assert.are.equal(q:check("read", path), p:check("read", path))
    end
  end)

  it("suggests the directory for a wildcard inside a path, and nothing at the root", function()
    local p = policy.compile({ fs = { { read = "/data/*.csv" }, { write = "/*" } } })
    local r = p:refusals("subinterpreter", { hardened = true, look = true })
    assert.are.same({ '{read="/data"}' }, { r[1].fix })
    assert.is_nil(r[2].fix)
  end)

  it("in dev mode reports only what any mode refuses", function()
    local code, doc = check_json({ "--mode", "dev", "readonly-fs", "compute-only" })
    assert.are.equal(0, code)
    assert.are.same({}, doc.results[1].refusals)
    code, doc = check_json({ "--mode", "dev", "--backend", "subinterpreter",
                             support.write_temp("return { limits = { processes = 0 } }") })
    assert.are.equal(1, code)
    assert.are.same({ "not_implemented", "limits.processes" },
                    { doc.results[1].refusals[1].kind, doc.results[1].refusals[1].rule })
  end)

  it("refuses an unknown mode as a usage error", function()
    local ok, code = support.captured(cli.check, { "--mode", "bogus", "compute-only" })
    assert.are.same({ true, 2 }, { ok, code })
  end)

  it("runs as the host's check command with the same exit codes", function()
    if not HOST then return print("SKIP: needs ISOLATE_HOST") end
    assert.are.equal(1, (support.run(HOST, "check", "--mode", "hardened", "readonly-fs")))
    assert.are.equal(0, (support.run(HOST, "check", "--mode=hardened", "readonly-fs.hardened")))
  end)
end)

describe("spawn and check decide alike", function()
  after_each(function() sandbox.configure({ mode = "dev" }) end)

  -- Policies that hardened mode refuses for different reasons.
  local CASES = {
    { fs = { { read = "/usr/share/**" } } },
    { fs = { { read = "/usr/share" }, { deny = "/usr/share/secret" } } },
    { fs = { { read = "/usr/share" } } },
    { net = { { connect = "unix:/run/x.sock" } } },
    { imports = { "json" }, limits = { wall_ms = 1000 } },
  }

  for _, backend in ipairs(BACKENDS) do
    it("refuses at spawn exactly the rules check reports (" .. backend .. ")", function()
      if not core.backend_check(backend) then return print("SKIP: no " .. backend) end
      for i, t in ipairs(CASES) do
        local p = policy.compile(t)
        local said = p:refusals(backend, { hardened = true, look = true })
        sandbox.configure({ mode = "hardened" })
        local ok, e = pcall(sandbox.spawn, { backend = backend, policy = p })
        if ok then e:close() end
        sandbox.configure({ mode = "dev" })
        if #said == 0 then
          -- accepted, or refused for a layer this process lacks (no rules)
          assert.is_true(ok or (e.kind == "unenforceable" and e.rules == nil), "case " .. i)
        else
          assert.is_false(ok, "case " .. i)
          assert.are.equal(said[1].error, e.kind, "case " .. i)
          local texts = {}
          for _, r in ipairs(said) do texts[#texts + 1] = r.rule end
          assert.are.same(texts, e.rules, "case " .. i)
          assert.are.equal(said[1].fix, e.suggestion, "case " .. i)
        end
      end
    end)
  end
end)

describe("the shipped templates", function()
  it("pass hardened mode, or say why and ship a hardened variant beside them", function()
    local names = templates()
    assert.is_true(#names >= 6)
    local k = core.kernel_look()
    for _, backend in ipairs(BACKENDS) do
      for _, name in ipairs(names) do
        local refused = policy.load(name):refusals(backend, { hardened = true, look = true })
        if #refused > 0 then
          local net_only = true
          for _, r in ipairs(refused) do net_only = net_only and r.kind:match("^net") ~= nil end
          local header = header_of(name):lower()
          assert.truthy(header:find("hardened mode", 1, true), name .. ": header says why")
          if not (net_only and not k.bpf) then -- web-scraper needs BPF; says so
            local variant = policy.load(name .. ".hardened")
            assert.are.same({}, variant:refusals(backend, { hardened = true, look = true }),
                            name .. ".hardened")
          end
        end
      end
    end
  end)

  it("readonly-fs.hardened reads what readonly-fs reads, and no secret", function()
    local ro, hard = policy.load("readonly-fs"), policy.load("readonly-fs.hardened")
    for _, path in ipairs({ "/usr/share/doc/x", "/srv/data/a.csv", "/srv/data" }) do
      assert.are.equal(ro:check("read", path), hard:check("read", path), path)
      assert.is_true(hard:check("read", path), path)
    end
    for _, path in ipairs({ "/etc/shadow", "/root/x", "/home/u/.ssh/id_rsa" }) do
      assert.is_false(hard:check("read", path), path)
    end
    assert.is_false(hard:check("write", "/srv/data/a.csv"))
    assert.are.same(ro.imports, hard.imports)
  end)

  it("ml-inference reads /models as one directory, as before", function()
    local ml = policy.load("ml-inference")
    assert.is_true(ml:check("read", "/models/a/b.bin"))
    assert.is_false(ml:check("read", "/modelsx/b.bin"))
    assert.are.same({}, ml:refusals("process", { hardened = true, look = true }))
  end)
end)

describe("Policy:refusals", function()
  it("refuses an unknown backend and a hostile one", function()
    local p = policy.compile({})
    for _, b in ipairs({ "bogus", 1, false, "subinterpreter\0x" }) do
      assert.are.equal("invalid_argument", err_of(p.refusals, p, b).kind)
    end
  end)
end)
