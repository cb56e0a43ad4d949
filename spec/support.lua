-- Helpers shared by the specs (spec/ is on LUA_PATH under ctest).
local sandbox = require "isolate"
local assert = require "luassert"

local support = {}

-- Call fn(...), expect it to raise an isolate.Error, and return that error.
function support.err_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  assert.are.equal(sandbox.Error, getmetatable(err), "not an isolate.Error: " .. tostring(err))
  return err
end

-- The backends the ABI and value specs run against: every implemented one
-- that runs guest code (so the two cannot drift apart).
function support.backends()
  local out = {}
  for _, b in ipairs(sandbox.IMPLEMENTED) do
    if b ~= "microvm" then out[#out + 1] = b end
  end
  return out
end

-- This process's pid: in a command the specs run, /proc/self is the
-- command's own. (The file is closed at once: an fd the host holds open
-- is one a guest may try to reopen, spec/attack_fds_spec.lua.)
do
  local stat = assert(io.open("/proc/self/stat"))
  support.pid = stat:read("l"):match("^%d+")
  stat:close()
end

-- How many lines `ls -1 <args>` prints (a directory's entries; with -d,
-- what a glob matches), the shell expanding args; 0 for nothing there.
function support.count_ls(args)
  local p = io.popen("ls -1 " .. args .. " 2>/dev/null | wc -l")
  local n = tonumber(p:read("a"))
  p:close()
  return n
end

-- spawn(opts) for one backend.
function support.spawner(backend)
  return function(opts)
    opts = opts or {}
    opts.backend = backend
    return sandbox.spawn(opts)
  end
end

-- A cell spawned past isolate's own checks (isolate.core.spawn), so that
-- a spec reaches the cell's guards with imports spawn refuses up front
-- (sandbox.spawn refuses those with invalid_argument: spec/hints_spec.lua).
local core_cells = 0
function support.core_spawn(backend, imports)
  local core = require "isolate.core"
  core_cells = core_cells + 1
  return core.spawn({ name = "core-" .. core_cells, backend = backend,
                      imports = imports, capabilities = {},
                      plan = core.plan({ fs = {}, net = {} }), syscalls_deny = {} },
                    function() error("no capability is granted", 0) end)
end

-- A shell word for s.
function support.quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- The row of sb:confinement() for layer, or nil.
function support.row(sb, layer)
  for _, r in ipairs(sb:confinement()) do
    if r.layer == layer then return r end
  end
end

-- Is layer active in sb (default: a fresh sub-interpreter cell)? Prints
-- why not, so a skip always says why.
function support.active(layer, sb)
  local fresh <close> = not sb and sandbox.spawn({}) or nil
  local r = support.row(sb or fresh, layer)
  if r and r.state == "active" then return true end
  print(string.format("SKIP %s: %s", layer, r and r.detail or "no such layer"))
  return false
end

-- A fresh temporary file holding text; its path.
function support.write_temp(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

-- Call fn(...) with io.stdout and io.stderr captured (restored even when
-- it raises): pcall's ok and first result, then stdout and stderr.
function support.captured(fn, ...)
  local function collector()
    local parts = {}
    return { write = function(self, ...)
      for _, v in ipairs({ ... }) do parts[#parts + 1] = tostring(v) end
      return self
    end, text = function() return table.concat(parts) end }
  end
  local out, err = collector(), collector()
  local saved_out, saved_err = io.stdout, io.stderr
  io.stdout, io.stderr = out, err
  local ok, result = pcall(fn, ...)
  io.stdout, io.stderr = saved_out, saved_err
  return ok, result, out.text(), err.text()
end

-- Run a shell command; raise if it fails.
function support.sh(cmd) assert(os.execute(cmd), cmd) end

-- A fresh temporary directory (mktemp -d); its path.
function support.tmpdir()
  local p = io.popen("mktemp -d")
  local d = p:read("l")
  p:close()
  return d
end

-- Write text to path (created or truncated).
function support.write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- The denial events sb has queued, in order (taking them off its queue).
function support.denials(sb)
  local out = {}
  for ev in sb:events() do
    if ev.type == "denial" then out[#out + 1] = ev end
  end
  return out
end

-- The whole of a file, or nil when it cannot be opened.
function support.slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Run the host binary with the given arguments (stdin empty); returns the
-- exit code, stdout and stderr. A death by signal fails the spec.
function support.run(host, ...)
  local cmd = { support.quote(host) }
  for _, a in ipairs({ ... }) do cmd[#cmd + 1] = support.quote(a) end
  local out, err = os.tmpname(), os.tmpname()
  local _, how, code = os.execute(table.concat(cmd, " ") .. " </dev/null >" .. out .. " 2>" .. err)
  assert.are.equal("exit", how, "the host died of a signal")
  local stdout, stderr = support.slurp(out), support.slurp(err)
  os.remove(out)
  os.remove(err)
  return code, stdout, stderr
end

-- A small JSON decoder, enough to read the CLIs' output back (null -> nil).
function support.decode_json(s)
  local pos = 1
  local value
  local function skip() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local function lit(word, v)
    assert(s:sub(pos, pos + #word - 1) == word, "bad literal at " .. pos)
    pos = pos + #word
    return v
  end
  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local c = s:sub(pos, pos)
      if c == '"' then pos = pos + 1; return table.concat(out) end
      if c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        if e == "u" then
          out[#out + 1] = utf8.char(tonumber(s:sub(pos + 2, pos + 5), 16))
          pos = pos + 6
        else
          out[#out + 1] = ({ b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" })[e] or e
          pos = pos + 2
        end
      else
        assert(c ~= "" and c:byte() >= 32, "bad string at " .. pos)
        out[#out + 1] = c
        pos = pos + 1
      end
    end
  end
  local function list(open, close, item)
    local out = {}
    pos = pos + 1
    skip()
    if s:sub(pos, pos) == close then pos = pos + 1; return out end
    repeat
      item(out)
      skip()
      local c = s:sub(pos, pos)
      pos = pos + 1
    until c ~= ","
    assert(s:sub(pos - 1, pos - 1) == close, "expected " .. close .. " at " .. pos)
    return out
  end
  function value()
    skip()
    local c = s:sub(pos, pos)
    if c == "{" then
      return list("{", "}", function(t)
        skip()
        local k = str()
        skip()
        assert(s:sub(pos, pos) == ":")
        pos = pos + 1
        t[k] = value()
      end)
    elseif c == "[" then
      return list("[", "]", function(t) t[#t + 1] = value() end)
    elseif c == '"' then return str()
    elseif c == "t" then return lit("true", true)
    elseif c == "f" then return lit("false", false)
    elseif c == "n" then return lit("null", nil)
    end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    assert(num and #num > 0, "bad value at " .. pos)
    pos = pos + #num
    return math.tointeger(tonumber(num)) or tonumber(num)
  end
  local v = value()
  skip()
  assert(pos == #s + 1, "trailing data at " .. pos)
  return v
end

return support
