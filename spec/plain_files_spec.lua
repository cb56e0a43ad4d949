-- Files in cells behave as they do under plain python3, except where a
-- policy says no (issue 19, part 3), and cells run in UTF-8 mode with a
-- true sys.executable (part 4). The expected exception types and errno
-- values are what /usr/bin/python3 gives for the same calls.
local sandbox = require "isolate"
local support = require "support"

local EPERM, ENOENT, EACCES, ENOTDIR, EISDIR = 1, 2, 13, 20, 21
local LOCALE_AT_LOAD = os.setlocale(nil, "all") -- before any cell exists

-- attempt(f) -> ["ok", result] or [exception type, errno] (no None)
local ATTEMPT = [[
def attempt(f):
    try:
        out = ["ok", f()]
    except Exception as e:
        out = [type(e).__name__, getattr(e, "errno", None)]
    return out if out[1] is not None else out[:1]
]]

local root -- root/data (read/write), root/data/ro (read), root/other (nothing)

local sh, write = support.sh, support.write

local function exists(path)
  return os.rename(path, path) ~= nil
end

setup(function()
  root = os.tmpname()
  os.remove(root)
  sh("mkdir -p " .. root .. "/data/ro " .. root .. "/other " .. root .. "/data/sub")
  write(root .. "/data/f.txt", "plain")
  write(root .. "/data/sub/s.txt", "sub")
  write(root .. "/other/secret.txt", "secret")
  sh("ln -s " .. root .. "/other " .. root .. "/data/outlink")
end)

teardown(function() sh("rm -rf " .. root) end)

local function spawn(backend, extra)
  local policy = {
    imports = { "os", "io", "sys", "shutil", "fileinput", "pathlib", "socket" },
    fs = {
      { allow = root .. "/data" },
      { deny = root .. "/data/sub/**" },
    },
  }
  for k, v in pairs(extra or {}) do policy[k] = v end
  return sandbox.spawn({ backend = backend, policy = policy })
end

-- Run code (with ATTEMPT and D, O = the data and other dirs) and return
-- what it posted.
local function run(sb, code)
  sb:exec(ATTEMPT .. string.format("D, O = %q, %q\n", root .. "/data", root .. "/other") .. code)
  return sb:recv(5)
end

