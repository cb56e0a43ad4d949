-- Helpers for the specs that end a luaisolate host in every way it can end
-- (lifecycle_spec, fault_spec): start it under a launcher, find its guest
-- processes, end it, and look at what is left in the process table and
-- the cgroup tree.
--
-- The launcher (python3, stdlib only) puts SIGINT, SIGTERM and SIGHUP back
-- to their defaults before it execs the host (a background job of a
-- non-interactive shell starts with SIGINT ignored), and is a child
-- subreaper, as a service manager or a shell's init is: the host's orphans
-- (its zygote and cells) come back to it and are reaped at once. It
-- reports how the host ended and how long after that its last descendant
-- was gone.
local core = require "isolate.core"
local support = require "support"

local M = {}
M.HOST = os.getenv("ISOLATE_HOST")
M.PYTHON = "/usr/bin/python3"

local LAUNCHER = [[
import ctypes, os, signal, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_DFL)
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, st = os.waitpid(pid, 0)
ended, left = time.monotonic(), 0
while time.monotonic() < ended + 5:
    try:
        p, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        break
    if p == 0:
        time.sleep(0.001)
else:
    left = 1
how = ("signal", os.WTERMSIG(st)) if os.WIFSIGNALED(st) else ("exit", os.WEXITSTATUS(st))
sys.stdout.write("\nlauncher: %s %d %.4f %d\n" % (how[0], how[1], time.monotonic() - ended, left))
]]

local launcher_path

local function launcher()
  if not launcher_path then
    launcher_path = os.tmpname()
    local f = assert(io.open(launcher_path, "w"))
    f:write(LAUNCHER)
    f:close()
  end
  return launcher_path
end

function M.available()
  return M.HOST and os.execute("test -x " .. M.PYTHON .. " && command -v pgrep >/dev/null")
end

M.write_script = support.write_temp

-- Start `HOST run script args...`; returns a handle {p=, pid=} once the
-- script printed its pid as its first line (nil and the output if not).
function M.start(script, ...)
  local args = { M.PYTHON, launcher(), M.HOST, "run", script, ... }
  local p = io.popen(table.concat(args, " ") .. " 2>/dev/null", "r")
  local first = p:read("l")
  local pid = first and tonumber(first:match("^(%d+)$"))
  if not pid then
    local rest = p:read("a")
    p:close()
    return nil, (first or "") .. "\n" .. (rest or "")
  end
  return { p = p, pid = pid }
end

-- Wait for the launcher: {how = "exit"|"signal", code =, gone_s =, left =}
-- (gone_s: from the host's end until its last descendant was reaped;
-- left: 1 when some were still there after 5 s).
function M.finish(h)
  local out = h.p:read("a")
  h.p:close()
  local how, code, gone, left = out:match("launcher: (%a+) (%d+) ([%d.]+) (%d)")
  return { how = how, code = tonumber(code), gone_s = tonumber(gone),
           left = tonumber(left), output = out }
end

-- Running luaisolate-cell processes (zygote and cells) of host pid: their
-- command line names the host (a zombie has none: see M.states).
function M.guests(pid)
  local p = io.popen("pgrep -f '^luaisolate-cell --zygote " .. pid .. " '")
  local pids = {}
  for line in p:lines() do pids[#pids + 1] = tonumber(line) end
  p:close()
  return pids
end

-- "pid start-time" of a process, to tell it from a later one with its pid.
function M.identity(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local stat = f:read("a") -- nil when it ended since the open
  f:close()
  local rest = stat and stat:match("%) (.*)$")
  if not rest then return nil end
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  return { state = fields[1], start = fields[20] }
end

-- Of the processes recorded (pid -> identity), those that still exist
-- (running or zombie): {pid = state}.
function M.remaining(recorded)
  local left = {}
  for pid, id in pairs(recorded) do
    local now = M.identity(pid)
    if now and now.start == id.start then left[pid] = now.state end
  end
  return left
end

function M.record(pids)
  local recorded = {}
  for _, pid in ipairs(pids) do recorded[pid] = M.identity(pid) end
  return recorded
end

-- Poll until fn() is true or timeout seconds passed; the seconds it took
-- (or nil at the timeout).
function M.within(timeout, fn)
  local t0 = core.now()
  repeat
    if fn() then return core.now() - t0 end
    core.sleep(0.002)
  until core.now() - t0 > timeout
  return nil
end

function M.cgroup_root()
  for line in io.lines("/proc/self/mountinfo") do
    local mp = line:match("^%S+ %S+ %S+ %S+ (%S+) .- %- cgroup2 ")
    if mp then return mp .. "/luaisolate" end
  end
end

-- Directories under the cgroup root that belong to host pid: host-<pid>,
-- cells-<pid>, <name>-<pid>-<n>.
function M.cgroup_dirs(pid)
  local root = M.cgroup_root()
  if not root then return {} end
  local p = io.popen("ls -1 " .. root .. " 2>/dev/null")
  local dirs = {}
  for name in p:lines() do
    if name == "host-" .. pid or name == "cells-" .. pid
        or name:match("%-" .. pid .. "%-%d+$") then
      dirs[#dirs + 1] = name
    end
  end
  p:close()
  return dirs
end

-- BPF cgroup links attached that no process holds any more (a dead
-- host's that stayed attached, e.g. pinned): the ids bpftool lists, less
-- those some process has an fd of (its fdinfo names the link_id).
function M.orphan_links()
  local p = io.popen("bpftool -j link show 2>/dev/null")
  local text = p:read("a")
  p:close()
  p = io.popen("grep -h '^link_id:' /proc/[0-9]*/fdinfo/* 2>/dev/null")
  local held = {}
  for line in p:lines() do held[tonumber(line:match("%d+"))] = true end
  p:close()
  local n = 0
  for obj in text:gmatch("%b{}") do
    local id = tonumber(obj:match('"id":(%d+)'))
    if obj:find('"type":"cgroup"', 1, true) and id and not held[id] then n = n + 1 end
  end
  return n
end

function M.bpftool()
  return os.execute("command -v bpftool >/dev/null")
end

function M.median(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = v end
  table.sort(t)
  if #t == 0 then return nil end
  return t[(#t + 1) // 2]
end

return M
