-- readonly-fs.hardened: readonly-fs for hardened mode (every rule has a
-- kernel layer that enforces it exactly: `luaisolate check --mode hardened
-- readonly-fs.hardened` passes).
--
-- Allows: reading everything in /usr/share and /srv/data (whole directories:
--   Landlock grants those, so it enforces these rules itself); importing os,
--   os.path, pathlib, io, json and csv to walk and parse those files.
-- Does not allow: writing anywhere, reading outside those two trees, any
--   network access, any broker capability. Starting processes is refused
--   by the cell's guards whatever the policy says.
-- Why no deny rules (readonly-fs has them for /etc/shadow, ~/.ssh, ...):
--   Landlock cannot take anything away inside a grant, so hardened mode
--   refuses deny rules. Nothing here grants /etc, /root or /home, and
--   Landlock denies what is not granted. A policy that extends this one
--   must not add a read rule over secrets: no deny rule will catch it.
return {
  version = 1,
  imports = { "os", "os.path", "pathlib", "io", "json", "csv" },
  fs = {
    { read = "/usr/share" },
    { read = "/srv/data" },
  },
}
