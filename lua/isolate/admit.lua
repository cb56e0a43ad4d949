-- isolate.admit: what spawn refuses, raised as errors that say why, where
-- the option was written and what to write instead (issue 13: hints, and
-- errors caught at the right time). isolate uses it at spawn (and reload),
-- isolate.pipeline when a pipeline or stage is declared.
--
-- Every error carries its facts as data: err.option (the option or rule),
-- err.where ("spawn", "policy", "pipeline", "stage", "wrap", "map"),
-- err.suggestion (the nearest valid name, or the fix), and per kind
-- err.module, err.capability, err.rules / err.refusals. What is refused is
-- decided elsewhere: Policy:refusals (the same function `luaisolate check
-- --mode` asks) and the capability registry of isolate.
--
-- Internal: isolate and isolate.pipeline call it; no public API.
local errors = require "isolate.error"
local rules = require "isolate.rules"

local M = {}

-- The names of a set ({name = true, ...}) or a list, sorted.
local function sorted(valid)
  local out = {}
  if valid[1] ~= nil then
    table.move(valid, 1, #valid, 1, out)
  else
    for name in pairs(valid) do out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

-- unknown_option(what, k, valid [, stage]): raise invalid_argument for an
-- option k that `what` ("spawn", "pipeline", "stage", "wrap", "map") does
-- not take, with the nearest valid one.
function M.unknown_option(what, k, valid, stage)
  valid = sorted(valid)
  error(errors.new("invalid_argument", string.format(
    "unknown %s option '%s'%s%s; valid options: %s", what, tostring(k),
    stage and string.format(" in stage '%s'", stage) or "",
    rules.suggestion(k, valid), table.concat(valid, ", ")),
    { option = tostring(k), suggestion = rules.nearest(k, valid),
      valid = valid, where = what, stage = stage }), 3)
end

-- The message of hardened mode's refusal: every rule, and the rules to
-- write instead where there are some.
local function hardened_message(same, texts, backend)
  local fixes = {}
  for _, r in ipairs(same) do
    if r.fix then fixes[#fixes + 1] = r.rule .. " -> " .. r.fix end
  end
  return string.format("hardened mode: no kernel layer enforces %s for %s "
    .. "cells on this host; %schange the rules (luaisolate check --mode "
    .. "hardened says how), or use mode dev", table.concat(texts, ", "),
    backend, #fixes > 0 and "write " .. table.concat(fixes, ", ")
    .. " (Landlock grants whole directories); " or "")
end

-- refusals(p, config, hardened): raise the first of p:refusals (with the
-- others of its kind: err.rules, err.refusals) for a cell of
-- config.backend. config.imports and config.limits are what the caller's
-- options said: a refusal of one of them is where = config.where or
-- "spawn", of anything else where = "policy".
function M.refusals(p, config, hardened)
  local list = p:refusals(config.backend, { hardened = hardened })
  local first = list[1]
  if not first then return end
  local same, texts = {}, {}
  for _, r in ipairs(list) do
    if r.error == first.error then same[#same + 1], texts[#texts + 1] = r, r.rule end
  end
  local where = config.where or "spawn"
  local fields = { rules = texts, refusals = same, fix = first.fix, where = where }
  local msg = first.reason
  if first.error == "unenforceable" then
    msg = hardened_message(same, texts, config.backend)
    fields.suggestion = first.fix
  elseif first.module then
    fields.option, fields.module = "imports", first.module
    fields.suggestion = first.fix
    fields.where = rules.contains(config.imports or {}, first.module) and where or "policy"
  elseif first.limit then
    fields.option = "limits." .. first.limit
    fields.where = (config.limits or {})[first.limit] ~= nil and where or "policy"
  end
  error(errors.new(first.error, msg, fields), 4)
end

-- handlers(p, config, registry): every capability p grants needs a
-- handler in registry (name -> function) now: a request no handler
-- answers is refused at spawn, not when the guest asks.
function M.handlers(p, config, registry)
  for _, c in ipairs(p.capabilities) do
    if not registry[c] then
      local near = rules.nearest(c, sorted(registry))
      error(errors.new("invalid_argument", string.format(
        "capability '%s' has no handler; register one with "
        .. "sandbox.capability('%s', fn) before spawn%s", c, c,
        near and string.format(" (did you mean '%s'?)", near) or ""),
        { option = "capabilities", capability = c, suggestion = near,
          where = rules.contains(config.capabilities or {}, c)
            and (config.where or "spawn") or "policy" }), 4)
    end
  end
end

return M
