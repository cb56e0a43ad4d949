-- Extension modules that cannot live in more than one interpreter
-- (single-phase init: numpy's _multiarray_umath, our spec/ext/singlephase.c)
-- never take the host down. Each cell sequence runs in a fresh host
-- process, since which interpreter owns such an extension is process-wide;
-- the host must exit normally after each.
local sandbox = require "isolate"
local support = require "support"

local HOST = os.getenv("ISOLATE_HOST")
local EXT_DIR = os.getenv("ISOLATE_TEST_EXT_DIR")
local DIST = "/usr/lib/python3/dist-packages" -- Debian's python3-numpy

-- A host script: cells A and B import module (B while A lives, or after A
-- closed); each prints "label ok|error python denials", then one more cell
-- proves the host still runs Python.
local function script(module, backend, sequence)
  return string.format([[
local sandbox = require "isolate"
local module, backend, sequence = %q, %q, %q
local paths = { %q, %q }
local function cell()
  return sandbox.spawn{ backend = backend, imports = { module, "sys" },
                        policy = { fs = { { read = paths[1] }, { read = paths[2] } } } }
end
local code = "import sys; sys.path[:0] = " .. string.format("[%%q, %%q]", paths[1], paths[2])
  .. "\nimport " .. module .. "\npost(1)"
local function try(label, sb)
  local ok, e = pcall(sb.exec, sb, code)
  local n = 0
  for ev in sb:events() do
    if ev.type == "denial" and ev.rule == "one-interpreter extension" then n = n + 1 end
  end
  print(label, ok and "ok" or e.kind, ok and "-" or e.python, n)
end
local a = cell()
try("A", a)
if sequence == "closed" then a:close() end
local b = cell()
try("B", b)
a:close()
b:close()
local c <close> = sandbox.spawn{}
c:exec("post(40 + 2)")
print("alive", c:recv(10))
]], module, backend, sequence, EXT_DIR or "", DIST)
end

-- Run a sequence in its own host: {A = {status, python, denials}, B = ...}.
local function run(module, backend, sequence)
  local path = support.write_temp(script(module, backend, sequence))
  local code, out, err = support.run(HOST, "run", path)
  os.remove(path)
  assert.are.equal(0, code, err)
  local rows = {}
  for label, status, python, n in out:gmatch("(%u)\t(%S+)\t(%S+)\t(%d+)\n") do
    rows[label] = { status, python, tonumber(n) }
  end
  assert.is_truthy(out:find("alive\t42", 1, true), out .. err)
  return rows
end

local LOADED = { "ok", "-", 0 }
local REFUSED = { "guest", "ImportError", 1 }

-- What a sub-interpreter cell sequence gives: the first interpreter keeps
-- the module in legacy cells; own-GIL cells (3.12+) never load one.
local function expect_sub(rows)
  local first = sandbox.info().own_gil and REFUSED or LOADED
  assert.are.same(first, rows.A)
  assert.are.same(REFUSED, rows.B)
end

local function sequences(module)
  it("refuses a second live sub-interpreter cell", function()
    expect_sub(run(module, "subinterpreter", "live"))
  end)
  it("refuses a sub-interpreter cell after the first one closed", function()
    expect_sub(run(module, "subinterpreter", "closed"))
  end)
  it("loads it in every process cell", function()
    local rows = run(module, "process", "live")
    assert.are.same(LOADED, rows.A)
    assert.are.same(LOADED, rows.B)
  end)
end

if not HOST or not EXT_DIR then
  print("SKIP extensions_spec: ISOLATE_HOST and ISOLATE_TEST_EXT_DIR (set by ctest) are needed")
  return
end

describe("a single-phase extension of our own (singlephase.so)", function()
  sequences("singlephase")
end)

-- numpy as Debian ships it, when it is built for this build's CPython.
local function numpy_loads()
  local major, minor = sandbox.info().python:match("^(%d+)%.(%d+)")
  local tag = "cpython-" .. major .. minor
  local ls = io.popen("ls " .. DIST .. "/numpy/core/ 2>/dev/null | grep -c '^_multiarray_umath[.]" .. tag .. "'")
  local found = tonumber(ls:read("a")) or 0
  ls:close()
  if found == 0 then
    print(string.format("SKIP numpy: no %s/numpy built for %s (python3-numpy missing, or built for another CPython)",
                        DIST, tag))
    return false
  end
  local sb <close> = sandbox.spawn{ backend = "process", imports = { "numpy", "sys" },
                                    policy = { fs = { { read = DIST } } } }
  local ok, e = pcall(sb.exec, sb, string.format("import sys; sys.path.append(%q)\nimport numpy", DIST))
  if not ok then
    print(string.format("SKIP numpy (Python %s): %s", sandbox.info().python,
                        (e.message:match("[^\n]+") or e.message)))
  end
  return ok
end

describe("numpy", function()
  if numpy_loads() then sequences("numpy") end
end)

-- PyYAML's C half (Cython) refuses a second interpreter by itself, and
-- yaml then quietly uses its pure-Python loader: the refusal must show.
describe("PyYAML", function()
  local function yaml_cell(backend)
    return sandbox.spawn{ backend = backend, imports = { "yaml", "sys" },
                          policy = { fs = { { read = DIST } } } }
  end
  local code = string.format("import sys; sys.path.append(%q)\nimport yaml\npost(yaml.__with_libyaml__)", DIST)
  local function denials(sb)
    local n = 0
    for ev in sb:events() do
      if ev.type == "denial" and ev.rule == "one-interpreter extension" then n = n + 1 end
    end
    return n
  end
  local probe <close> = yaml_cell("process")
  local ok = pcall(probe.exec, probe, code)
  if not ok or probe:recv(5) ~= true or sandbox.info().own_gil then
    print("SKIP PyYAML: python3-yaml with its C loader is not importable by this build's CPython in legacy cells")
    return
  end
  it("a second sub-interpreter cell falls back to pure Python with a denial event", function()
    local a <close> = yaml_cell("subinterpreter")
    local b <close> = yaml_cell("subinterpreter")
    a:exec(code)
    b:exec(code)
    assert.is_true(a:recv(5))
    assert.are.equal(0, denials(a))
    assert.is_false(b:recv(5))
    assert.is_true(denials(b) >= 1)
  end)
end)
