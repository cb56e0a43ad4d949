-- compute-only: numbers in, numbers out.
--
-- Allows: the numeric modules below (and their submodules); a 30 second
--   wall-clock limit, enforced in cells by a watchdog (override it with
--   spawn{ limits = { wall_ms = ... } }).
-- Does not allow: any file access (no fs rules), any network access (no
--   net rules), any broker capability, any module not listed (not even
--   json or os): results leave the cell through post() and return values.
return {
  version = 1,
  imports = {
    "math", "cmath", "decimal", "fractions", "numbers", "statistics",
    "random", "itertools", "functools", "operator", "heapq", "bisect",
  },
  limits = { wall_ms = 30000 },
}
