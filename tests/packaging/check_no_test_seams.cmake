# SPDX-License-Identifier: MIT
# Fails if a release library carries the test seams of lib/kernel/slab.h (backend counters and
# fault injection, compiled in only with BPFMEM_TEST_SEAMS): they cost an atomic load on every
# backend allocation.  Reads the full symbol table, local symbols included.
# Usage: cmake -DNM=nm -DLIBS="<libbpfmem.so>;<libbpfmem.a>" -P check_no_test_seams.cmake
set(seams slab_fail_every slab_get_stats fail_every nr_allocs)
foreach(lib ${LIBS})
  execute_process(COMMAND ${NM} ${lib} OUTPUT_VARIABLE syms RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${NM} ${lib} failed: ${err}")
  endif()
  set(found "")
  foreach(seam ${seams})
    if(syms MATCHES "[ \t][A-Za-z][ \t]${seam}\n")
      list(APPEND found ${seam})
    endif()
  endforeach()
  if(found)
    message(SEND_ERROR "${lib} has the test seam symbols: ${found}")
  else()
    message(STATUS "${lib}: none of ${seams}")
  endif()
endforeach()
