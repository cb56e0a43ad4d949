-- Learn mode (issue 14): `luaisolate learn` on both backends writes a
-- policy that checks clean, under which the same script runs with no
-- denial, and which still denies what the script did not do; secrets are
-- left out unless asked for; several files of one directory become the
-- directory. In-process: the mode is refused while hardened, and a
-- learning cell allows, records where the guest was, and says audit.
local sandbox = require "isolate"
local cli = require "isolate.cli"
local support = require "support"

local HOST = os.getenv("ISOLATE_HOST")
local PORT, OTHER_PORT = 1, 2 -- nothing listens: a refused connect, not a denial

-- The workload: reads two files of data/, one of one/, a secret-looking
-- file, imports json, connects to 127.0.0.1:PORT. arg: policy (nil while
-- learning), the directory, the backend (nil: learn's --backend decides).
-- It prints how many denials its cell had.
local JOB = "local PORT = " .. PORT .. "\n" .. [=[
local policy, dir, backend = arg[1], arg[2], arg[3]
if policy == "" then policy = nil end
local sb <close> = sandbox.spawn{ policy = policy, backend = backend }
sb:exec(string.format([[
import json, socket
D = %q
for name in ("data/a.txt", "data/b.txt", "one/used.txt"):
    open(D + "/" + name).read()
try:
    open(D + "/home/.ssh/id_rsa").read()
except OSError:
    pass
s = socket.socket()
try:
    s.connect(("127.0.0.1", %d))
except OSError:
    pass
s.close()
post(json.dumps(1))
]], dir, PORT))
assert(sb:recv(5) == "1")
local n = 0
for ev in sb:events() do if ev.type == "denial" then n = n + 1 end end
print("denials " .. n)
]=]

local function make_dir()
  local dir = support.tmpdir()
  support.sh("mkdir -p " .. dir .. "/data " .. dir .. "/one " .. dir .. "/home/.ssh")
  for _, f in ipairs({ "data/a.txt", "data/b.txt", "data/c.txt", "one/used.txt",
                       "one/sibling.txt", "home/.ssh/id_rsa" }) do
    support.write(dir .. "/" .. f, "x\n")
  end
  support.write(dir .. "/job.lua", JOB)
  return dir
end

local function learn_policy(dir, backend, flag)
  local out = dir .. (flag and "/learned-flag.lua" or "/learned.lua")
  local argv = { "learn", "--backend", backend, "-o", out }
  if flag then argv[#argv + 1] = flag end
  table.move({ dir .. "/job.lua", "", dir }, 1, 3, #argv + 1, argv)
  local code, _, err = support.run(HOST, table.unpack(argv))
  return code, out, err
end

local function denials_of_rerun(dir, file, backend)
  local code, out = support.run(HOST, "run", dir .. "/job.lua", file, dir, backend)
  assert.are.equal(0, code)
  return tonumber(out:match("denials (%d+)"))
end

for _, backend in ipairs(support.backends()) do
  describe("luaisolate learn (" .. backend .. ")", function()
    if not HOST then
      print("# learn_spec: skipped, ISOLATE_HOST (the luaisolate binary) is not set")
      return
    end
    local dir, file, p, file_all

    setup(function()
      dir = make_dir()
      local code, code_all
      code, file = learn_policy(dir, backend)
      code_all, file_all = learn_policy(dir, backend, "--allow-secrets")
      assert.are.same({ 0, 0 }, { code, code_all })
      p = sandbox.policy.load(file)
    end)

    it("writes a policy that luaisolate check passes, in dev and hardened mode", function()
      local ok, code = support.captured(cli.check, { file })
      assert.is_true(ok)
      assert.are.equal(0, code)
      local probe <close> = sandbox.spawn{ backend = "process" }
      if support.active("bpf", probe) then -- hardened judges addresses with it
        ok, code = support.captured(cli.check, { "--mode", "hardened", "--backend",
                                                 backend, file })
        assert.is_true(ok)
        assert.are.equal(0, code)
      end
    end)

    it("lets the same script run again, enforcing, with no denial", function()
      assert.are.equal(0, denials_of_rerun(dir, file_all, backend))
      -- without --allow-secrets: the one secret it read is denied
      assert.are.equal(1, denials_of_rerun(dir, file, backend))
    end)

    it("still denies what the script did not do", function()
      assert.is_false((p:check("read", dir .. "/one/sibling.txt")))
      local sb <close> = sandbox.spawn{ policy = file, backend = backend }
      local err = support.err_of(sb.exec, sb, "import csv")
      assert.are.equal("guest", err.kind)
      assert.are.equal("ImportError", err.python)
      sb:exec(string.format([[
import socket
out = []
try:
    open(%q).read()
except PermissionError:
    out.append("fs")
s = socket.socket()
try:
    s.connect(("127.0.0.1", %d))
except PermissionError:
    out.append("net")
s.close()
post(out)
]], dir .. "/one/sibling.txt", OTHER_PORT))
      assert.are.same({ "fs", "net" }, sb:recv(5))
      local kinds = {}
      for _, ev in ipairs(support.denials(sb)) do kinds[ev.capability] = true end
      assert.are.same({ import = true, fs = true, net = true }, kinds)
    end)

    it("grants exactly the file, the endpoint and the import used", function()
      assert.is_true((p:check("read", dir .. "/one/used.txt")))
      assert.is_false((p:check("write", dir .. "/one/used.txt")))
      assert.is_true((p:check("connect", "127.0.0.1:" .. PORT)))
      assert.is_false((p:check("connect", "127.0.0.1:" .. OTHER_PORT)))
      assert.is_true((p:check("import", "json")))
      assert.is_false((p:check("import", "csv")))
    end)

    it("widens to the directory only where several of its files were used", function()
      assert.is_true((p:check("read", dir .. "/data/c.txt")))
      local text = support.slurp(file)
      local before = text:match("\n([^\n]*)\n[^\n]*read = \"" .. dir:gsub("%p", "%%%0")
                                .. "/data\"")
      assert.is_truthy(before and before:match("^%s*%-%- widened"))
    end)

    it("extends --base and learns only what the base would deny", function()
      support.write(dir .. "/base_job.lua", [[
local sb <close> = sandbox.spawn{}
sb:exec("import math, json\npost(json.dumps(math.floor(2.5)))")
assert(sb:recv(5) == "2")
]])
      local out = dir .. "/based.lua"
      local code = support.run(HOST, "learn", "--backend", backend, "--base",
                               "compute-only", "-o", out, dir .. "/base_job.lua")
      assert.are.equal(0, code)
      local based = sandbox.policy.load(out)
      assert.is_true((based:check("import", "json")))
      assert.is_true((based:check("import", "math")))
      local imports = {}
      for m in support.slurp(out):gmatch('\n    "([%w_.]+)", %-%-') do
        imports[#imports + 1] = m
      end
      assert.are.same({ "json" }, imports) -- math came from the base
    end)

    it("leaves a secret-looking path out unless --allow-secrets asks", function()
      local secret = dir .. "/home/.ssh/id_rsa"
      assert.is_false((p:check("read", secret)))
      assert.is_true((sandbox.policy.load(file_all):check("read", secret)))
    end)
  end)
end

describe("isolate.learn's recorder", function()
  local learn = require "isolate.learn"
  local function denial(cap, action, target, where)
    return { type = "denial", capability = cap, action = action, target = target,
             rule = "default deny", layer = "python-guard", source = "cell",
             cell = "c", where = where }
  end

  it("writes guest-chosen text only quoted or escaped, and leaves out patterns", function()
    local rec = learn.recorder()
    rec:add(denial("fs", "read (open)", "/tmp/x\nreturn os.exit(3)--", "<c>:1\nos.exit(4)"))
    rec:add(denial("fs", "read (open)", "/tmp/y/*", "<c>:2"))
    rec:add(denial("capability", "request", "kv", "<c>:3"))
    rec:add(denial("import", "import", "os; x", "<c>:4"))
    rec:add(denial("exec", "os.system", "ls", "<c>:5"))
    local file = os.tmpname() .. ".lua"
    local rules, left_out = learn.write(rec, file, {})
    assert.is_table(rules)
    local p = sandbox.policy.load(file)
    assert.is_true((p:check("read", "/tmp/x\nreturn os.exit(3)--")))
    assert.is_false((p:check("read", "/tmp/y/z")))
    assert.is_true((p:check("capability", "kv")))
    assert.are.equal(3, #left_out) -- the pattern, the odd module name, exec
    os.remove(file)
  end)

  it("counts a use once per action and keeps where it was first", function()
    local rec = learn.recorder()
    for _ = 1, 3 do -- one open() in a loop: two records each
      rec:add(denial("fs", "read (open)", "/tmp/f", "<c>:1"))
      rec:add(denial("fs", "read (open)", "/tmp/f", "<c>:1"))
    end
    rec:add(denial("net", "connect", "127.0.0.1:80", "<c>:1"))
    rec:add(denial("net", "connect", "127.0.0.1:80", "<c>:1")) -- a loop: two calls
    rec:add(denial("net", "sendto", "127.0.0.1:80", "<c>:2"))
    local k = denial("net", "connect", "127.0.0.1:80")
    k.source, k.layer, k.rule = "kernel", "bpf", "the cell's net rules"
    rec:add(k) -- the kernel saw the first one too
    local rules = rec:result({})
    assert.are.equal(3, rules.fs[1].uses)
    assert.are.equal(1, #rules.connect)
    assert.are.equal(3, rules.connect[1].uses)
    assert.are.equal("<c>:1", rules.connect[1].first.where)
  end)
end)

describe("learn mode in a host", function()
  after_each(function() sandbox.configure{ mode = "dev" } end)

  it("is refused in hardened mode, with kind invalid_argument", function()
    sandbox.configure{ mode = "hardened" }
    local err = support.err_of(sandbox.configure, { mode = "learn" })
    assert.are.equal("invalid_argument", err.kind)
    assert.are.equal("hardened", sandbox.info().mode)
    assert.is_false(sandbox.info().learning)
  end)

  it("says so in sandbox.info() and on stderr", function()
    local ok, _, _, err = support.captured(sandbox.configure, { mode = "learn" })
    assert.is_true(ok)
    assert.is_true(sandbox.info().learning)
    assert.is_truthy(err:find("LEARN MODE", 1, true))
    local doctor = require "isolate.doctor"
    local ok2, code, out = support.captured(doctor.doctor, { "--json" })
    assert.is_true(ok2)
    assert.are.equal(0, code)
    local doc = support.decode_json(out)
    assert.are.equal("learn", doc.mode)
    assert.is_true(doc.learning)
  end)

  for _, backend in ipairs(support.backends()) do
    it("lets a " .. backend .. " cell do what its policy denies, and records "
       .. "where the guest was", function()
      support.captured(sandbox.configure, { mode = "learn" }) -- its banner
      local sb <close> = sandbox.spawn{ backend = backend }
      sb:exec("import json\npost(json.dumps([1]))")
      assert.are.equal("[1]", sb:recv(5))
      local d = support.denials(sb)
      assert.are.equal(1, #d)
      assert.are.equal("import", d[1].capability)
      assert.are.equal("json", d[1].target)
      assert.are.equal("<" .. sb.name .. ">:1", d[1].where)
      assert.are.equal("audit", support.row(sb, "landlock_fs").state)
      for _, layer in ipairs({ "seccomp", "bpf" }) do
        local row = support.row(sb, layer)
        if row and row.state ~= "missing" then assert.are.equal("audit", row.state) end
      end
    end)
  end

  -- C code that connects past the Python guard: the BPF guard logs and
  -- allows it (the connect is refused by the port, not by the guard).
  local CONNECT_IN_C = string.format([[
import ctypes, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
s = socket.socket()
addr = struct.pack("=HH4s8x", socket.AF_INET, socket.htons(%d), socket.inet_aton("127.0.0.1"))
libc.connect(s.fileno(), addr, len(addr))
post(ctypes.get_errno())
]], PORT)

  it("has the BPF guard log and allow a connect made past the Python guard", function()
    local probe <close> = sandbox.spawn{ backend = "process" }
    if not support.active("bpf", probe) then return end
    local dev <close> = sandbox.spawn{ backend = "process", imports = { "ctypes", "socket", "struct" } }
    dev:exec(CONNECT_IN_C)
    assert.are.equal(1, dev:recv(5)) -- EPERM: the guard refuses it
    support.captured(sandbox.configure, { mode = "learn" })
    local sb <close> = sandbox.spawn{ backend = "process" }
    sb:exec(CONNECT_IN_C)
    assert.are.equal(111, sb:recv(5)) -- ECONNREFUSED: the guard let it through
    local kernel = {}
    for _, d in ipairs(support.denials(sb)) do
      if d.source == "kernel" then kernel[#kernel + 1] = d.target end
    end
    assert.are.same({ "127.0.0.1:" .. PORT }, kernel)
  end)
end)
