# SPDX-License-Identifier: MIT
# Fails unless every manual page of the build tree renders without a warning under
# `mandoc -T lint -W warning`, every `.so` link points at a page, every cross-reference to a
# libbpfmem page resolves, and every symbol the shared library exports (nm -D, so a new
# function needs nothing but its page) is named in the NAME section of a section-3 page.
# Usage: cmake -DMANDOC=mandoc -DNM=nm -DLIB=<libbpfmem.so> -DMANDIR=<build>/man
#              -P check_man_pages.cmake
cmake_policy(SET CMP0057 NEW)	# if(IN_LIST)
set(failed FALSE)

file(GLOB files RELATIVE ${MANDIR} ${MANDIR}/man3/* ${MANDIR}/man7/*)
list(SORT files)
set(documented)		# names in the NAME sections of real pages
set(available)		# every name a reader can ask man(1) for: pages and links
set(xrefs)
set(nr_pages 0)
set(nr_links 0)
foreach(f IN LISTS files)
  get_filename_component(name ${f} NAME_WE)
  list(APPEND available ${name})
  file(READ ${MANDIR}/${f} text)
  if(text MATCHES "^\\.so ([^\n]*)\n$")
    math(EXPR nr_links "${nr_links} + 1")
    if(NOT EXISTS ${MANDIR}/${CMAKE_MATCH_1})
      message("${f}: .so link to ${CMAKE_MATCH_1}, which does not exist")
      set(failed TRUE)
    endif()
    continue()
  endif()
  math(EXPR nr_pages "${nr_pages} + 1")
  # mandoc exits non-zero on a warning; any output at this level is a finding too
  execute_process(COMMAND ${MANDOC} -T lint -W warning ${f} WORKING_DIRECTORY ${MANDIR}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0 OR NOT out STREQUAL "")
    message("${f}: mandoc -T lint -W warning (exit ${rc}):\n${out}")
    set(failed TRUE)
  endif()
  if(f MATCHES "^man3/")
    string(REGEX MATCH "\n\\.Sh NAME\n(.*)\n\\.Nd " unused "${text}")
    string(REGEX MATCHALL "\\.Nm [A-Za-z_][A-Za-z0-9_]*" nms "${CMAKE_MATCH_1}")
    if(NOT nms)
      message("${f}: no .Nm in its NAME section")
      set(failed TRUE)
    endif()
    foreach(nm IN LISTS nms)
      string(SUBSTRING "${nm}" 4 -1 nm)
      list(APPEND documented ${nm})
    endforeach()
  endif()
  string(REGEX MATCHALL "\n\\.Xr (bpf_mem_|bpfmem_|libbpfmem)[A-Za-z0-9_]* [37]" refs "${text}")
  foreach(r IN LISTS refs)
    string(REGEX REPLACE "^\n\\.Xr ([^ ]+) .*$" "\\1" r "${r}")
    list(APPEND xrefs "${f}:${r}")
  endforeach()
endforeach()

foreach(x IN LISTS xrefs)
  string(REGEX REPLACE "^.*:" "" name "${x}")
  if(NOT name IN_LIST available)
    string(REGEX REPLACE ":[^:]*$" "" page "${x}")
    message("${page}: .Xr ${name} refers to no page or link")
    set(failed TRUE)
  endif()
endforeach()

execute_process(COMMAND ${NM} -D --defined-only ${LIB} OUTPUT_VARIABLE nm_out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} -D --defined-only ${LIB} failed (${rc})")
endif()
# "<value> <type> <name>[@@<version>]"; type A is the version node, not a function
string(REGEX MATCHALL "[0-9a-fA-F]+ [B-Zb-z] [A-Za-z_][A-Za-z0-9_]*" syms "${nm_out}")
set(nr_syms 0)
foreach(s IN LISTS syms)
  string(REGEX REPLACE "^.* " "" s "${s}")
  math(EXPR nr_syms "${nr_syms} + 1")
  if(NOT s IN_LIST documented OR NOT s IN_LIST available)
    message("${s} is exported by ${LIB} but has no manual page: add it to the NAME section "
            "(.Nm) of a page in doc/man/man3/")
    set(failed TRUE)
  endif()
endforeach()
if(nr_syms EQUAL 0)
  message(FATAL_ERROR "no exported symbols found in ${LIB}:\n${nm_out}")
endif()

if(failed)
  message(FATAL_ERROR "manual pages incomplete or not lint-clean (see above)")
endif()
list(LENGTH xrefs nr_xrefs)
message(STATUS "${nr_pages} pages lint-clean (mandoc -T lint -W warning), ${nr_links} .so "
               "links resolve, ${nr_xrefs} cross-references resolve, ${nr_syms} exported "
               "symbols of ${LIB} each documented")
