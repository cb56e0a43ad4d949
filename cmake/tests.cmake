# Every test is registered with ctest: the C unit tests in spec/c and the
# busted specs in spec/. Specs run under plain lua5.4 against the built
# module; in a sanitizer build they run inside the (instrumented) host.
find_program(BUSTED busted REQUIRED)
find_program(LUA54 lua5.4 REQUIRED)
# spec/doc_spec.lua: the man pages (groff -ww -z) and the API reference (LDoc)
find_program(GROFF groff REQUIRED)
find_program(LDOC ldoc REQUIRED)

# test_<name> from spec/c/test_<name>.c, plus extra sources and libraries.
function(isolate_c_test name)
  add_executable(test_${name} spec/c/test_${name}.c ${ARGN})
  target_include_directories(test_${name} PRIVATE ${ISOLATE_LAYER_DIRS} src/lua spec/c)
  target_link_libraries(test_${name} PRIVATE isolate_core)
  target_compile_definitions(test_${name} PRIVATE _GNU_SOURCE)
  add_test(NAME c_${name} COMMAND test_${name})
  if(ISOLATE_SANITIZE)
    set_tests_properties(c_${name} PROPERTIES ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0")
  endif()
endfunction()

isolate_c_test(value)
isolate_c_test(handoff)
isolate_c_test(plan)
isolate_c_test(wire)
isolate_c_test(frames)
isolate_c_test(cgroup)
isolate_c_test(netguard)
isolate_c_test(confine)
isolate_c_test(landlock_cache)
isolate_c_test(zygote)
isolate_c_test(cell) # the cell object against a fake backend
target_compile_definitions(test_zygote PRIVATE
  ISO_TEST_WORKER="$<TARGET_FILE:luaisolate-cell>")
add_dependencies(test_zygote luaisolate-cell)
isolate_c_test(prefault src/backend/process/worker/warm.c)
target_include_directories(test_prefault PRIVATE src/backend/process/worker)
isolate_c_test(pyvalue)
isolate_c_test(luavalue src/lua/lvalue.c)
target_link_libraries(test_luavalue PRIVATE isolate_lua_lib)

# A single-phase-init extension module of our own (spec/ext/singlephase.c)
# for spec/extensions_spec.lua, built against this build's CPython: it
# proves the extension registry on every build (numpy is Debian's 3.11's).
add_library(singlephase MODULE spec/ext/singlephase.c)
target_include_directories(singlephase PRIVATE ${ISOLATE_PYTHON_INCLUDE})
set_target_properties(singlephase PROPERTIES PREFIX "" SUFFIX ".so"
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/spec-ext)

set(ISOLATE_SPEC_ENV
  "ISOLATE_TEST_EXT_DIR=${CMAKE_BINARY_DIR}/spec-ext"
  "LUA_PATH=${CMAKE_SOURCE_DIR}/lua/?.lua\;${CMAKE_SOURCE_DIR}/lua/?/init.lua\;${CMAKE_SOURCE_DIR}/spec/?.lua\;\;"
  "LUA_CPATH=${CMAKE_BINARY_DIR}/?.so\;\;"
  "ISOLATE_HOST=$<TARGET_FILE:luaisolate>"
  "ISOLATE_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
  "ISOLATE_LUA=${LUA54}" "ISOLATE_GROFF=${GROFF}" "ISOLATE_LDOC=${LDOC}")
if(ISOLATE_SANITIZE)
  # CPython keeps its interned objects alive until exit: leaks are not ours.
  # CPython expects a huge malloc to return NULL (MemoryError), as libc's
  # does; test_decimal asks for such sizes on purpose.
  list(APPEND ISOLATE_SPEC_ENV "ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1" "ISOLATE_SANITIZED=1"
       "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
  # Inside the sanitized host (its module loads only there), as
  # `luaisolate test`: busted, with the host's default event lines off.
  set(ISOLATE_SPEC_RUNNER $<TARGET_FILE:luaisolate> test)
else()
  set(ISOLATE_SPEC_RUNNER ${LUA54} ${BUSTED})
endif()

file(GLOB ISOLATE_SPECS ${CMAKE_SOURCE_DIR}/spec/*_spec.lua)
foreach(s ${ISOLATE_SPECS})
  get_filename_component(n ${s} NAME_WE)
  add_test(NAME ${n} COMMAND ${ISOLATE_SPEC_RUNNER} --run=ctest -o utfTerminal ${s}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${n} PROPERTIES ENVIRONMENT "${ISOLATE_SPEC_ENV}" LABELS spec)
endforeach()

# ---- habits (issue 11) --------------------------------------------------------
# Every spec again with the collector never far behind (spec/gc_helper.lua:
# generational, a minor collection per 1% of heap growth, a major one per
# 10%, a full collection after each test), as luv's CI does: a __gc or
# __close that frees too early or in the wrong order fails here. Label gc.
# Not for the specs whose cells live in child luaisolate hosts they start
# (soak, fault injection, Slurm): the helper never reaches those, so a
# twin would only run the same minutes of work again.
set(ISOLATE_GC_CHILD_HOST_SPECS soak_spec fault_spec slurm_spec)
foreach(s ${ISOLATE_SPECS})
  get_filename_component(n ${s} NAME_WE)
  if(n IN_LIST ISOLATE_GC_CHILD_HOST_SPECS)
    continue()
  endif()
  add_test(NAME gc_${n} COMMAND ${ISOLATE_SPEC_RUNNER} --run=ctest
           --helper=spec/gc_helper.lua -o utfTerminal ${s}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(gc_${n} PROPERTIES ENVIRONMENT "${ISOLATE_SPEC_ENV}" LABELS gc)
endforeach()

# The include layers and the file-length habit (scripts/check_layers.lua),
# against scripts/layers-known.txt: the violations the tree had when the
# check arrived, a list that may only shrink. The checker's own spec runs
# it on the small trees in spec/layers/.
add_test(NAME layers COMMAND ${LUA54} scripts/check_layers.lua
         --root ${CMAKE_SOURCE_DIR} --known scripts/layers-known.txt
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
add_test(NAME layers_checker COMMAND ${LUA54} ${BUSTED} -o utfTerminal
         spec/layers/check_layers_spec.lua WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(layers layers_checker PROPERTIES LABELS check
  ENVIRONMENT "ISOLATE_LUA=${LUA54}")

# The compatibility suite (spec/compat/run.lua): CPython's own regression
# tests for 18 stdlib modules, bare and in cells of both backends, compared
# per test id against spec/compat/known.txt. Runs inside the host, with the
# interpreter this build embeds as the bare baseline; ~1 min here. Needs the
# stdlib's test package (Debian: libpython3.11-testsuite, in setup.sh).
add_test(NAME compat COMMAND $<TARGET_FILE:luaisolate> run
         ${CMAKE_SOURCE_DIR}/spec/compat/run.lua --python ${ISOLATE_PYTHON}
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(compat PROPERTIES LABELS compat TIMEOUT 600
  ENVIRONMENT "${ISOLATE_SPEC_ENV}")

# The LuaRocks install, from a copy of the tree, loaded by plain lua5.4
# (spec/rockspec_test.sh). Not in the sanitizer build: the rock is built
# without sanitizers, so it would only run the same check twice.
find_program(LUAROCKS luarocks REQUIRED)
if(NOT ISOLATE_SANITIZE)
  add_test(NAME rockspec COMMAND bash ${CMAKE_SOURCE_DIR}/spec/rockspec_test.sh)
  set_tests_properties(rockspec PROPERTIES LABELS rock TIMEOUT 900
    ENVIRONMENT "LUAROCKS=${LUAROCKS};LUA54=${LUA54}")
endif()

# ---- fuzzing ----------------------------------------------------------------
# The frame decoder under libFuzzer for 30 s from the seed corpus
# (cmake/fuzz.cmake builds fuzz_frame; spec/fuzz/run.cmake runs it on a copy
# of the corpus in the build tree). scripts/test.sh runs it in build-fuzz/.
if(ISOLATE_FUZZ)
  add_test(NAME fuzz_frame COMMAND ${CMAKE_COMMAND}
           -DFUZZER=$<TARGET_FILE:fuzz_frame>
           -DSEEDS=${CMAKE_SOURCE_DIR}/spec/fuzz/corpus
           -DWORK=${CMAKE_BINARY_DIR}/fuzz/corpus
           -DARTIFACTS=${CMAKE_BINARY_DIR}/fuzz/artifacts
           -DSECONDS=30 -P ${CMAKE_SOURCE_DIR}/spec/fuzz/run.cmake)
  set_tests_properties(fuzz_frame PROPERTIES LABELS fuzz TIMEOUT 120)
endif()
