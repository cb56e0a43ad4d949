-- The policy engine: validation (every field, all problems at once),
-- extends chains, rule precedence, check/explain/totable, templates, and
-- policy files as pure data.
local policy = require "isolate.policy"

local err_of = require("support").err_of

-- ---- helpers ----------------------------------------------------------------

local function sorted(list)
  table.sort(list)
  return list
end

-- The sorted problem paths of a policy error raised by fn(...).
local function paths_of(fn, ...)
  local e = err_of(fn, ...)
  assert.are.equal("policy", e.kind)
  local paths = {}
  for i, p in ipairs(e.problems) do
    assert.are.equal("string", type(p.message))
    assert.is_true(#p.message > 0)
    paths[i] = p.path
  end
  return sorted(paths)
end

local function problems(t) return paths_of(policy.compile, t) end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p '" .. d .. "'"))
  return d
end

local function write(dir, name, text)
  local path = dir .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

-- A temp folder that is the whole policy.path for one describe block.
local function with_policy_dir()
  local env = {}
  before_each(function()
    env.saved = policy.path
    env.dir = tmpdir()
    policy.path = { env.dir }
  end)
  after_each(function()
    policy.path = env.saved
    os.execute("rm -rf '" .. env.dir .. "'")
  end)
  return env
end

local function fs_policy(rules) return policy.compile({ fs = rules }) end
local function net_policy(rules) return policy.compile({ net = rules }) end

-- ---- accepted fields ----------------------------------------------------------

describe("policy.compile accepts", function()
  it("an empty policy: everything denied", function()
    local p = policy.compile({})
    assert.are.equal("isolate.Policy", getmetatable(p).__name)
    assert.is_true(policy.is_policy(p))
    assert.are.same({}, p.imports)
    assert.are.same({}, p.capabilities)
    assert.are.same({}, p.fs)
    assert.are.same({}, p.net)
    assert.are.same({}, p.limits)
    assert.are.same({ deny = {} }, p.syscalls)
    assert.are.equal(1, p.version)
    assert.is_nil(p.name)
    assert.is_nil(p.source)
    assert.are.same({ false, "default deny" }, { p:check("read", "/etc/hosts") })
  end)

  it("version 1, or no version", function()
    policy.compile({ version = 1 })
    policy.compile({ version = 1.0 })
  end)

  it("every field, normalized for the cell", function()
    local p = policy.compile({
      version = 1,
      imports = { "json", "os.path", "json", "_x" },
      fs = { { read = "/srv/data/**" }, { write = "/tmp/out" }, { allow = "/work" },
             { deny = "/srv/data/private" } },
      net = { { connect = "127.0.0.1:6379" }, { deny = "10.0.0.0/8:*" } },
      capabilities = { "kv", "a.b-c_d", "kv" },
      limits = { cpu_ms = 500, wall_ms = 30000, mem = "256MiB", open_files = 64,
                 processes = 0, output_bytes = 4096 },
      syscalls = { deny = { "ptrace", "mount", "ptrace" } },
    })
    assert.are.same({ "json", "os.path", "_x" }, p.imports)
    assert.are.same({ "kv", "a.b-c_d" }, p.capabilities)
    assert.are.same({ cpu_ms = 500, wall_ms = 30000, mem = 256 * 1024 * 1024,
                      open_files = 64, processes = 0, output_bytes = 4096 }, p.limits)
    assert.are.same({ deny = { "ptrace", "mount" } }, p.syscalls)
    local fs = p.fs
    assert.are.equal(4, #fs)
    assert.are.same({ "read", "/srv/data/**", 'fs {read="/srv/data/**"}' },
                    { fs[1].access, fs[1].pattern, fs[1].text })
    assert.are.same({ "write", "allow", "deny" }, { fs[2].access, fs[3].access, fs[4].access })
    local net = p.net
    assert.are.same({ "connect", "127.0.0.1:6379", 'net {connect="127.0.0.1:6379"}' },
                    { net[1].action, net[1].spec, net[1].text })
    assert.are.equal("deny", net[2].action)
    assert.are.equal("userdata", type(p:plan()))
    assert.are.equal(p:plan(), p:plan())
  end)

  it("sizes in binary and decimal units, or integer bytes", function()
    local cases = {
      ["64B"] = 64, ["512KiB"] = 512 * 1024, ["256MiB"] = 256 << 20, ["1GiB"] = 1 << 30,
      ["2TiB"] = 2 << 40, ["10KB"] = 10000, ["100MB"] = 100000000,
      ["1GB"] = 1000000000, ["3TB"] = 3000000000000, [4096] = 4096, [4096.0] = 4096,
    }
    for spelled, bytes in pairs(cases) do
      local p = policy.compile({ limits = { mem = spelled, output_bytes = spelled } })
      assert.are.equal(bytes, p.limits.mem)
      assert.are.equal(bytes, p.limits.output_bytes)
      assert.are.equal("integer", math.type(p.limits.mem))
    end
  end)

  it("integral floats as counts, and zero processes", function()
    local p = policy.compile({ limits = { wall_ms = 1e3, processes = 0, open_files = 8.0 } })
    assert.are.same({ wall_ms = 1000, processes = 0, open_files = 8 }, p.limits)
    assert.are.equal("integer", math.type(p.limits.wall_ms))
  end)

  it("never changes once compiled: fields are copies, writes raise", function()
    local p = policy.compile({ imports = { "json" }, fs = { { read = "/a" } } })
    local imports = p.imports
    imports[1] = "os"
    p.fs[1].pattern = "/"
    assert.are.same({ "json" }, p.imports)
    assert.are.equal("/a", p.fs[1].pattern)
    assert.is_false(p:check("import", "os"))
    assert.are.equal("invalid_argument", err_of(function() p.imports = {} end).kind)
    assert.are.equal("invalid_argument", err_of(function() p.extra = 1 end).kind)
  end)
end)

-- ---- validation ---------------------------------------------------------------

describe("policy.compile refuses", function()
  it("a non-table, or bad options, as invalid_argument", function()
    for _, v in ipairs({ "readonly-fs", 42, true }) do
      assert.are.equal("invalid_argument", err_of(policy.compile, v).kind)
    end
    assert.are.equal("invalid_argument", err_of(policy.compile).kind)
    assert.are.equal("invalid_argument", err_of(policy.compile, {}, { bogus = 1 }).kind)
    assert.are.equal("invalid_argument", err_of(policy.compile, {}, { name = 1 }).kind)
    assert.are.equal("invalid_argument", err_of(policy.compile, {}, 5).kind)
  end)

  it("unknown keys, including misspellings and list items", function()
    assert.are.same({ "fss" }, problems({ fss = {} }))
    assert.are.same({ "[1]" }, problems({ "json" }))
    assert.are.same({ '["a b"]' }, problems({ ["a b"] = 1 }))
    assert.are.same({ "Imports", "limit" }, problems({ Imports = {}, limit = {} }))
  end)

  it("any version but 1", function()
    for _, v in ipairs({ 2, 0, "1", 1.5, true, {} }) do
      assert.are.same({ "version" }, problems({ version = v }))
    end
  end)

  it("extends that is not a name", function()
    for _, v in ipairs({ 3, "", true, { "base" } }) do
      assert.are.same({ "extends" }, problems({ extends = v }))
    end
  end)

  it("imports that are not a list of module names", function()
    assert.are.same({ "imports" }, problems({ imports = "json" }))
    assert.are.same({ "imports" }, problems({ imports = { x = "json" } }))
    assert.are.same({ "imports" }, problems({ imports = { "a", nil, "c" } }))
    assert.are.same({ "imports", "imports[1]" }, problems({ imports = { 5, y = "z" } }))
    assert.are.same({ "imports[1]", "imports[2]", "imports[3]", "imports[4]",
                      "imports[5]", "imports[6]" },
                    problems({ imports = { "a..b", 3, ".x", "x.", "1abc", "a-b" } }))
    assert.are.same({ "imports[2]" }, problems({ imports = { "ok", {} } }))
  end)

  it("fs rules that are not one access and one valid glob", function()
    assert.are.same({ "fs" }, problems({ fs = { read = "/a" } }))
    assert.are.same({ "fs" }, problems({ fs = "/a" }))
    assert.are.same({ "fs[1]" }, problems({ fs = { "/a" } }))
    assert.are.same({ "fs[1]" }, problems({ fs = { {} } }))
    assert.are.same({ "fs[1]" }, problems({ fs = { { read = "/a", write = "/b" } } }))
    assert.are.same({ "fs[1].raed" }, problems({ fs = { { raed = "/a" } } }))
    assert.are.same({ "fs[1].exec" }, problems({ fs = { { read = "/a", exec = "/b" } } }))
    assert.are.same({ "fs[1][1]" }, problems({ fs = { { "/a" } } }))
    assert.are.same({ "fs[1].read" }, problems({ fs = { { read = 3 } } }))
    assert.are.same({ "fs[2].deny" }, problems({ fs = { { read = "/a" }, { deny = true } } }))
    for _, glob in ipairs({ "data/**", "", "/a/[bc]", "/a/{b,c}", "/a/b**", "/a/**x/b",
                            "/a/*/../b", "/a\\b" }) do
      assert.are.same({ "fs[1].write" }, problems({ fs = { { write = glob } } }))
    end
  end)

  it("net rules that are not one action and one valid host:port", function()
    assert.are.same({ "net" }, problems({ net = "127.0.0.1:80" }))
    assert.are.same({ "net[1]" }, problems({ net = { "127.0.0.1:80" } }))
    assert.are.same({ "net[1]" }, problems({ net = { {} } }))
    assert.are.same({ "net[1]" },
                    problems({ net = { { connect = "1.2.3.4:80", deny = "1.2.3.4:81" } } }))
    assert.are.same({ "net[1].allow" }, problems({ net = { { allow = "1.2.3.4:80" } } }))
    assert.are.same({ "net[1].deny" }, problems({ net = { { deny = 80 } } }))
    for _, spec in ipairs({ "1.2.3.4", "example.com:80", "1.2.3.4:99999", "1.2.3.4:x",
                            "::1:443", "[::1:443", "1.2.3.4/33:80", "1.2.3.4:90-80",
                            "300.1.1.1:80", ":80", "" }) do
      assert.are.same({ "net[1].connect" }, problems({ net = { { connect = spec } } }))
    end
  end)

  it("capabilities that are not names", function()
    assert.are.same({ "capabilities" }, problems({ capabilities = "kv" }))
    assert.are.same({ "capabilities[1]", "capabilities[2]", "capabilities[3]",
                      "capabilities[4]" },
                    problems({ capabilities = { "a b", 1, {}, "" } }))
  end)

  it("limits that are unknown, not integers, or out of range", function()
    assert.are.same({ "limits" }, problems({ limits = 5 }))
    assert.are.same({ "limits.wal_ms" }, problems({ limits = { wal_ms = 1 } }))
    assert.are.same({ "limits[1]" }, problems({ limits = { 1 } }))
    for _, k in ipairs({ "cpu_ms", "wall_ms", "open_files" }) do
      for _, v in ipairs({ 0, -1, 1.5, "100", true, math.huge }) do
        assert.are.same({ "limits." .. k }, problems({ limits = { [k] = v } }))
      end
    end
    for _, v in ipairs({ -1, 0.5, "0", true }) do
      assert.are.same({ "limits.processes" }, problems({ limits = { processes = v } }))
    end
  end)

  it("sizes without a known unit, with a space, a fraction or zero", function()
    for _, v in ipairs({ "256mb", "256mib", "256Mb", "1.5GiB", "12 MiB", " 1MiB", "MiB",
                         "256", "0MiB", "-1MiB", "1e3B", 0, -1, 1.5, true, {},
                         "99999999999999999999GiB", "9999999999TiB" }) do
      assert.are.same({ "limits.mem" }, problems({ limits = { mem = v } }))
      assert.are.same({ "limits.output_bytes" }, problems({ limits = { output_bytes = v } }))
    end
  end)

  it("syscalls that are unknown to this machine", function()
    assert.are.same({ "syscalls[1]" }, problems({ syscalls = { "ptrace" } }))
    assert.are.same({ "syscalls" }, problems({ syscalls = "ptrace" }))
    assert.are.same({ "syscalls.allow" }, problems({ syscalls = { allow = {} } }))
    assert.are.same({ "syscalls.deny" }, problems({ syscalls = { deny = "ptrace" } }))
    assert.are.same({ "syscalls.deny[2]", "syscalls.deny[3]" },
                    problems({ syscalls = { deny = { "ptrace", "ptrase", 42 } } }))
  end)

  it("with every problem at once, in one error", function()
    local e = err_of(policy.compile, {
      version = 2, fss = 1, extends = 7,
      imports = { "ok", "a..b" },
      fs = { { read = "relative" }, { read = "/a", write = "/b" } },
      net = { { connect = "nope" } },
      capabilities = { "a b" },
      limits = { mem = "1.5GiB", cpu_ms = 0, bogus = 1 },
      syscalls = { deny = { "not_a_syscall" } },
    })
    assert.are.equal("policy", e.kind)
    local paths = {}
    for i, p in ipairs(e.problems) do paths[i] = p.path end
    assert.are.same(sorted({ "version", "fss", "extends", "imports[2]", "fs[1].read", "fs[2]",
                             "net[1].connect", "capabilities[1]", "limits.mem",
                             "limits.cpu_ms", "limits.bogus", "syscalls.deny[1]" }),
                    sorted(paths))
  end)
end)

-- ---- extends ----------------------------------------------------------------------

describe("extends", function()
  local env = with_policy_dir()

  local function chain()
    write(env.dir, "root.lua", [[return {
      imports = { "a" }, fs = { { read = "/r" } }, capabilities = { "kv" },
      limits = { wall_ms = 100, mem = "1MiB" } }]])
    write(env.dir, "mid.lua", [[return { extends = "root",
      imports = { "b", "a" }, fs = { { deny = "/r/secret" } }, limits = { wall_ms = 200 } }]])
    write(env.dir, "leaf.lua", [[return { extends = "mid",
      imports = { "c" }, net = { { connect = "127.0.0.1:80" } } }]])
  end

  it("merges a three-level chain root first: lists concatenate, limits override", function()
    chain()
    local p = policy.load("leaf")
    assert.are.equal("leaf", p.name)
    assert.are.equal(env.dir .. "/leaf.lua", p.source)
    assert.are.same({ "a", "b", "c" }, p.imports)
    assert.are.same({ "kv" }, p.capabilities)
    assert.are.same({ "/r", "/r/secret" }, { p.fs[1].pattern, p.fs[2].pattern })
    assert.are.same({ wall_ms = 200, mem = 1 << 20 }, p.limits)
    assert.are.same({ false, 'fs {deny="/r/secret"}' }, { p:check("read", "/r/secret/k") })
    assert.are.same({ true, 'fs {read="/r"}' }, { p:check("read", "/r/x") })
    assert.are.same({ true, 'net {connect="127.0.0.1:80"}' },
                    { p:check("connect", "127.0.0.1:80") })
    assert.is_nil(p:totable().extends)
  end)

  it("keeps each rule's origin", function()
    chain()
    local rows = policy.load("leaf"):explain()
    local origins = {}
    for _, r in ipairs(rows) do
      if r.origin then origins[#origins + 1] = r.origin end
    end
    assert.are.equal(3, #origins)
    assert.is_truthy(origins[1]:find("root", 1, true))
    assert.is_truthy(origins[2]:find("mid", 1, true))
    assert.is_truthy(origins[3]:find("leaf", 1, true))
  end)

  it("works from a table, by name or by relative path", function()
    chain()
    assert.are.same({ "a", "b", "z" },
                    policy.compile({ extends = "mid", imports = { "z" } }).imports)
    local other = tmpdir()
    local file = write(other, "child.lua", 'return { extends = "sibling", imports = { "s2" } }')
    write(other, "sibling.lua", 'return { imports = { "s1" } }')
    write(other, "rel.lua", 'return { extends = "./sibling.lua", imports = { "r" } }')
    assert.are.same({ "s1", "s2" }, policy.load(file).imports)
    assert.are.same({ "s1", "r" }, policy.load(other .. "/rel.lua").imports)
    os.execute("rm -rf '" .. other .. "'")
  end)

  it("reports an unknown parent", function()
    assert.are.same({ "extends" }, problems({ extends = "no-such-policy" }))
    write(env.dir, "orphan.lua", 'return { extends = "missing" }')
    assert.are.same({ "extends" }, paths_of(policy.load, "orphan"))
  end)

  it("reports cycles, naming them", function()
    write(env.dir, "cyc-one.lua", 'return { extends = "cyc-two" }')
    write(env.dir, "cyc-two.lua", 'return { extends = "cyc-one" }')
    write(env.dir, "cyc-self.lua", 'return { extends = "cyc-self" }')
    write(env.dir, "tri-a.lua", 'return { extends = "tri-b" }')
    write(env.dir, "tri-b.lua", 'return { extends = "tri-c" }')
    write(env.dir, "tri-c.lua", 'return { extends = "tri-a" }')
    for _, name in ipairs({ "cyc-one", "cyc-self", "tri-a" }) do
      assert.are.same({ "extends" }, paths_of(policy.load, name))
    end
    local e = err_of(policy.load, "cyc-one")
    assert.are.same({ "cyc-one", "cyc-two", "cyc-one" }, e.problems[1].cycle)
    assert.are.same({ "tri-a", "tri-b", "tri-c", "tri-a" },
                    err_of(policy.load, "tri-a").problems[1].cycle)
    assert.are.same({ "cyc-self", "cyc-self" },
                    err_of(policy.load, "cyc-self").problems[1].cycle)
    assert.are.same({ "extends" }, problems({ extends = "tri-b" }))
  end)

  it("reports an invalid or unloadable parent, with the child's own problems", function()
    write(env.dir, "bad-parent.lua", 'return { fs = { { read = 3 } }, limits = { mem = "x" } }')
    write(env.dir, "broken-parent.lua", "return {")
    assert.are.same({ "extends", "extends" }, problems({ extends = "bad-parent" }))
    assert.are.same({ "extends" }, problems({ extends = "broken-parent" }))
    assert.are.same({ "extends", "extends", "fss" },
                    problems({ extends = "bad-parent", fss = 1 }))
  end)
end)

-- ---- precedence -------------------------------------------------------------------

describe("rule precedence", function()
  it("deny beats every allow, in any order", function()
    for _, rules in ipairs({
      { { allow = "/data" }, { deny = "/data/secret" } },
      { { deny = "/data/secret" }, { allow = "/data" } },
    }) do
      local p = fs_policy(rules)
      assert.are.same({ false, 'fs {deny="/data/secret"}' }, { p:check("read", "/data/secret/k") })
      assert.are.same({ false, 'fs {deny="/data/secret"}' }, { p:check("write", "/data/secret") })
      assert.are.same({ true, 'fs {allow="/data"}' }, { p:check("write", "/data/public") })
    end
  end)

  it("denies anything unmatched", function()
    local p = fs_policy({ { read = "/data" } })
    assert.are.same({ false, "default deny" }, { p:check("read", "/etc/passwd") })
    assert.are.same({ false, "default deny" }, { p:check("write", "/data/x") })
    assert.are.same({ false, "default deny" }, { p:check("read", "/") })
  end)

  it("reads, writes and allow separately", function()
    local p = fs_policy({ { read = "/r" }, { write = "/w" }, { allow = "/rw" } })
    assert.is_true(p:check("read", "/r/x"))
    assert.is_false(p:check("write", "/r/x"))
    assert.is_true(p:check("write", "/w/x"))
    assert.is_false(p:check("read", "/w/x"))
    assert.are.same({ true, 'fs {allow="/rw"}' }, { p:check("read", "/rw/x") })
    assert.are.same({ true, 'fs {allow="/rw"}' }, { p:check("write", "/rw/x") })
  end)

  it("never lets a folder rule match a sibling with the same prefix", function()
    local p = fs_policy({ { read = "/data" } })
    assert.is_true(p:check("read", "/data"))
    assert.is_true(p:check("read", "/data/a/b"))
    assert.is_false(p:check("read", "/data-x"))
    assert.is_false(p:check("read", "/database/x"))
    assert.is_false(fs_policy({ { read = "/data/**" } }):check("read", "/data-x/y"))
  end)

  it("normalises .. and . before matching", function()
    local p = fs_policy({ { read = "/data" }, { deny = "/data/secret" } })
    assert.is_false(p:check("read", "/data/../etc/passwd"))
    assert.is_false(p:check("read", "/data/a/../../etc/passwd"))
    assert.is_true(p:check("read", "/other/../data/x"))
    assert.is_true(p:check("read", "/data/./a//b"))
    assert.are.same({ false, 'fs {deny="/data/secret"}' },
                    { p:check("read", "/data/x/../secret/k") })
    assert.is_true(fs_policy({ { read = "/x/../data" } }):check("read", "/data/a"))
  end)

  it("matches * within one segment and ** across segments", function()
    local one = fs_policy({ { read = "/srv/*/conf" }, { read = "/logs/*.csv" } })
    assert.is_true(one:check("read", "/srv/a/conf"))
    assert.is_false(one:check("read", "/srv/a/b/conf"))
    assert.is_false(one:check("read", "/srv/a/conf/x"))
    assert.is_true(one:check("read", "/logs/a.csv"))
    assert.is_false(one:check("read", "/logs/sub/a.csv"))
    local many = fs_policy({ { read = "/logs/**" }, { read = "/a/**/z" } })
    assert.is_true(many:check("read", "/logs/a/b/c"))
    assert.is_true(many:check("read", "/logs"))
    assert.is_true(many:check("read", "/a/z"))
    assert.is_true(many:check("read", "/a/b/c/z"))
    assert.is_false(many:check("read", "/a/b/c/y"))
  end)

  it("applies to net rules: ports, ranges, CIDR, localhost, IPv6", function()
    local p = net_policy({
      { connect = "127.0.0.1:6379" }, { connect = "10.0.0.0/8:8000-8100" },
      { deny = "10.9.0.0/16:*" }, { connect = "localhost:5432" }, { connect = "[::1]:443" },
      { connect = "192.168.1.1:*" },
    })
    assert.are.same({ true, 'net {connect="127.0.0.1:6379"}' },
                    { p:check("connect", "127.0.0.1:6379") })
    assert.are.same({ false, "default deny" }, { p:check("connect", "127.0.0.1:6380") })
    assert.is_true(p:check("connect", "10.1.2.3:8050"))
    assert.is_false(p:check("connect", "10.1.2.3:8101"))
    assert.are.same({ false, 'net {deny="10.9.0.0/16:*"}' }, { p:check("connect", "10.9.1.1:8050") })
    assert.is_true(p:check("connect", "127.0.0.5:5432"))
    assert.is_true(p:check("connect", "[::1]:443"))
    assert.is_true(p:check("connect", "192.168.1.1:1"))
    assert.is_false(p:check("connect", "192.168.1.2:1"))
  end)
end)

-- ---- check ---------------------------------------------------------------------------

describe("Policy:check", function()
  local p = policy.compile({
    imports = { "json", "os.path" }, capabilities = { "kv" },
    fs = { { read = "/srv/data/**" } }, net = { { connect = "127.0.0.1:6379" } },
  })

  it("decides each op and names the rule", function()
    assert.are.same({ true, 'fs {read="/srv/data/**"}' }, { p:check("read", "/srv/data/a") })
    assert.are.same({ false, "default deny" }, { p:check("write", "/srv/data/a") })
    assert.are.same({ true, 'net {connect="127.0.0.1:6379"}' },
                    { p:check("connect", "127.0.0.1:6379") })
    assert.are.same({ true, 'imports "json"' }, { p:check("import", "json") })
    assert.are.same({ true, 'imports "json"' }, { p:check("import", "json.decoder") })
    assert.are.same({ true, 'imports "os.path"' }, { p:check("import", "os.path") })
    assert.are.same({ false, "default deny" }, { p:check("import", "os") })
    assert.are.same({ false, "default deny" }, { p:check("import", "jsonx") })
    assert.are.same({ true, 'capabilities "kv"' }, { p:check("capability", "kv") })
    assert.are.same({ false, "default deny" }, { p:check("capability", "kvx") })
  end)

  it("refuses bad ops and targets", function()
    for _, op in ipairs({ "exec", "READ", 1 }) do
      assert.are.equal("invalid_argument", err_of(p.check, p, op, "/x").kind)
    end
    assert.are.equal("invalid_argument", err_of(p.check, p, "read", 42).kind)
    assert.are.equal("invalid_argument", err_of(p.check, p, "read", "relative/x").kind)
    assert.are.equal("invalid_argument", err_of(p.check, p, "connect", "nohost").kind)
    assert.are.equal("invalid_argument", err_of(p.check, p, "connect", "10.0.0.0/8:80").kind)
    assert.are.equal("invalid_argument", err_of(p.check, p, "import", "a..b").kind)
    assert.are.equal("invalid_argument", err_of(p.check, {}, "read", "/x").kind)
  end)
end)

-- ---- explain --------------------------------------------------------------------------

describe("Policy:explain", function()
  local p = policy.compile({
    imports = { "json" }, capabilities = { "kv" },
    fs = { { read = "/a" }, { deny = "/a/b" } }, net = { { connect = "127.0.0.1:80" } },
    limits = { wall_ms = 1000, cpu_ms = 5, mem = "1MiB", open_files = 3, processes = 0,
               output_bytes = "1KiB" },
    syscalls = { deny = { "ptrace", "mount" } },
  })

  local function layers(rows)
    local out = {}
    for i, r in ipairs(rows) do
      assert.are.equal("string", type(r.rule))
      assert.are.equal("string", type(r.note))
      assert.is_true(#r.note > 0)
      out[i] = { r.rule, r.layer }
    end
    return out
  end

  -- What this host's kernel enforces (the specs run on hosts with and
  -- without each layer).
  local kernel = require("isolate.core").kernel()
  local guard, none = "python-guard", "none"
  local net_layer = kernel.bpf and "bpf" or "landlock"

  it("lists one row per rule with its layer in a subinterpreter cell", function()
    local fs = kernel.landlock > 0 and "landlock" or guard
    local net = kernel.bpf and "bpf" or kernel.landlock >= 4 and "landlock" or guard
    local sys = kernel.seccomp and "seccomp" or none
    assert.are.same({
      { 'imports {"json"}', guard },
      { 'fs {read="/a"}', fs },
      { 'fs {deny="/a/b"}', guard },
      { 'net {connect="127.0.0.1:80"}', net },
      { 'capabilities {"kv"}', guard },
      { "limits {cpu_ms=5}", guard },
      { "limits {wall_ms=1000}", guard },
      { 'limits {mem="1MiB"}', guard },
      { "limits {open_files=3}", none },
      { "limits {processes=0}", none },
      { 'limits {output_bytes="1KiB"}', guard },
      { 'syscalls {deny={"ptrace"}}', sys },
      { 'syscalls {deny={"mount"}}', sys },
    }, layers(p:explain()))
    assert.are.same(p:explain(), p:explain("subinterpreter"))
  end)

  it("lists the kernel layers of a process cell", function()
    assert.are.same({
      { 'imports {"json"}', guard },
      { 'fs {read="/a"}', "landlock" },
      { 'fs {deny="/a/b"}', guard },
      { 'net {connect="127.0.0.1:80"}', net_layer },
      { 'capabilities {"kv"}', "host" }, -- the host checks each request frame
      { "limits {cpu_ms=5}", "rlimit" },
      { "limits {wall_ms=1000}", "cgroup" },
      { 'limits {mem="1MiB"}', "rlimit" },
      { "limits {open_files=3}", "rlimit" },
      { "limits {processes=0}", "seccomp" },
      { 'limits {output_bytes="1KiB"}', "rlimit" },
      { 'syscalls {deny={"ptrace"}}', "seccomp" },
      { 'syscalls {deny={"mount"}}', "seccomp" },
    }, layers(p:explain("process")))
  end)

  it("says every rule is unenforced for microvm, which this build lacks", function()
    local rows = p:explain("microvm")
    assert.are.equal(13, #rows)
    for _, r in ipairs(rows) do assert.are.equal("none", r.layer) end
  end)

  it("has no rows for an empty policy, and refuses unknown backends", function()
    assert.are.same({}, policy.compile({}):explain())
    for _, b in ipairs({ "nope", 1, "Process" }) do
      assert.are.equal("invalid_argument", err_of(p.explain, p, b).kind)
    end
  end)
end)

-- ---- totable, merge, resolve ----------------------------------------------------------

describe("Policy:totable", function()
  it("round-trips through compile, keeping the spelling of sizes", function()
    local t = {
      imports = { "json" }, capabilities = { "kv" },
      fs = { { read = "/a/**" }, { deny = "/a/b" }, { allow = "/w" }, { write = "/o" } },
      net = { { connect = "[::1]:443" }, { deny = "10.0.0.0/8:*" } },
      limits = { wall_ms = 5, mem = "2GiB", output_bytes = 10 },
      syscalls = { deny = { "ptrace" } },
    }
    local p = policy.compile(t)
    local plain = p:totable()
    assert.is_nil(getmetatable(plain))
    t.version = 1
    assert.are.same(t, plain)
    assert.are.same(plain, policy.compile(plain):totable())
    assert.are.same({ version = 1 }, policy.compile({}):totable())
  end)
end)

describe("policy.merge", function()
  local base = policy.compile({ imports = { "json" }, limits = { wall_ms = 100, cpu_ms = 9 } })

  it("puts spawn options on top in a new policy", function()
    local m = policy.merge(base, { imports = { "math", "json" }, capabilities = { "kv" },
                                   limits = { wall_ms = 50 } })
    assert.are.same({ "json", "math" }, m.imports)
    assert.are.same({ "kv" }, m.capabilities)
    assert.are.same({ wall_ms = 50, cpu_ms = 9 }, m.limits)
    assert.are.same({ "json" }, base.imports)
    assert.are.same({ wall_ms = 100, cpu_ms = 9 }, base.limits)
    assert.is_true(m:check("import", "math"))
  end)

  it("refuses bad options as invalid_argument with problems", function()
    local e = err_of(policy.merge, base, { imports = "math", limits = { mem = "1.5GiB" },
                                           fs = {} })
    assert.are.equal("invalid_argument", e.kind)
    local paths = {}
    for i, p in ipairs(e.problems) do paths[i] = p.path end
    assert.are.same({ "fs", "imports", "limits.mem" }, sorted(paths))
    assert.are.equal("invalid_argument", err_of(policy.merge, {}, {}).kind)
    assert.are.equal("invalid_argument", err_of(policy.merge, base, 5).kind)
  end)
end)

describe("policy.resolve", function()
  it("takes a name, a path, a table or a compiled policy", function()
    assert.are.equal("compute-only", policy.resolve("compute-only").name)
    local by_path = policy.resolve(policy.load("compute-only").source)
    assert.is_nil(by_path.name)
    assert.is_true(policy.is_policy(policy.resolve({ imports = { "json" } })))
    local p = policy.compile({})
    assert.are.equal(p, policy.resolve(p))
  end)

  it("refuses anything else, and unknown names as policy errors", function()
    for _, v in ipairs({ 42, true, print }) do
      assert.are.equal("invalid_argument", err_of(policy.resolve, v).kind)
    end
    assert.are.equal("invalid_argument", err_of(policy.resolve).kind)
    assert.are.equal("policy", err_of(policy.resolve, "no-such-template").kind)
  end)
end)

-- ---- load, path and templates -----------------------------------------------------------

describe("policy.load", function()
  local TEMPLATES = { "stdlib.readonly", "readonly-fs", "readonly-fs.hardened",
                      "compute-only", "ml-inference", "web-scraper" }

  it("finds every template by name on the default path", function()
    for _, name in ipairs(TEMPLATES) do
      local p = policy.load(name)
      assert.are.equal(name, p.name)
      assert.are.equal("/" .. name .. ".lua", p.source:sub(-#name - 5))
      -- templates carry nothing this build refuses at spawn
      assert.are.same({ deny = {} }, p.syscalls)
      for k in pairs(p.limits) do assert.are.equal("wall_ms", k) end
    end
  end)

  it("keeps templates to their documented promises", function()
    for _, name in ipairs({ "stdlib.readonly", "compute-only" }) do
      local p = policy.load(name)
      assert.are.same({}, p.fs)
      assert.are.same({}, p.net)
      assert.is_true(p:check("import", "math"))
    end
    local ro = policy.load("readonly-fs")
    for _, r in ipairs(ro.fs) do assert.is_true(r.access == "read" or r.access == "deny") end
    assert.is_true(ro:check("read", "/srv/data/x.csv"))
    assert.is_false(ro:check("write", "/srv/data/x.csv"))
    assert.is_false(ro:check("write", "/tmp/x"))
    assert.is_false(ro:check("read", "/etc/shadow"))
    assert.is_false(ro:check("read", "/home/u/.ssh/id_rsa"))
    assert.are.same({}, ro.net)
    local ml = policy.load("ml-inference")
    assert.is_true(ml:check("read", "/models/m.bin"))
    assert.is_false(ml:check("write", "/models/m.bin"))
    assert.are.same({}, ml.net)
    local web = policy.load("web-scraper")
    assert.are.same({}, web.fs)
    for _, t in ipairs({ "93.184.216.34:80", "93.184.216.34:443", "[2606:2800::1]:443" }) do
      assert.is_true(web:check("connect", t))
    end
    for _, t in ipairs({ "93.184.216.34:22", "[2606:2800::1]:8080", "169.254.169.254:80",
                         "127.0.0.1:443", "10.0.0.1:443", "192.168.0.1:80", "[::1]:443",
                         "[fd00::1]:443", "[::ffff:127.0.0.1]:80" }) do
      assert.is_false(web:check("connect", t))
    end
    assert.is_true(web:check("import", "http.client"))
  end)

  it("takes a path with a slash or a .lua suffix", function()
    local dir = tmpdir()
    write(dir, "mine.lua", 'return { imports = { "json" } }')
    local p = policy.load(dir .. "/mine.lua")
    assert.is_nil(p.name)
    assert.are.equal(dir .. "/mine.lua", p.source)
    assert.are.equal("policy", err_of(policy.load, dir .. "/absent.lua").kind)
    assert.are.equal("policy", err_of(policy.load, "absent.lua").kind)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("refuses an unknown name, listing where it looked", function()
    local saved = policy.path
    policy.path = { "/nonexistent/one", "/nonexistent/two" }
    local e = err_of(policy.load, "compute-only")
    policy.path = saved
    assert.are.equal("policy", e.kind)
    assert.are.same({ "/nonexistent/one", "/nonexistent/two" }, e.searched)
    for _, v in ipairs({ 42, "", {} }) do
      assert.are.equal("invalid_argument", err_of(policy.load, v).kind)
    end
  end)

  it("searches ISOLATE_POLICY_PATH first, then the installed templates", function()
    local env = { ISOLATE_POLICY_PATH = "/first:/second::" }
    local dirs = policy.default_path(function(k) return env[k] end)
    assert.are.same({ "/first", "/second" }, { dirs[1], dirs[2] })
    assert.is_true(#dirs >= 3)
    local found = false
    for i = 3, #dirs do
      local f = io.open(dirs[i] .. "/compute-only.lua")
      if f then f:close(); found = true end
    end
    assert.is_true(found)
  end)
end)

-- ---- policy files are data ----------------------------------------------------------------

describe("a policy file", function()
  local env = with_policy_dir()

  -- Load a file whose line 2 does `body`; return the error.
  local function load_err(name, body)
    write(env.dir, name .. ".lua", "return {\n  x = " .. body .. ",\n}\n")
    local e = err_of(policy.load, name)
    assert.are.equal("policy", e.kind)
    assert.are.equal(env.dir .. "/" .. name .. ".lua", e.source)
    assert.are.equal(2, e.line)
    return e
  end

  it("cannot touch io", function() load_err("use-io", 'io.open("/etc/passwd")') end)
  it("cannot touch os", function() load_err("use-os", 'os.getenv("HOME")') end)
  it("cannot require", function() load_err("use-require", 'require("os")') end)
  it("cannot load", function() load_err("use-load", 'load("return 1")()') end)
  it("cannot dofile", function() load_err("use-dofile", 'dofile("/etc/passwd")') end)
  it("cannot touch debug", function() load_err("use-debug", "debug.getinfo(1)") end)
  it("cannot print", function() load_err("use-print", 'print("hi")') end)
  it("cannot reach _G", function() load_err("use-g", "_G.io") end)
  it("cannot set metatables", function() load_err("use-mt", "setmetatable({}, {})") end)
  it("cannot use string methods", function()
    load_err("use-string", '("x"):rep(3)')
    assert.are.equal("xxx", ("x"):rep(3)) -- and the host's strings are untouched
  end)

  it("cannot loop forever", function()
    write(env.dir, "loop.lua", "return {\n  x = (function() while true do end end)(),\n}\n")
    local e = err_of(policy.load, "loop")
    assert.are.equal("policy", e.kind)
    assert.are.equal(env.dir .. "/loop.lua", e.source)
  end)

  it("names the file and line of a syntax error", function()
    write(env.dir, "syntax.lua", "return {\n  imports = { 'json' }\n  fs = {},\n}\n")
    local e = err_of(policy.load, "syntax")
    assert.are.equal("policy", e.kind)
    assert.are.same({ env.dir .. "/syntax.lua", 3 }, { e.source, e.line })
  end)

  it("must return a table", function()
    for i, body in ipairs({ "return 42", "return nil", "", "return 'readonly-fs'" }) do
      write(env.dir, "nt" .. i .. ".lua", body)
      local e = err_of(policy.load, "nt" .. i)
      assert.are.equal("policy", e.kind)
      assert.are.equal(env.dir .. "/nt" .. i .. ".lua", e.source)
    end
  end)

  it("reports its problems with the file as source", function()
    local file = write(env.dir, "fields.lua", "return { fs = { { read = 3 } } }")
    local e = err_of(policy.load, "fields")
    assert.are.equal(file, e.source)
    assert.are.same({ "fs[1].read" }, paths_of(policy.load, "fields"))
  end)

  it("may use plain Lua expressions to build its data", function()
    write(env.dir, "expr.lua", [[
      local root = "/srv/" .. "data"
      local mods = {}
      for i = 1, 2 do mods[i] = "m" .. i end
      return { imports = mods, fs = { { read = root .. "/**" } }, limits = { wall_ms = 60 * 1000 } }
    ]])
    local p = policy.load("expr")
    assert.are.same({ "m1", "m2" }, p.imports)
    assert.are.same({ wall_ms = 60000 }, p.limits)
  end)
end)
