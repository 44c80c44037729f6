# SPDX-License-Identifier: MIT
# Fails unless the shared library exports exactly the global section of lib/libbpfmem.map, each
# symbol under the map's version node, the map lists exactly the functions (and extern variables)
# declared in include/bpfmem.h, and the SONAME is libbpfmem.so.<SOVERSION>.
# Usage: cmake -DNM=nm -DREADELF=readelf -DLIB=<libbpfmem.so> -DMAP=<libbpfmem.map>
#              -DHEADER=<bpfmem.h> -DSONAME=libbpfmem.so.0 -P check_exports.cmake
set(failed FALSE)

# Prints the elements of `a` missing from `b`, one per line, under `title`.
function(report_missing title a b)
  set(missing ${${a}})
  if(${b})
    list(REMOVE_ITEM missing ${${b}})
  endif()
  if(missing)
    list(JOIN missing "\n  " lines)
    message("${title}:\n  ${lines}")
    set(failed TRUE PARENT_SCOPE)
  endif()
endfunction()

# --- the version script: node name and global section ---
file(READ "${MAP}" map)
string(REGEX REPLACE "/\\*([^*]|\\*+[^*/])*\\*+/" "" map "${map}")
if(NOT map MATCHES "([A-Za-z0-9_.]+)[ \t\n]*{[ \t\n]*global:(.*)local:")
  message(FATAL_ERROR "${MAP}: expected `NODE { global: ... local: ... };`")
endif()
set(node "${CMAKE_MATCH_1}")
string(REGEX MATCHALL "[A-Za-z_][A-Za-z0-9_]*" map_syms "${CMAKE_MATCH_2}")
list(SORT map_syms)

# --- the public header: every declared function ---
file(READ "${HEADER}" header)
string(REGEX REPLACE "/\\*([^*]|\\*+[^*/])*\\*+/" "" header "${header}")
string(REGEX REPLACE "#[^\n]*" "" header "${header}")
string(REGEX MATCHALL "[A-Za-z_][A-Za-z0-9_]*[ \t\n]*\\(" calls "${header}")
set(header_syms)
foreach(c IN LISTS calls)
  string(REGEX REPLACE "[ \t\n]*\\($" "" c "${c}")
  if(c MATCHES "^(bpf_mem_|bpfmem_)")
    list(APPEND header_syms "${c}")
  endif()
endforeach()
# and every variable it declares extern (the thread variable and the class
# table of inlined fast paths)
string(REGEX MATCHALL "extern[^;(]*[ \t\n](bpf_mem_|bpfmem_)[A-Za-z0-9_]*[ \t\n]*(__attribute__|;|\\[)"
       externs "${header}")
foreach(e IN LISTS externs)
  string(REGEX MATCH "(bpf_mem_|bpfmem_)[A-Za-z0-9_]*[ \t\n]*(__attribute__|;|\\[)$" v "${e}")
  string(REGEX REPLACE "[ \t\n]*(__attribute__|;|\\[)$" "" v "${v}")
  list(APPEND header_syms "${v}")
endforeach()
list(REMOVE_DUPLICATES header_syms)
list(SORT header_syms)

# --- the library: dynamic symbols it defines ---
execute_process(COMMAND "${NM}" -D --defined-only "${LIB}"
                OUTPUT_VARIABLE nm_out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} -D --defined-only ${LIB} failed (${rc})")
endif()
string(REPLACE "\n" ";" nm_lines "${nm_out}")
set(lib_syms)
foreach(line IN LISTS nm_lines)
  # "<value> <type> <name>[@@<version>]"; type A is the version node itself
  if(line MATCHES "^[0-9a-fA-F]* *([A-Za-z]) ([^@ ]+)(@+([^ ]+))?$")
    set(type "${CMAKE_MATCH_1}")
    set(name "${CMAKE_MATCH_2}")
    set(version "${CMAKE_MATCH_4}")
    if(type STREQUAL "A" AND name STREQUAL node)
      continue()
    endif()
    list(APPEND lib_syms "${name}")
    if(NOT version STREQUAL node)
      message("exported without version node ${node}: ${line}")
      set(failed TRUE)
    endif()
  elseif(NOT line STREQUAL "")
    message("unparsed nm line: ${line}")
    set(failed TRUE)
  endif()
endforeach()
list(SORT lib_syms)

report_missing("exported by ${LIB} but not in the global section of ${MAP}" lib_syms map_syms)
report_missing("in the global section of ${MAP} but not exported by ${LIB}" map_syms lib_syms)
report_missing("declared in ${HEADER} but not in ${MAP}" header_syms map_syms)
report_missing("in ${MAP} but not declared in ${HEADER}" map_syms header_syms)

# --- SONAME ---
execute_process(COMMAND "${READELF}" -d "${LIB}" OUTPUT_VARIABLE dyn RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${READELF} -d ${LIB} failed (${rc})")
endif()
if(NOT dyn MATCHES "\\(SONAME\\)[^\n]*\\[([^]\n]*)\\]")
  message("${LIB} has no SONAME")
  set(failed TRUE)
elseif(NOT CMAKE_MATCH_1 STREQUAL SONAME)
  message("${LIB}: SONAME is ${CMAKE_MATCH_1}, expected ${SONAME}")
  set(failed TRUE)
endif()

list(LENGTH lib_syms n)
if(failed)
  message(FATAL_ERROR "exported symbols or SONAME of ${LIB} are wrong (see above)")
endif()
message(STATUS "${LIB}: ${n} symbols under ${node}, exactly the map and the header; "
               "SONAME ${SONAME}")
