# Finds the liburcu flavors that back the two RCU domains, through pkg-config.
#   BPFMEM_RCU_FLAVOR        flavor of "RCU"            (bp | memb | mb)
#   BPFMEM_RCU_TRACE_FLAVOR  flavor of "RCU tasks trace" (bp | memb | mb)
# Defines imported targets bpfmem_urcu::<flavor> and BPFMEM_URCU_LIBS_<flavor>
# (plain library names, for the exported static library).
find_package(PkgConfig REQUIRED)

set(_bpfmem_flavors bp memb mb)
foreach(_var BPFMEM_RCU_FLAVOR BPFMEM_RCU_TRACE_FLAVOR)
  if(${_var} STREQUAL "qsbr")
    message(FATAL_ERROR
      "${_var}=qsbr: QSBR grace periods end only when every registered thread "
      "reports quiescent states, which the application, not this library, "
      "knows; a library that hooks into arbitrary threads and signal handlers "
      "cannot provide them. Use bp, memb or mb.")
  endif()
  if(NOT ${_var} IN_LIST _bpfmem_flavors)
    message(FATAL_ERROR "${_var}=${${_var}}: expected one of ${_bpfmem_flavors}")
  endif()
endforeach()

function(bpfmem_find_urcu_flavor flavor)
  if(TARGET bpfmem_urcu_${flavor})
    return()
  endif()
  pkg_check_modules(URCU_${flavor} REQUIRED IMPORTED_TARGET liburcu-${flavor})
  add_library(bpfmem_urcu_${flavor} INTERFACE)
  target_link_libraries(bpfmem_urcu_${flavor} INTERFACE PkgConfig::URCU_${flavor})
  set(BPFMEM_URCU_LIBS_${flavor} ${URCU_${flavor}_LIBRARIES} PARENT_SCOPE)
endfunction()

bpfmem_find_urcu_flavor(${BPFMEM_RCU_FLAVOR})
bpfmem_find_urcu_flavor(${BPFMEM_RCU_TRACE_FLAVOR})
