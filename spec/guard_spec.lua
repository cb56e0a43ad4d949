-- Python-level guards in sub-interpreter cells: fs, net, exec, imports and
-- capabilities, each with its PermissionError and its denial event.
local sandbox = require "isolate"
local support = require "support"
local err_of = support.err_of

local root -- a scratch tree: root/data (allowed), root/other (not)

local sh, write, denials = support.sh, support.write, support.denials

-- exec code expecting PermissionError; returns the one denial it caused.
local function denied(sb, code)
  local e = err_of(sb.exec, sb, code)
  assert.are.equal("guest", e.kind)
  assert.are.equal("PermissionError", e.python)
  local evs = denials(sb)
  assert.are.equal(1, #evs)
  assert.are.equal("python-guard", evs[1].layer)
  assert.are.equal(sb.name, evs[1].cell)
  return evs[1], e
end

setup(function()
  root = os.tmpname()
  os.remove(root)
  sh("mkdir -p " .. root .. "/data/sub " .. root .. "/data/out " .. root .. "/other " .. root .. "/data-x")
  write(root .. "/data/a.txt", "inside")
  write(root .. "/other/secret.txt", "secret")
  write(root .. "/data-x/b.txt", "sibling")
  sh("ln -s " .. root .. "/other/secret.txt " .. root .. "/data/link")
  sh("ln -s " .. root .. "/other " .. root .. "/data/dirlink")
end)

teardown(function() sh("rm -rf " .. root) end)

local function fs_cell(extra)
  local policy = {
    imports = { "os", "io", "pathlib", "threading" },
    fs = {
      { read = root .. "/data" },
      { write = root .. "/data/out/**" },
      { deny = root .. "/data/sub/**" },
    },
  }
  for k, v in pairs(extra or {}) do policy[k] = v end
  return sandbox.spawn({ policy = policy })
end

describe("fs guard", function()
  local sb
  before_each(function() sb = fs_cell() end)
  after_each(function() sb:close() end)

  it("allows reads under a read rule through every entry point", function()
    for _, code in ipairs({
      "post(open(%q).read())",
      "import io; post(io.open(%q).read())",
      "import os; fd = os.open(%q, os.O_RDONLY); post(os.read(fd, 100)); os.close(fd)",
      "import pathlib; post(pathlib.Path(%q).read_text())",
    }) do
      sb:exec(string.format(code, root .. "/data/a.txt"))
      assert.are.equal("inside", sb:recv(1))
    end
    sb:exec(string.format("import os; post(sorted(os.listdir(%q)))", root .. "/data"))
    assert.are.same({ "a.txt", "dirlink", "link", "out", "sub" }, sb:recv(1))
    sb:exec(string.format("import os; post(os.stat(%q).st_size)", root .. "/data/a.txt"))
    assert.are.equal(6, sb:recv(1))
  end)

  it("denies reads outside with a PermissionError naming the rule to add", function()
    local target = root .. "/other/secret.txt"
    for _, code in ipairs({
      "open(%q)", "import io; io.open(%q)", "import os; os.open(%q, os.O_RDONLY)",
      "import pathlib; pathlib.Path(%q).read_text()", "import os; os.stat(%q)",
    }) do
      local ev, e = denied(sb, string.format(code, target))
      assert.are.equal("fs", ev.capability)
      assert.are.equal(target, ev.target)
      assert.are.equal("default deny", ev.rule)
      assert.are.equal('fs {read="' .. target .. '"}', e.suggestion)
    end
    local ev = denied(sb, string.format("import os; os.listdir(%q)", root .. "/other"))
    assert.are.equal(root .. "/other", ev.target)
    ev = denied(sb, string.format("import os; list(os.scandir(%q))", root .. "/other"))
    assert.are.equal(root .. "/other", ev.target)
  end)

  it("never matches a sibling with the same prefix", function()
    local ev = denied(sb, string.format("open(%q)", root .. "/data-x/b.txt"))
    assert.are.equal(root .. "/data-x/b.txt", ev.target)
  end)

  it("normalises .. before deciding", function()
    local ev = denied(sb, string.format("open(%q)", root .. "/data/../other/secret.txt"))
    assert.are.equal(root .. "/other/secret.txt", ev.target)
  end)

  it("lets a deny rule beat the allow rule above it", function()
    write(root .. "/data/sub/x", "x")
    local ev = denied(sb, string.format("open(%q)", root .. "/data/sub/x"))
    assert.are.equal("fs {deny=\"" .. root .. "/data/sub/**\"}", ev.rule)
  end)

  it("resolves symlinks before deciding", function()
    local ev = denied(sb, string.format("open(%q)", root .. "/data/link"))
    assert.are.equal(root .. "/other/secret.txt", ev.target)
    ev = denied(sb, string.format("open(%q)", root .. "/data/dirlink/secret.txt"))
    assert.are.equal(root .. "/other/secret.txt", ev.target)
    ev = denied(sb, string.format("import os; os.listdir(%q)", root .. "/data/dirlink"))
    assert.are.equal(root .. "/other", ev.target)
  end)

  it("separates read from write", function()
    local ev = denied(sb, string.format("open(%q, 'w')", root .. "/data/new.txt"))
    assert.are.equal("write (open)", ev.action)
    denied(sb, string.format("open(%q, 'r+')", root .. "/data/a.txt"))
    denied(sb, string.format("import os; os.remove(%q)", root .. "/data/a.txt"))
    denied(sb, string.format("import os; os.mkdir(%q)", root .. "/data/d"))
    sb:exec(string.format("open(%q, 'w').write('ok')", root .. "/data/out/f.txt"))
    sb:exec(string.format("import os; os.makedirs(%q)", root .. "/data/out/x/y"))
    -- write-only: reading it back is not allowed
    local wo <close> = sandbox.spawn({ policy = { fs = { { write = root .. "/data/out/**" } } } })
    denied(wo, string.format("open(%q).read()", root .. "/data/out/f.txt"))
  end)

  it("does not let a symlink swapped in between check and open win", function()
    -- Another process atomically exchanges data/out/flip (a real directory)
    -- and data/out/evil (a symlink to other/) as fast as it can, while the
    -- cell keeps opening data/out/flip/secret.txt. A check-then-open guard
    -- sooner or later opens other/secret.txt; ours must never.
    local out = root .. "/data/out"
    sh("mkdir -p " .. out .. "/flip && echo inside > " .. out .. "/flip/secret.txt")
    sh("ln -s " .. root .. "/other " .. out .. "/evil")
    local running = root .. "/flipper-running"
    write(running, "")
    sh(string.format([[/usr/bin/python3 -c '
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
a, b, flag = (s.encode() for s in sys.argv[1:4])
end = time.time() + 60
while os.path.exists(flag) and time.time() < end:
    libc.renameat2(-100, a, -100, b, 2)  # RENAME_EXCHANGE
' %s %s %s >/dev/null 2>&1 &]], out .. "/flip", out .. "/evil", running))
    local sb2 <close> = sandbox.spawn({ policy = { fs = { { allow = out .. "/**" } } } })
    local ok, seen = pcall(function()
      sb2:exec(string.format([[
seen = {}
for _ in range(20000):
    try:
        with open(%q) as f:
            v = f.read().strip()
    except OSError as e:
        v = type(e).__name__
    seen[v] = seen.get(v, 0) + 1
post(seen)
]], out .. "/flip/secret.txt"))
      return sb2:recv(5)
    end)
    os.remove(running)
    assert(ok, seen)
    assert.is_nil(seen.secret)
    assert.is_true((seen.inside or 0) > 0)
    assert.is_true((seen.PermissionError or 0) > 0)
  end)
end)

describe("net guard", function()
  it("allows listed endpoints and denies the rest", function()
    local sb <close> = sandbox.spawn({ policy = {
      imports = { "socket" },
      net = { { connect = "127.0.0.1:9" }, { connect = "10.0.0.0/8:1000-2000" }, { deny = "10.9.0.0/16:*" } },
    } })
    -- port 9 on loopback is closed: the guard lets it through, the kernel refuses
    sb:exec("import socket\ns = socket.socket()\npost(s.connect_ex(('127.0.0.1', 9)) != 0)\ns.close()")
    assert.is_true(sb:recv(1))
    local ev, e = denied(sb, "s = socket.socket(); s.connect(('127.0.0.1', 80))")
    assert.are.equal("net", ev.capability)
    assert.are.equal("connect", ev.action)
    assert.are.equal("127.0.0.1:80", ev.target)
    assert.are.equal('net {connect="127.0.0.1:80"}', e.suggestion)
    ev = denied(sb, "s = socket.socket(); s.connect_ex(('127.0.0.2', 9))")
    assert.are.equal("127.0.0.2:9", ev.target)
    ev = denied(sb, "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('10.9.1.1', 1500))")
    assert.are.equal("sendto", ev.action)
    assert.are.equal('net {deny="10.9.0.0/16:*"}', ev.rule)
    ev = denied(sb, "s = socket.socket(socket.AF_INET6); s.connect(('::ffff:127.0.0.1', 80))")
    assert.are.equal("127.0.0.1:80", ev.target)
    ev = denied(sb, "s = socket.socket(socket.AF_INET6); s.connect(('::1', 9))")
    assert.are.equal("[::1]:9", ev.target)
  end)

  it("resolves host names and judges every address", function()
    local sb <close> = sandbox.spawn({ policy = { imports = { "socket" }, net = { { connect = "localhost:9" } } } })
    sb:exec("import socket\ns = socket.socket()\npost(s.connect_ex(('localhost', 9)) != 0)")
    assert.is_true(sb:recv(1))
    denied(sb, "s = socket.socket(); s.connect(('localhost', 10))")
  end)
end)

describe("exec guard", function()
  it("refuses os.system, exec, fork, spawn and subprocess", function()
    local sb <close> = sandbox.spawn({ imports = { "os", "subprocess" } })
    for _, code in ipairs({
      "import os; os.system('true')",
      "import os; os.execv('/bin/true', ['true'])",
      "import os; os.fork()",
      "import os; os.spawnv(os.P_WAIT, '/bin/true', ['true'])",
      "import os; os.posix_spawn('/bin/true', ['true'], {})",
      "import subprocess; subprocess.run(['true'])",
      "import os; os.popen('true')",
    }) do
      local ev = denied(sb, code)
      assert.are.equal("exec", ev.capability)
    end
  end)
end)

describe("import and capability denials", function()
  it("emit denial events", function()
    local sb <close> = sandbox.spawn({})
    err_of(sb.exec, sb, "import json")
    local evs = denials(sb)
    assert.are.equal(1, #evs)
    assert.are.equal("import", evs[1].capability)
    assert.are.equal("json", evs[1].target)
    denied(sb, "request('kv', 'get')")
    assert.are.equal(2, sb:stats().denials)
  end)
end)
