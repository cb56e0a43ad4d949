-- readonly-fs: read shared data, write nothing.
--
-- Allows: reading everything under /usr/share and /srv/data; importing
--   os, os.path, pathlib, io, json and csv to walk and parse those files.
-- Does not allow: writing anywhere (there is no write or allow rule, so
--   every write is denied by default), reading outside those two trees,
--   any network access, any broker capability. Starting processes
--   (os.system, subprocess, os.exec*) is refused by the cell's guards
--   whatever the policy says.
-- Secrets are denied explicitly even though no read rule covers them:
--   deny beats every allow, so a policy that extends this one and adds a
--   broad read rule (such as {read = "/etc/**"}) still cannot read them.
-- Hardened mode refuses this template: Landlock cannot take anything away
--   inside a grant, so only the python-guard enforces the deny rules, and
--   hardened mode accepts only rules a kernel layer enforces exactly. Use
--   readonly-fs.hardened there: the same reads, written as whole
--   directories, and no deny rules (what it does not grant, Landlock
--   denies; extend it only with directories that hold no secrets).
return {
  version = 1,
  imports = { "os", "os.path", "pathlib", "io", "json", "csv" },
  fs = {
    { read = "/usr/share/**" },
    { read = "/srv/data/**" },
    { deny = "/etc/shadow" },
    { deny = "/etc/gshadow" },
    { deny = "/etc/sudoers" },
    { deny = "/etc/sudoers.d" },
    { deny = "/etc/ssh" },
    { deny = "/etc/ssl/private" },
    { deny = "/root" },
    -- a wildcard rule matches only what it spells: /** covers the contents
    { deny = "/home/*/.ssh/**" },
    { deny = "/home/*/.gnupg/**" },
  },
}
