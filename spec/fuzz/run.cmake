# ctest's fuzz_frame: copy the seed corpus into the build tree (libFuzzer
# adds what it finds to its first corpus directory: never the source tree),
# then fuzz for a bounded time. Any crash, leak, UB report, slow input or
# libFuzzer error is a non-zero exit, which fails the test; the input is
# saved under ARTIFACTS. Variables: FUZZER, SEEDS, WORK, ARTIFACTS, SECONDS.
file(MAKE_DIRECTORY ${WORK} ${ARTIFACTS})
file(GLOB seeds ${SEEDS}/*)
file(COPY ${seeds} DESTINATION ${WORK})
execute_process(
  COMMAND ${FUZZER} -max_total_time=${SECONDS} -timeout=5
          -artifact_prefix=${ARTIFACTS}/ -print_final_stats=1 ${WORK}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "fuzz_frame failed (${rc}): the input is in ${ARTIFACTS}/")
endif()
