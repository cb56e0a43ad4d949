-- isolate.learn_policy: the policy file learn mode writes (isolate.learn
-- records, this module decides the rules and writes them).
--
-- From the records (what the cells' rules would have denied, each with how
-- often and where first), it makes a minimal policy that extends the base:
-- one rule per file, network endpoint, import and capability used; a
-- directory only where several of its files were used (a comment says
-- which); never a rule covering /, /proc, /sys or a secret-looking path
-- unless asked (allow_secrets), and every record it left out listed, with
-- why. Everything a guest chose (paths, module names, where it was) reaches
-- the file only as a quoted string or a comment with control characters
-- escaped.
local M = {}

-- ---- what is never learned by default -----------------------------------------

-- Paths under these (or these themselves) are secrets or kernel interfaces.
local SENSITIVE_TREES = { "/proc", "/sys", "/etc/shadow", "/etc/gshadow",
  "/etc/sudoers", "/etc/sudoers.d", "/etc/ssh", "/etc/ssl/private",
  "/etc/security", "/root", "/var/lib/sss", "/run/secrets" }
-- A path with one of these components is secret-looking wherever it is.
local SECRET_NAMES = { [".ssh"] = true, [".gnupg"] = true, [".aws"] = true,
  [".kube"] = true, [".docker"] = true, [".netrc"] = true, [".pgpass"] = true,
  [".git-credentials"] = true, [".password-store"] = true, ["shadow"] = true,
  ["gshadow"] = true, [".vault-token"] = true }
local SECRET_PATTERNS = { "^id_rsa", "^id_dsa", "^id_ecdsa", "^id_ed25519",
  "%.pem$", "%.key$", "%.p12$", "%.pfx$", "%.kdbx$" }

