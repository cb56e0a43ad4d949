# libFuzzer target for the process backend's frame decoder (spec/fuzz).
# Clang only: -fsanitize=fuzzer is libFuzzer, which GCC does not have. Built
# from the few core sources the codec needs, not isolate_core, so it links no
# Python. cmake/tests.cmake registers it with ctest (label fuzz).
option(ISOLATE_FUZZ "Build the libFuzzer frame decoder target (needs clang)" OFF)

if(ISOLATE_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "ISOLATE_FUZZ needs clang (configure with CC=clang); "
                        "this is ${CMAKE_C_COMPILER_ID}")
  endif()
  set(ISOLATE_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined
      -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  add_executable(fuzz_frame spec/fuzz/fuzz_frame.c src/base/wire_rules.c
                 src/base/wire_decode.c src/base/wire_encode.c
                 src/base/wire_io.c src/base/value.c src/base/error.c src/base/handoff.c)
  target_include_directories(fuzz_frame PRIVATE include src/base)
  target_compile_definitions(fuzz_frame PRIVATE _GNU_SOURCE)
  target_compile_options(fuzz_frame PRIVATE ${ISOLATE_FUZZ_FLAGS})
  target_link_options(fuzz_frame PRIVATE ${ISOLATE_FUZZ_FLAGS})
  target_link_libraries(fuzz_frame PRIVATE PkgConfig::MSGPACK m)
endif()
