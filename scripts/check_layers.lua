-- The habits that keep the house standing (issue 11), checked on a source
-- tree:
--
--   layers  every `#include` of ours in include/ and src/ points down the
--           layers (include/ < src/base < src/kernel < src/python <
--           src/backend/{subinterp,process} < src/core < src/lua <
--           src/host), never between the two backends, and no include
--           cycle joins folders; a source file in a folder outside the
--           layers is a violation too (add the folder to LAYERS first);
--   length  a source file in src/ or lua/ over 600 lines says why in its
--           head comment (its first 30 lines hold "Longer than 600 lines
--           because ...").
--
-- Usage: lua5.4 scripts/check_layers.lua [--root DIR] [--known FILE]
--
-- Each violation is printed as `file:line: kind: detail`. With --known
-- (a ratchet: scripts/layers-known.txt lists the violations the tree had
-- when the check arrived), a listed violation is tolerated, an unlisted
-- one fails, and so does a listed one that no longer occurs: the list can
-- only shrink, and is deleted once empty. Exit status 0 only when clean.
--
-- Loaded with dofile (spec/layers/check_layers_spec.lua), it returns the
-- checker instead of running it.

local M = {}

-- Lowest first. rank orders the layers; folders of one rank (the two
-- backends) must not include each other. A file belongs to the longest
-- prefix that holds it (src/backend/process/worker is process).
M.LAYERS = {
  { dir = "include", rank = 0 },
  { dir = "src/base", rank = 1 },
  { dir = "src/kernel", rank = 2 },
  { dir = "src/python", rank = 3 },
  { dir = "src/backend/subinterp", rank = 4 },
  { dir = "src/backend/process", rank = 4 },
  { dir = "src/core", rank = 5 },
  { dir = "src/lua", rank = 6 },
  { dir = "src/host", rank = 7 },
}

-- Where a quoted include is looked for after the including file's own
-- folder (the -I dirs of CMakeLists.txt: ISOLATE_LAYER_DIRS and the
-- binding's and host's own). A header found in none of them (a system
-- header, netguard.skel.h generated in the build tree) is not ours.
M.INCLUDE_DIRS = {
  "include", "src/base", "src/kernel", "src/python", "src/backend/subinterp",
  "src/backend/process", "src/core", "src/lua", "src/host",
  "src/backend/process/worker",
}

M.MAX_LINES = 600
M.HEAD_LINES = 30
M.REASON = "Longer than 600 lines because"

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

-- The files under root/sub whose names end in one of exts, relative to
-- root, sorted (find(1): the checker needs nothing but lua5.4).
local function list_files(root, sub, exts)
  local out = {}
  if not exists(root .. "/" .. sub) then return out end
  local p = assert(io.popen("cd " .. shell_quote(root) .. " && find "
    .. shell_quote(sub) .. " -type f"))
  for line in p:lines() do
    for _, e in ipairs(exts) do
      if line:sub(-#e) == e then out[#out + 1] = line break end
    end
  end
  p:close()
  table.sort(out)
  return out
end

-- "a/b/../c/./d.h" -> "a/c/d.h"; nil if it climbs out of the root.
local function normalize(path)
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then
      if #parts == 0 then return nil end
      parts[#parts] = nil
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  return table.concat(parts, "/")
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- The layer folder that holds path (relative to the root), or nil.
function M.layer_of(path)
  local best
  for _, l in ipairs(M.LAYERS) do
    if path:sub(1, #l.dir + 1) == l.dir .. "/" and (not best or #l.dir > #best.dir) then
      best = l
    end
  end
  return best
end

-- The file an include names, as the compiler finds it: for a quoted one
-- the including file's folder first, then (both kinds) the include dirs
-- in order: -I dirs serve <x.h> too, so <cell.h> is no way around the
-- layers, while <stdio.h> is found in none of them.
local function resolve(root, from, name, quoted)
  local candidates = { quoted and (dirname(from) .. "/" .. name) or nil }
  for _, d in ipairs(M.INCLUDE_DIRS) do candidates[#candidates + 1] = d .. "/" .. name end
  for _, c in ipairs(candidates) do
    local n = normalize(c)
    if n and exists(root .. "/" .. n) then return n end
  end
  return nil
end

-- Every include of file: {line =, name =, target =} (target nil when the
-- header is not in the tree).
local function includes(root, file)
  local out, n = {}, 0
  for text in io.lines(root .. "/" .. file) do
    n = n + 1
    local open, name = text:match('^%s*#%s*include%s*([<"])([^">]+)[">]')
    if name then
      out[#out + 1] = { line = n, name = name, target = resolve(root, file, name, open == '"') }
    end
  end
  return out
end

local function violation(list, kind, file, line, detail, key)
  list[#list + 1] = { kind = kind, file = file, line = line, detail = detail,
    key = key or (kind .. " " .. file .. ": " .. detail) }
end

-- One include edge: a violation when it points up, sideways between the
-- backends, or out of a file in no layer. Returns the folder edge.
local function judge_edge(list, file, inc)
  local a, b = M.layer_of(file), M.layer_of(inc.target)
  local edge = (a and a.dir or "?") .. " -> " .. (b and b.dir or "?")
  local detail = edge .. " (" .. inc.name .. ")"
  if not a then
    return nil -- the file itself is reported as outside
  elseif not b then
    violation(list, "outside", file, inc.line, detail .. ": folder not in LAYERS")
  elseif a == b then
    return nil
  elseif b.rank > a.rank then
    violation(list, "up", file, inc.line, detail)
  elseif b.rank == a.rank then
    violation(list, "sideways", file, inc.line, detail)
  end
  return a and b and { from = a.dir, to = b.dir } or nil
end

-- Tarjan's strongly connected components over the folder graph; each
-- component of two or more folders is a cycle.
local function components(graph)
  local index, low, on, stack, out, n = {}, {}, {}, {}, {}, 0
  local function visit(v)
    n = n + 1
    index[v], low[v] = n, n
    stack[#stack + 1], on[v] = v, true
    for w in pairs(graph[v] or {}) do
      if not index[w] then
        visit(w)
        low[v] = math.min(low[v], low[w])
      elseif on[w] then
        low[v] = math.min(low[v], index[w])
      end
    end
    if low[v] == index[v] then
      local comp = {}
      repeat
        local w = table.remove(stack)
        on[w] = nil
        comp[#comp + 1] = w
      until w == v
      if #comp > 1 then table.sort(comp) out[#out + 1] = comp end
    end
  end
  local nodes = {}
  for v in pairs(graph) do nodes[#nodes + 1] = v end
  table.sort(nodes)
  for _, v in ipairs(nodes) do if not index[v] then visit(v) end end
  return out
end

-- One violation per cycle, naming the includes that close it.
local function judge_cycles(list, graph, where)
  for _, comp in ipairs(components(graph)) do
    local inside, edges, first = {}, {}, nil
    for _, d in ipairs(comp) do inside[d] = true end
    for _, d in ipairs(comp) do
      local tos = {}
      for to in pairs(graph[d]) do if inside[to] then tos[#tos + 1] = to end end
      table.sort(tos)
      for _, to in ipairs(tos) do
        local at = where[d .. " -> " .. to]
        edges[#edges + 1] = at.file .. ":" .. at.line .. " (" .. d .. " -> " .. to .. ")"
        first = first or at
      end
    end
    violation(list, "cycle", first.file, first.line, table.concat(comp, " <-> ") .. " via "
      .. table.concat(edges, ", "), "cycle " .. table.concat(comp, " "))
  end
end

-- The layer violations of the tree at root.
function M.check_layers(root)
  local list, graph, where = {}, {}, {}
  local files = list_files(root, "src", { ".c", ".h" })
  for _, f in ipairs(list_files(root, "include", { ".h" })) do files[#files + 1] = f end
  for _, file in ipairs(files) do
    if not M.layer_of(file) then
      violation(list, "outside", file, 1, dirname(file) .. ": folder not in LAYERS")
    end
    for _, inc in ipairs(includes(root, file)) do
      local e = inc.target and judge_edge(list, file, inc)
      if e then
        graph[e.from] = graph[e.from] or {}
        graph[e.from][e.to] = true
        local k = e.from .. " -> " .. e.to
        where[k] = where[k] or { file = file, line = inc.line }
      end
    end
  end
  judge_cycles(list, graph, where)
  return list
end

-- The source files of root over max_lines whose head does not say why.
function M.check_lengths(root, max_lines)
  max_lines = max_lines or M.MAX_LINES
  local list = {}
  local files = list_files(root, "src", { ".c", ".h", ".lua" })
  for _, f in ipairs(list_files(root, "lua", { ".lua" })) do files[#files + 1] = f end
  for _, file in ipairs(files) do
    local n, reason = 0, false
    for text in io.lines(root .. "/" .. file) do
      n = n + 1
      if n <= M.HEAD_LINES and text:find(M.REASON, 1, true) then reason = true end
    end
    if n > max_lines and not reason then
      violation(list, "long", file, 1, n .. " lines, no \"" .. M.REASON .. "\" in its first "
        .. M.HEAD_LINES .. " lines", "long " .. file)
    end
  end
  return list
end

function M.check(root, max_lines)
  local list = M.check_layers(root)
  for _, v in ipairs(M.check_lengths(root, max_lines)) do list[#list + 1] = v end
  return list
end

-- The keys of a ratchet file (one a line; # comments and blanks skipped).
function M.read_known(path)
  local keys = {}
  for text in io.lines(path) do
    local k = text:match("^%s*(.-)%s*$")
    if k ~= "" and k:sub(1, 1) ~= "#" then keys[#keys + 1] = k end
  end
  return keys
end

-- The folders of a cycle key ("cycle a b c"), as a set; nil for others.
local function cycle_set(key)
  if key:sub(1, 6) ~= "cycle " then return nil end
  local set = {}
  for d in key:sub(7):gmatch("%S+") do set[d] = true end
  return set
end

local function subset(a, b)
  for d in pairs(a) do if not b[d] then return false end end
  return true
end

-- Whether the listed key k covers the found violation v: the same key,
-- or (cycles) a listed cycle holding every folder of the found one, so
-- that breaking part of a known cycle shrinks it without a "new" cycle.
local function covers(k, v)
  if k == v.key then return true end
  local a, b = cycle_set(v.key), cycle_set(k)
  return a ~= nil and b ~= nil and subset(a, b)
end

-- Splits found violations against the known keys: {new = {violation},
-- gone = {key}, kept = {violation}}.
function M.ratchet(found, known)
  local used, r = {}, { new = {}, gone = {}, kept = {} }
  for _, v in ipairs(found) do
    local hit = false
    for _, k in ipairs(known) do
      if covers(k, v) then hit, used[k] = true, true end
    end
    local into = hit and r.kept or r.new
    into[#into + 1] = v
  end
  for _, k in ipairs(known) do if not used[k] then r.gone[#r.gone + 1] = k end end
  return r
end

local function show(v)
  return string.format("%s:%d: %s: %s", v.file, v.line, v.kind, v.detail)
end

local function main(args)
  local root, known = ".", nil
  local i = 1
  while i <= #args do
    if args[i] == "--root" then root, i = args[i + 1], i + 2
    elseif args[i] == "--known" then known, i = args[i + 1], i + 2
    else io.stderr:write("usage: check_layers.lua [--root DIR] [--known FILE]\n") os.exit(2) end
  end
  local found = M.check(root)
  if not known then
    for _, v in ipairs(found) do print(show(v)) end
    print(string.format("check_layers: %d violation(s)", #found))
    os.exit(#found == 0 and 0 or 1)
  end
  local r = M.ratchet(found, M.read_known(known))
  for _, v in ipairs(r.new) do print("NEW  " .. show(v) .. "\n     key: " .. v.key) end
  for _, k in ipairs(r.gone) do print("GONE " .. k .. " (fixed: remove it from " .. known .. ")") end
  for _, v in ipairs(r.kept) do print("known " .. show(v)) end
  print(string.format("check_layers: %d known violation(s) remain, %d new, %d listed but gone",
    #r.kept, #r.new, #r.gone))
  os.exit((#r.new == 0 and #r.gone == 0) and 0 or 1)
end

if pcall(debug.getlocal, 4, 1) then return M end
main({ ... })
