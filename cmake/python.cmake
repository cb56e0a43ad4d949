# Find the CPython that cells embed: ISOLATE_PYTHON names its interpreter,
# which tells us its headers, its shared libpython and the soname that the
# runtime re-opens with RTLD_GLOBAL (see src/python/py_runtime.c), and the
# real path of that interpreter, which cells report as sys.executable.
execute_process(
  COMMAND ${ISOLATE_PYTHON} -c "import os, sys, sysconfig as s
v = s.get_config_var
print(s.get_paths()['include'], v('LIBDIR'), v('INSTSONAME') or '', v('LDLIBRARY'), '%d.%d' % sys.version_info[:2], os.path.realpath(sys.executable), sep=';', end='')"
  OUTPUT_VARIABLE _py RESULT_VARIABLE _py_rc)
if(NOT _py_rc EQUAL 0)
  message(FATAL_ERROR "ISOLATE_PYTHON=${ISOLATE_PYTHON} does not run; pass -DISOLATE_PYTHON=/path/to/python3.x")
endif()
list(GET _py 0 ISOLATE_PYTHON_INCLUDE)
list(GET _py 1 ISOLATE_PYTHON_LIBDIR)
list(GET _py 2 ISOLATE_PYTHON_SONAME)
list(GET _py 3 ISOLATE_PYTHON_LDLIBRARY)
list(GET _py 4 ISOLATE_PYTHON_VERSION)
list(GET _py 5 ISOLATE_PYTHON_EXECUTABLE)
if(ISOLATE_PYTHON_VERSION VERSION_LESS 3.11)
  message(FATAL_ERROR "CPython ${ISOLATE_PYTHON_VERSION} is too old: luaisolate needs >= 3.11")
endif()
set(ISOLATE_PYTHON_LIBRARY ${ISOLATE_PYTHON_LIBDIR}/${ISOLATE_PYTHON_SONAME})
if(NOT ISOLATE_PYTHON_SONAME OR NOT EXISTS ${ISOLATE_PYTHON_LIBRARY})
  message(FATAL_ERROR "${ISOLATE_PYTHON} has no shared libpython (${ISOLATE_PYTHON_LIBRARY}): "
                      "build CPython with --enable-shared or install python3-dev")
endif()
if(NOT EXISTS ${ISOLATE_PYTHON_INCLUDE}/Python.h)
  message(FATAL_ERROR "No Python.h in ${ISOLATE_PYTHON_INCLUDE}: install python3-dev")
endif()
message(STATUS "CPython ${ISOLATE_PYTHON_VERSION}: ${ISOLATE_PYTHON_LIBRARY}")

add_library(isolate_python INTERFACE)
target_include_directories(isolate_python INTERFACE ${ISOLATE_PYTHON_INCLUDE})
target_link_libraries(isolate_python INTERFACE ${ISOLATE_PYTHON_LIBRARY})
target_link_options(isolate_python INTERFACE "-Wl,-rpath,${ISOLATE_PYTHON_LIBDIR}")
target_compile_definitions(isolate_python INTERFACE
  ISO_PYTHON_SONAME="${ISOLATE_PYTHON_SONAME}"
  ISO_PYTHON_EXECUTABLE="${ISOLATE_PYTHON_EXECUTABLE}")
