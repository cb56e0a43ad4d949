# The eBPF network guard: src/kernel/netguard.bpf.c compiled with clang
# -target bpf, wrapped by `bpftool gen skeleton` into netguard.skel.h, which
# src/kernel/netguard.c loads (included from CMakeLists.txt after isolate_core).
#
# No vmlinux.h: the programs use only UAPI types (struct bpf_sock_addr from
# <linux/bpf.h>), so the build needs neither the running kernel's BTF nor
# `bpftool btf dump`, and builds the same on any host with the two tools.
# Without clang (with a BPF target) or bpftool the core still builds, with
# ISO_HAVE_NETGUARD=0: iso_netguard_open then says what was missing.

find_program(ISOLATE_CLANG NAMES clang clang-16 clang-15 clang-14)
find_program(ISOLATE_BPFTOOL bpftool PATHS /usr/sbin /sbin /usr/local/sbin)

set(ISOLATE_NETGUARD_MISSING "")
if(NOT ISOLATE_CLANG)
  set(ISOLATE_NETGUARD_MISSING "no clang found")
elseif(NOT ISOLATE_BPFTOOL)
  set(ISOLATE_NETGUARD_MISSING "no bpftool found")
else()
  # A clang without the BPF backend fails here, not in the middle of a build.
  execute_process(
    COMMAND ${ISOLATE_CLANG} -target bpf -c -x c /dev/null
            -o ${CMAKE_BINARY_DIR}/bpf_probe.o
    RESULT_VARIABLE _ng_probe OUTPUT_QUIET ERROR_QUIET)
  file(REMOVE ${CMAKE_BINARY_DIR}/bpf_probe.o)
  if(NOT _ng_probe EQUAL 0)
    set(ISOLATE_NETGUARD_MISSING "${ISOLATE_CLANG} has no BPF target")
  endif()
endif()

# The ABI header (map layouts) is shared by both sides in either case.
target_include_directories(isolate_core PRIVATE src/kernel)

if(ISOLATE_NETGUARD_MISSING)
  message(STATUS "BPF network guard: not built (${ISOLATE_NETGUARD_MISSING})")
  target_compile_definitions(isolate_core PRIVATE ISO_HAVE_NETGUARD=0
    ISO_NETGUARD_MISSING="${ISOLATE_NETGUARD_MISSING}")
  return()
endif()
message(STATUS "BPF network guard: ${ISOLATE_CLANG}, ${ISOLATE_BPFTOOL}")

# __TARGET_ARCH_* is what <bpf/bpf_tracing.h> wants; Debian keeps
# asm/types.h in the multiarch directory, which clang -target bpf does not
# search by itself.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|i.86|AMD64)$")
  set(_ng_arch x86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64)$")
  set(_ng_arch arm64)
else()
  set(_ng_arch ${CMAKE_SYSTEM_PROCESSOR})
endif()
set(_ng_flags -O2 -g -target bpf -D__TARGET_ARCH_${_ng_arch} -Wall -Wextra)
if(CMAKE_LIBRARY_ARCHITECTURE)
  list(APPEND _ng_flags -I/usr/include/${CMAKE_LIBRARY_ARCHITECTURE})
endif()
if(ISOLATE_WERROR)
  list(APPEND _ng_flags -Werror)
endif()

set(_ng_dir ${CMAKE_BINARY_DIR}/bpf)
set(_ng_src ${CMAKE_SOURCE_DIR}/src/kernel/netguard.bpf.c)
add_custom_command(
  OUTPUT ${_ng_dir}/netguard.bpf.o
  COMMAND ${CMAKE_COMMAND} -E make_directory ${_ng_dir}
  COMMAND ${ISOLATE_CLANG} ${_ng_flags} -I${CMAKE_SOURCE_DIR}/src/kernel
          -c ${_ng_src} -o ${_ng_dir}/netguard.bpf.o
  DEPENDS ${_ng_src} ${CMAKE_SOURCE_DIR}/src/kernel/netguard_abi.h
  COMMENT "Compiling the eBPF network guard"
  VERBATIM)
# bpftool writes the skeleton to stdout: through a temporary file, so that
# a failed run leaves no truncated header that looks up to date.
add_custom_command(
  OUTPUT ${_ng_dir}/netguard.skel.h
  COMMAND sh -c "\"$0\" gen skeleton \"$1\" name netguard > \"$2.tmp\""
          ${ISOLATE_BPFTOOL} ${_ng_dir}/netguard.bpf.o ${_ng_dir}/netguard.skel.h
  COMMAND ${CMAKE_COMMAND} -E rename ${_ng_dir}/netguard.skel.h.tmp
          ${_ng_dir}/netguard.skel.h
  DEPENDS ${_ng_dir}/netguard.bpf.o
  COMMENT "Generating the network guard's skeleton"
  VERBATIM)

# The skeleton as a target: its directory as a SYSTEM include (the
# generated code is not held to our warning flags). Listing the header as
# a source of isolate_core is what orders the generation before netguard.c.
add_library(netguard_skel INTERFACE)
target_include_directories(netguard_skel SYSTEM INTERFACE ${_ng_dir})
target_sources(isolate_core PRIVATE ${_ng_dir}/netguard.skel.h)
target_link_libraries(isolate_core PRIVATE netguard_skel)
target_compile_definitions(isolate_core PRIVATE ISO_HAVE_NETGUARD=1)