local function under(path, tree)
  return path == tree or path:sub(1, #tree + 1) == tree .. "/"
end

local function secret_component(path)
  for name in path:gmatch("[^/]+") do
    if SECRET_NAMES[name] then return true end
    for _, p in ipairs(SECRET_PATTERNS) do
      if name:find(p) then return true end
    end
  end
  return false
end

-- Why a rule on path (a directory rule when dir) may not be written by
-- default, or nil. A directory rule covers everything beneath it: one
-- above a secret tree or a home covers the secrets in it.
function M.sensitive(path, dir)
  if path == "/" then return "covers /" end
  for _, t in ipairs(SENSITIVE_TREES) do
    if under(path, t) then return "under " .. t end
    if dir and under(t, path) then return "covers " .. t end
  end
  if secret_component(path) then return "a secret-looking path" end
  local home = os.getenv("HOME")
  if dir and (path == "/home" or path:match("^/home/[^/]+$")
              or (home and home ~= "/" and under(home, path))) then
    return "covers a home directory (~/.ssh, ~/.gnupg)"
  end
  return nil
end

-- ---- from records to rules ----------------------------------------------------

local function parent(path)
  return path:match("^(.*)/[^/]+$") or "/"
end

local function first_text(rec)
  return string.format("first: cell %s at %s", rec.cell or "?",
                       rec.where or "(kernel)")
end

-- fs records -> {path=, read=, write=, uses=, first=} per path.
local function fs_paths(records)
  local by, order = {}, {}
  for _, r in ipairs(records) do
    if r.kind == "fs" then
      local e = by[r.target]
      if not e then
        e = { path = r.target, uses = 0, first = r, dir = r.dir }
        by[r.target], order[#order + 1] = e, r.target
      end
      e[r.verb] = true
      e.uses = e.uses + r.uses
    end
  end
  local list = {}
  for i, p in ipairs(order) do list[i] = by[p] end
  return list
end

local function access_key(e)
  return e.read and e.write and "allow" or e.write and "write" or "read"
end

-- Files of one directory (not directories themselves), used with the
-- same access: two or more become the directory, where that is not
-- sensitive.
local function widen(entries, opts, left_out)
  local groups, rules = {}, {}
  for _, e in ipairs(entries) do
    local why = M.sensitive(e.path, e.dir)
    if why and not opts.allow_secrets then
      left_out[#left_out + 1] = { what = "fs " .. access_key(e) .. " " .. e.path,
                                  why = why }
    elseif e.dir then
      rules[#rules + 1] = { key = access_key(e), path = e.path, uses = e.uses,
                            first = e.first, note = why }
    else
      local k = parent(e.path) .. "\0" .. access_key(e)
      groups[k] = groups[k] or { dir = parent(e.path), key = access_key(e) }
      table.insert(groups[k], e)
    end
  end
  for _, e in ipairs(entries) do -- in the order first seen
    local g = not e.dir and groups[parent(e.path) .. "\0" .. access_key(e)]
    if g and not g.done then
      g.done = true
      local why = M.sensitive(g.dir, true)
      if #g >= 2 and (not why or opts.allow_secrets) then
        local names, uses = {}, 0
        for _, f in ipairs(g) do
          names[#names + 1] = f.path:match("[^/]+$"); uses = uses + f.uses
        end
        rules[#rules + 1] = { key = g.key, path = g.dir, uses = uses,
          first = g[1].first, widened = names, note = why }
      else
        for _, f in ipairs(g) do
          rules[#rules + 1] = { key = g.key, path = f.path, uses = f.uses,
                                first = f.first }
        end
      end
    end
  end
  return rules
end

-- Records of kind, deduplicated by target: {target=, uses=, first=}.
local function by_target(records, kind, verb)
  local by, list = {}, {}
  for _, r in ipairs(records) do
    if r.kind == kind and (not verb or r.verb == verb) then
      local e = by[r.target]
      if not e then
        e = { target = r.target, uses = 0, first = r }
        by[r.target], list[#list + 1] = e, e
      end
      e.uses = e.uses + r.uses
    end
  end
  return list
end

-- The rules the records call for: {fs=, connect=, bind=, imports=,
-- capabilities=}, and what was left out ({what=, why=}).
function M.rules(records, left_out, opts)
  return {
    fs = widen(fs_paths(records), opts, left_out),
    connect = by_target(records, "net", "connect"),
    bind = by_target(records, "net", "bind"),
    imports = by_target(records, "import"),
    capabilities = by_target(records, "capability"),
  }
end

-- ---- the file -----------------------------------------------------------------

-- Text for a comment: one line whatever a guest put in it.
local function comment_text(s)
  return (tostring(s):gsub("[%c\127]", function(c)
    return string.format("\\x%02x", c:byte())
  end))
end

local function quote(s)
  return (string.format("%q", s):gsub("\\\n", "\\n"))
end

local function use_comment(e)
  return comment_text(string.format("%d use%s; %s", e.uses,
    e.uses == 1 and "" or "s", first_text(e.first)))
end

local function section(lines, name, list, fmt)
  if #list == 0 then return end
  lines[#lines + 1] = "  " .. name .. " = {"
  for _, e in ipairs(list) do
    if e.widened then
      lines[#lines + 1] = "    -- widened to the directory: " .. #e.widened
        .. " of its files were used: "
        .. comment_text(table.concat(e.widened, ", "))
    end
    if e.note then
      lines[#lines + 1] = "    -- sensitive (" .. comment_text(e.note)
        .. "): written because --allow-secrets was given"
    end
    lines[#lines + 1] = "    " .. fmt(e) .. ", -- " .. use_comment(e)
  end
  lines[#lines + 1] = "  },"
end

local function header(lines, meta, left_out)
  lines[#lines + 1] = "-- Learned by `luaisolate learn` from "
    .. comment_text(meta.script or "a script") .. ": what its cells did that "
    .. (meta.base and ("the base policy " .. comment_text(meta.base))
        or "an empty policy") .. " would deny."
  lines[#lines + 1] = "-- Review it before use: it allows exactly what this run used."
  if #left_out > 0 then
    lines[#lines + 1] = "-- Left out (not granted by this file):"
    for _, x in ipairs(left_out) do
      lines[#lines + 1] = "--   " .. comment_text(x.what) .. ": "
        .. comment_text(x.why)
    end
  end
end

-- The policy file's text for rules (M.rules) and meta {base=, script=}.
function M.render(rules, left_out, meta)
  local lines = {}
  header(lines, meta, left_out)
  lines[#lines + 1] = "return {"
  lines[#lines + 1] = "  version = 1,"
  if meta.base then lines[#lines + 1] = "  extends = " .. quote(meta.base) .. "," end
  section(lines, "imports", rules.imports, function(e) return quote(e.target) end)
  section(lines, "fs", rules.fs, function(r)
    return string.format("{ %s = %s }", r.key, quote(r.path))
  end)
  local net = {}
  for _, kind in ipairs({ "connect", "bind" }) do
    for _, e in ipairs(rules[kind]) do
      net[#net + 1] = { kind = kind, target = e.target, uses = e.uses,
                        first = e.first }
    end
  end
  section(lines, "net", net, function(e)
    return string.format("{ %s = %s }", e.kind, quote(e.target))
  end)
  section(lines, "capabilities", rules.capabilities,
          function(e) return quote(e.target) end)
  lines[#lines + 1] = "}"
  return table.concat(lines, "\n") .. "\n"
end

return M
