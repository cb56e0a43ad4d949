-- Suggestions, and errors caught at the right time (issue 13, part 6):
-- a "did you mean" and the search path for unknown names and options;
-- capabilities without a handler and imports the backend refuses are
-- refused at spawn; errors say where the option was written. Specs assert
-- the data on the error (kind, option, where, stage, suggestion), never
-- message text.
local sandbox = require "isolate"
local core = require "isolate.core"
local cli = require "isolate.cli"
local support = require "support"

local policy = sandbox.policy
local err_of = support.err_of

local function has(b)
  for _, x in ipairs(sandbox.IMPLEMENTED) do if x == b then return true end end
  return false
end

local function fields(e, ...)
  local out = {}
  for i, k in ipairs({ ... }) do out[i] = e[k] == nil and "nil" or e[k] end
  return out
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir " .. support.quote(d)))
  return d
end

describe("unknown policy names", function()
  it("get the nearest template name and the search path", function()
    local e = err_of(policy.load, "stdlib-readonly")
    assert.are.equal("policy", e.kind)
    assert.are.equal("stdlib.readonly", e.suggestion)
    assert.are.same(policy.path, e.searched)
    assert.are.equal("readonly-fs", err_of(policy.load, "readonly_fs").suggestion)
  end)

  it("get no suggestion when nothing is near", function()
    local e = err_of(policy.load, "zzzzzzzzzzzz")
    assert.are.equal("policy", e.kind)
    assert.is_nil(e.suggestion)
    assert.is_nil(err_of(policy.load, "/nowhere/readonly-fs.lua").suggestion)
  end)

  it("suggest from every folder of the path, the referring file's first", function()
    local dir = tmpdir()
    support.write(dir .. "/base-policy.lua", "return { imports = { 'json' } }")
    support.write(dir .. "/child.lua", "return { extends = 'base_policy' }")
    local e = err_of(policy.load, dir .. "/child.lua")
    assert.are.equal("policy", e.kind)
    assert.are.equal("base-policy", e.problems[1].suggestion)
    assert.are.equal(dir, e.problems[1].searched[1])
    local saved = policy.path
    policy.path = { dir }
    local ok, e2 = pcall(policy.load, "base-polcy")
    policy.path = saved
    assert.is_false(ok)
    assert.are.equal("base-policy", e2.suggestion)
    os.execute("rm -r " .. support.quote(dir))
  end)

  it("name the spawn option they came from", function()
    local e = err_of(sandbox.spawn, { policy = "stdlib-readonly" })
    assert.are.same({ "policy", "policy", "spawn", "stdlib.readonly" },
                    fields(e, "kind", "option", "where", "suggestion"))
  end)

  it("are reported by check with the suggestion as data", function()
    local out = { write = function(self, s) self[#self + 1] = s; return self end }
    local saved = io.stdout
    io.stdout = out
    local ok, code = pcall(cli.check, { "--json", "compute_only" })
    io.stdout = saved
    assert.are.same({ true, 1 }, { ok, code })
    local doc = support.decode_json(table.concat(out))
    assert.are.equal("compute-only", doc.results[1].suggestion)
    assert.are.same(policy.path, doc.results[1].searched)
  end)
end)

describe("unknown options", function()
  it("of spawn get a did-you-mean and the valid ones", function()
    local e = err_of(sandbox.spawn, { imprts = { "json" } })
    assert.are.same({ "invalid_argument", "imprts", "imports", "spawn" },
                    fields(e, "kind", "option", "suggestion", "where"))
    assert.is_true(#e.valid >= 6)
    assert.are.equal("capabilities", err_of(sandbox.spawn, { capabilites = {} }).suggestion)
    -- nothing near, and keys that are not strings
    assert.is_nil(err_of(sandbox.spawn, { zzzzzzzz = 1 }).suggestion)
    for _, k in ipairs({ 1, true, 2.5 }) do
      local e2 = err_of(sandbox.spawn, { [k] = 1 })
      assert.are.equal("invalid_argument", e2.kind)
      assert.is_nil(e2.suggestion)
    end
  end)

  it("of a pipeline, a stage, wrap and map name where they were written", function()
    local e = err_of(sandbox.pipeline, { polcy = "x" })
    assert.are.same({ "invalid_argument", "pipeline", "polcy", "policy" },
                    fields(e, "kind", "where", "option", "suggestion"))
    local p = sandbox.pipeline({ imports = { "json" } })
    e = err_of(p.stage, p, "parse", { call = "json.loads", imprts = { "x" } })
    assert.are.same({ "invalid_argument", "stage", "parse", "imprts", "imports" },
                    fields(e, "kind", "where", "stage", "option", "suggestion"))
    e = err_of(sandbox.wrap, "json.loads", { backnd = "process" })
    assert.are.same({ "wrap", "backend" }, fields(e, "where", "suggestion"))
    p:stage("parse", { call = "json.loads" })
    e = err_of(p.map, p, { "[1]" }, { worker = 2 })
    assert.are.same({ "map", "workers" }, fields(e, "where", "suggestion"))
  end)

  it("values of a stage's options name the stage, not spawn", function()
    local p = sandbox.pipeline({})
    local e = err_of(p.stage, p, "s1", { call = "json.loads", imports = { "json", "a b" } })
    assert.are.same({ "invalid_argument", "stage", "s1", "imports" },
                    fields(e, "kind", "where", "stage", "option"))
    e = err_of(sandbox.pipeline, { limits = { wall_mss = 1 } })
    assert.are.same({ "invalid_argument", "pipeline", "limits" },
                    fields(e, "kind", "where", "option"))
  end)
end)

describe("a call target whose module is not imported", function()
  it("is refused when the stage is declared, naming the option to add", function()
    local p = sandbox.pipeline({})
    local e = err_of(p.stage, p, "cwd", { call = "os.getcwd" })
    assert.are.same({ "invalid_argument", "stage", "cwd", "imports", "os", 'imports = {"os"}' },
                    fields(e, "kind", "where", "stage", "option", "module", "suggestion"))
    -- allowed by the pipeline, by the stage, or by the stage's policy
    sandbox.pipeline({ imports = { "os" } }):stage("a", { call = "os.getcwd" })
    sandbox.pipeline({}):stage("b", { call = "os.path.join", imports = { "os" } })
    sandbox.pipeline({}):stage("c", { call = "math.sqrt", policy = "compute-only" })
    e = err_of(sandbox.wrap, "os.getcwd", {})
    assert.are.same({ "wrap", "os" }, fields(e, "where", "module"))
  end)
end)

describe("an import the guard refuses while guest code runs", function()
  local backends = {}
  for _, b in ipairs({ "subinterpreter", "process" }) do
    if has(b) then backends[#backends + 1] = b end
  end

  for _, backend in ipairs(backends) do
    it("names the module on the error of a plain cell (" .. backend .. ")", function()
      local sb <close> = sandbox.spawn({ backend = backend })
      local e = err_of(sb.exec, sb, "import json")
      assert.are.same({ "guest", "ImportError", "json" }, fields(e, "kind", "python", "refused_import"))
      -- an ImportError the guard did not raise names nothing, even one
      -- that claims a name, and one raised after a refusal was caught
      e = err_of(sb.exec, sb, "raise ImportError('x', name='json')")
      assert.are.same({ "guest", "nil" }, fields(e, "kind", "refused_import"))
      e = err_of(sb.exec, sb, "try:\n import json\nexcept ImportError:\n pass\nraise ImportError('y', name='csv')")
      assert.are.same({ "guest", "nil" }, fields(e, "kind", "refused_import"))
    end)

    it("of a code stage is fixed in the stage's options (" .. backend .. ")", function()
      local p = sandbox.pipeline({ backend = backend })
        :stage("load", { code = "import csv\ndef run(x):\n    return x\n", entry = "run" })
      local e = err_of(p.run, p, 1)
      assert.are.same({ "guest", "stage", "load", "imports", "csv", 'imports = {"csv"}' },
                      fields(e, "kind", "where", "stage", "option", "module", "suggestion"))
      p = sandbox.pipeline({ backend = backend })
        :stage("late", { code = "def run(x):\n    import json\n    return x\n", entry = "run" })
      e = err_of(p.run, p, 1)
      assert.are.same({ "late", "imports", "json" }, fields(e, "stage", "option", "module"))
      -- the advice works: the stage's own imports fix it
      assert.are.equal(1, sandbox.pipeline({ backend = backend })
        :stage("late", { code = "def run(x):\n    import json\n    return x\n", entry = "run",
                         imports = { "json" } }):run(1))
    end)
  end
end)

describe("capabilities", function()
  it("without a registered handler are refused at spawn", function()
    sandbox.capability("hints_kv", function() return 1 end)
    local e = err_of(sandbox.spawn, { capabilities = { "hints_kvv" } })
    assert.are.same({ "invalid_argument", "capabilities", "hints_kvv", "hints_kv", "spawn" },
                    fields(e, "kind", "option", "capability", "suggestion", "where"))
    e = err_of(sandbox.spawn, { policy = { capabilities = { "hints_none" } } })
    assert.are.same({ "invalid_argument", "hints_none", "policy" },
                    fields(e, "kind", "capability", "where"))
    local sb <close> = sandbox.spawn({ capabilities = { "hints_kv" } })
    assert.are.equal(1, sb:call("request", "hints_kv", "get"))
  end)

  it("of a stage without a handler fail the run before any stage ran, naming it", function()
    local p = sandbox.pipeline({}):stage("one", { code = "def run(x):\n    return x\n",
                                                  entry = "run", capabilities = { "hints_nope" } })
    local e = err_of(p.run, p, 1)
    assert.are.same({ "invalid_argument", "one", "capabilities", "stage" },
                    fields(e, "kind", "stage", "option", "where"))
  end)
end)

describe("imports the backend refuses", function()
  local REFUSED = { "ctypes", "ctypes.util", "_ctypes", "multiprocessing",
                    "multiprocessing.pool", "_multiprocessing" }

  it("are refused at spawn in sub-interpreter cells, naming the module", function()
    for _, m in ipairs(REFUSED) do
      local e = err_of(sandbox.spawn, { backend = "subinterpreter", imports = { "json", m } })
      assert.are.same({ "invalid_argument", "imports", m, "spawn" },
                      fields(e, "kind", "option", "module", "where"), m)
      assert.are.equal("backend='process'", e.suggestion)
    end
    local e = err_of(sandbox.spawn, { policy = { imports = { "ctypes" } } })
    assert.are.same({ "ctypes", "policy" }, fields(e, "module", "where"))
  end)

  it("come from the C list: what spawn refuses, the cell refuses too", function()
    for _, m in ipairs(REFUSED) do
      assert.is_true(core.import_refused("subinterpreter", m), m)
      assert.is_false(core.import_refused("process", m), m)
      local sb <close> = support.core_spawn("subinterpreter", { m })
      assert.are.equal("ImportError", err_of(sb.exec, sb, "import " .. m).python, m)
    end
    for _, m in ipairs({ "json", "ctypesx", "os.ctypes", "_testcapi" }) do
      assert.is_false(core.import_refused("subinterpreter", m), m)
    end
  end)

  it("take hostile names without harm", function()
    assert.is_false(core.import_refused("subinterpreter", "ctypes\0x"))
    assert.is_false(core.import_refused("subinterpreter", string.rep("a", 100000)))
    assert.is_false(core.import_refused("subinterpreter", ""))
    assert.is_false(core.import_refused("bogus", "ctypes"))
    assert.are.equal("invalid_argument", err_of(core.import_refused, "subinterpreter\0", "x").kind)
    assert.is_true(not pcall(core.import_refused, "subinterpreter", {}))
  end)

  it("are accepted in process cells", function()
    if not has("process") then return print("SKIP: no process backend") end
    local sb <close> = sandbox.spawn({ backend = "process", imports = { "ctypes" } })
    sb:exec("import ctypes\npost(1)")
    assert.are.equal(1, sb:recv(10))
  end)

  it("of a stage are refused when the stage is declared, naming who wrote them", function()
    local p = sandbox.pipeline({})
    local e = err_of(p.stage, p, "c", { call = "json.loads", backend = "subinterpreter",
                                        imports = { "json", "ctypes" } })
    assert.are.same({ "invalid_argument", "stage", "c", "imports", "ctypes" },
                    fields(e, "kind", "where", "stage", "option", "module"))
    e = err_of(sandbox.pipeline, { backend = "subinterpreter", imports = { "ctypes" } })
    assert.are.same({ "pipeline", "nil" }, fields(e, "where", "stage"))
    -- inherited from the pipeline's defaults: the pipeline wrote it
    p = sandbox.pipeline({ imports = { "ctypes" } })
    e = err_of(p.stage, p, "d", { call = "json.loads", backend = "subinterpreter",
                                  imports = { "json" } })
    assert.are.same({ "pipeline", "d", "ctypes" }, fields(e, "where", "stage", "module"))
  end)
end)

describe("limits the backend does not enforce", function()
  it("name the option and who wrote it", function()
    local e = err_of(sandbox.spawn, { backend = "subinterpreter", limits = { processes = 0 } })
    assert.are.same({ "not_implemented", "limits.processes", "spawn" },
                    fields(e, "kind", "option", "where"))
    e = err_of(sandbox.spawn, { backend = "subinterpreter",
                                policy = { limits = { processes = 0 } } })
    assert.are.same({ "limits.processes", "policy" }, fields(e, "option", "where"))
    local p = sandbox.pipeline({ limits = { processes = 0 } })
    e = err_of(p.stage, p, "x", { call = "json.loads", imports = { "json" },
                                  backend = "subinterpreter" })
    assert.are.same({ "not_implemented", "pipeline", "x" }, fields(e, "kind", "where", "stage"))
  end)
end)