local function layers_of(sb)
  local out = {}
  for ev in sb:events() do
    if ev.type == "denial" then out[#out + 1] = ev.layer end
  end
  return out
end

for _, backend in ipairs(support.backends()) do
  describe("files as plain Python has them (" .. backend .. ")", function()
    local sb
    before_each(function()
      sh("rm -rf " .. root .. "/data/w; mkdir " .. root .. "/data/w")
      sb = spawn(backend)
    end)
    after_each(function() sb:close() end)

    it("takes mode bits as open(2) does: a whole st_mode, and fileinput inplace", function()
      local r = run(sb, [[
import os, fileinput
p = D + "/w/m.txt"
fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o100644)
os.close(fd)
q = D + "/w/lines.txt"
open(q, "w").write("a\nb\n")
with fileinput.input(q, inplace=True) as lines:
    for line in lines:
        print(line.upper(), end="")
d = os.open(D, os.O_RDONLY | os.O_DIRECTORY)
os.close(d)
post([oct(os.stat(p).st_mode), open(q).read(), sorted(os.listdir(D + "/w"))])
]])
      assert.are.same({ "0o100644", "A\nB\n", { "lines.txt", "m.txt" } }, r)
    end)

    it("keeps a trailing slash's meaning: must be a directory", function()
      local r = run(sb, [[
import os, shutil
f = D + "/f.txt"
post([attempt(lambda: open(D + "/w/new/", "w")),
      attempt(lambda: os.open(D + "/w/new2/", os.O_CREAT | os.O_WRONLY)),
      attempt(lambda: open(D + "/w/new3/.", "w")),
      attempt(lambda: open(f + "/")),
      attempt(lambda: open(f + "/.")),
      attempt(lambda: open(f + "/..")),
      attempt(lambda: open(f + "/", "w")),
      attempt(lambda: open(D + "/w/missing/../../f.txt")),
      attempt(lambda: os.stat(f + "/")),
      attempt(lambda: os.lstat(f + "/")),
      attempt(lambda: open(D + "/")),
      attempt(lambda: shutil.copyfile(f, D + "/w/missing/"))[0],
      attempt(lambda: os.mkdir(D + "/w/made/")),
      sorted(os.listdir(D + "/w"))])
]])
      assert.are.same({
        { "IsADirectoryError", EISDIR }, { "IsADirectoryError", EISDIR },
        { "FileNotFoundError", ENOENT },
        { "NotADirectoryError", ENOTDIR }, { "NotADirectoryError", ENOTDIR },
        { "NotADirectoryError", ENOTDIR }, { "IsADirectoryError", EISDIR },
        { "FileNotFoundError", ENOENT },
        { "NotADirectoryError", ENOTDIR }, { "NotADirectoryError", ENOTDIR },
        { "IsADirectoryError", EISDIR },
        "FileNotFoundError",
        { "ok" },
        { "made" },
      }, r)
      assert.is_false(exists(root .. "/data/w/new"))
    end)

    it("judges a trailing-slash path by the rules first (no leak, no escape)", function()
      local r = run(sb, [[
post([attempt(lambda: open(O + "/x/", "w")),
      attempt(lambda: open(O + "/secret.txt/")),
      attempt(lambda: open(D + "/outlink/")),
      attempt(lambda: open(D + "/outlink/secret.txt/..")),
      attempt(lambda: open(D + "/sub/", "w"))])
]])
      for i = 1, 5 do
        assert.are.same({ "PermissionError", EACCES }, r[i], "case " .. i)
      end
    end)

    it("makes os.supports_* true to what the wrappers take", function()
      local r = run(sb, [=[
import os, shutil
s = os.supports_follow_symlinks, os.supports_fd, os.supports_dir_fd
os.symlink(D + "/f.txt", D + "/w/link")
shutil.copy2(D + "/w/link", D + "/w/copy", follow_symlinks=False)
fd = os.open(D, os.O_RDONLY)
ffd = os.open(D + "/f.txt", os.O_RDONLY)
post([[os.stat in s[0], os.stat in s[1], os.stat in s[2], os.open in s[2],
       os.lstat in s[0] or os.lstat in s[1] or os.lstat in s[2]],
      os.path.islink(D + "/w/copy"),
      os.stat("f.txt", dir_fd=fd).st_size,
      os.lstat("w/link", dir_fd=fd).st_size != os.stat("w/link", dir_fd=fd).st_size,
      os.stat(ffd).st_size,
      os.read(os.open("f.txt", os.O_RDONLY, dir_fd=fd), 9),
      attempt(lambda: os.stat("../other/secret.txt", dir_fd=fd)),
      attempt(lambda: os.open("../other/secret.txt", os.O_RDONLY, dir_fd=fd)),
      attempt(lambda: os.open("outlink/secret.txt", os.O_RDONLY, dir_fd=fd)),
      attempt(lambda: os.stat("f.txt", dir_fd=ffd)),
      attempt(lambda: os.stat("f.txt", dir_fd=987)),
      attempt(lambda: os.stat(ffd, dir_fd=fd)),
      attempt(lambda: os.unlink("outlink/secret.txt", dir_fd=fd)),
      attempt(lambda: os.unlink("w/copy", dir_fd=fd)),
      os.path.lexists(D + "/w/copy")])
]=])
      assert.are.same({ true, true, true, true, false }, r[1])
      assert.is_true(r[2])
      assert.are.equal(5, r[3])
      assert.is_true(r[4])
      assert.are.equal(5, r[5])
      assert.are.equal("plain", r[6])
      assert.are.same({ "PermissionError", EACCES }, r[7])
      assert.are.same({ "PermissionError", EACCES }, r[8])
      assert.are.same({ "PermissionError", EACCES }, r[9])
      assert.are.same({ "NotADirectoryError", ENOTDIR }, r[10])
      assert.are.same({ "OSError", 9 }, r[11]) -- EBADF
      assert.are.same({ "ValueError" }, r[12]) -- an fd and a dir_fd together
      -- audited calls find dir_fd in the cell thread's own fd table (a
      -- sub-interpreter cell's thread has its own, not the host's)
      assert.are.same({ "PermissionError", EACCES }, r[13])
      assert.are.same({ "ok" }, r[14])
      assert.is_false(r[15])
      assert.are.equal("secret", support.slurp(root .. "/other/secret.txt"))
    end)

    it("asks a path-like object once: what is checked is what is stat'ed", function()
      local r = run(sb, [[
import os
class Turncoat:
    def __init__(self, first, then):
        self.seq = [first, then]
    def __fspath__(self):
        return self.seq.pop(0) if len(self.seq) > 1 else self.seq[0]
post([attempt(lambda: os.stat(Turncoat(D + "/f.txt", O + "/secret.txt")).st_size),
      attempt(lambda: os.lstat(Turncoat(D + "/f.txt", O + "/secret.txt")).st_size),
      attempt(lambda: os.open(Turncoat(D + "/f.txt", O + "/secret.txt"), os.O_RDONLY) >= 0)])
]])
      assert.are.same({ { "ok", 5 }, { "ok", 5 }, { "ok", true } }, r)
    end)

    it("removes trees the fd-based way shutil picks, within the rules", function()
      local r = run(sb, [[
import os, shutil
os.makedirs(D + "/w/t/a/b")
open(D + "/w/t/a/b/x", "w").close()
shutil.rmtree(D + "/w/t")
post([shutil.rmtree.avoids_symlink_attacks, os.path.exists(D + "/w/t"),
      attempt(lambda: shutil.rmtree(D + "/sub"))])
]])
      assert.are.same({ true, false, { "PermissionError", EACCES } }, r)
      assert.is_true(exists(root .. "/data/sub/s.txt"))
    end)

    it("resolves an allowed path strictly: stat of the directories on the way is metadata", function()
      local r = run(sb, [[
import os, pathlib
f = D + "/f.txt"
up = os.path.dirname(D)
post([os.path.realpath(f, strict=True), str(pathlib.Path(f).resolve(strict=True)),
      os.path.isdir(up), os.path.isdir("/"),
      attempt(lambda: os.listdir(up)),
      attempt(lambda: open(O + "/secret.txt")),
      attempt(lambda: os.stat(O)),
      attempt(lambda: os.stat(O + "/secret.txt")),
      attempt(lambda: os.stat(D + "/sub/s.txt"))])
]])
      assert.are.equal(root .. "/data/f.txt", r[1])
      assert.are.equal(root .. "/data/f.txt", r[2])
      assert.is_true(r[3])
      assert.is_true(r[4])
      for i = 5, 9 do
        assert.are.same({ "PermissionError", EACCES }, r[i], "case " .. i)
      end
    end)

    it("sets errno on every guard PermissionError: EACCES for files, EPERM for sockets and processes", function()
      sb:close()
      sb = spawn(backend, { net = { { connect = "unix:" .. root .. "/data/app.sock" } } })
      local r = run(sb, [[
import os, socket
s = socket.socket()
post([attempt(lambda: open(O + "/secret.txt")),
      attempt(lambda: os.remove(O + "/secret.txt")),
      attempt(lambda: s.connect(("127.0.0.1", 9))),
      attempt(lambda: socket.socket().listen()),
      attempt(lambda: socket.socket(socket.AF_UNIX).connect("/nowhere.sock")),
      attempt(lambda: os.system("true")),
      attempt(lambda: os.fork())])
]])
      assert.are.same({
        { "PermissionError", EACCES }, { "PermissionError", EACCES },
        { "PermissionError", EPERM }, { "PermissionError", EPERM },
        { "PermissionError", EPERM }, { "PermissionError", EPERM },
        { "PermissionError", EPERM },
      }, r)
      assert.are.same({ "python-guard", "python-guard", "python-guard", "python-guard",
                        "python-guard", "python-guard", "python-guard" }, layers_of(sb))
    end)

    it("runs in UTF-8 mode: non-ASCII text and file names", function()
      local r = run(sb, [[
import os, sys
open(D + "/w/café.txt", "w").write("café")
post([sys.flags.utf8_mode, sys.getfilesystemencoding(),
      open(D + "/w/café.txt").read(), os.listdir(D + "/w")])
]])
      assert.are.same({ 1, "utf-8", "café", { "café.txt" } }, r)
      assert.are.equal("café", support.slurp(root .. "/data/w/caf\xc3\xa9.txt"))
      assert.are.equal(LOCALE_AT_LOAD, os.setlocale(nil, "all"))
      assert.are.equal("1.5", string.format("%.1f", 1.5))
    end)

    it("names the interpreter it runs as sys.executable, or none", function()
      local r = run(sb, "import sys\npost([sys.executable, sys._base_executable, sys.version])")
      assert.are.equal(r[1], r[2])
      assert.is_falsy(r[1]:find("shims", 1, true))
      if r[1] ~= "" then
        local p = assert(io.popen(support.quote(r[1]) .. " -c 'import sys; print(sys.version)'"))
        local version = p:read("l")
        p:close()
        assert.are.equal(r[3], version)
      end
    end)
  end)
end
