-- ml-inference: run a model over inputs the host passes in.
--
-- Allows: reading model files in /models and everything under it (read
--   only; one directory rule, so Landlock enforces it exactly and hardened
--   mode accepts it); importing json,
--   math, array, struct and statistics to decode weights and score inputs.
-- Does not allow: writing anywhere (no write or allow rule), reading
--   anything outside /models, any network access (no net rules: a model
--   cannot phone home or fetch weights), any broker capability.
-- Inputs arrive through call()/exec() arguments and results leave through
--   post() or return values, never through files.
-- Extend it to add your framework's modules, e.g.
--   return { extends = "ml-inference", imports = { "numpy" } }
return {
  version = 1,
  imports = { "json", "math", "array", "struct", "statistics" },
  fs = {
    { read = "/models" },
  },
}
