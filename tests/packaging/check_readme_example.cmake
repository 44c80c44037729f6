# SPDX-License-Identifier: MIT
# Fails unless README.md's usage example (the ```c block after the marker line
# "<!-- tests/packaging/readme_example.c -->") equals readme_example.c from its first #include on,
# so the example users copy is the one packaging_install compiles and runs.
# Usage: cmake -DREADME=<README.md> -DEXAMPLE=<readme_example.c> -DWORK=<scratch dir>
#              -P check_readme_example.cmake
file(READ "${README}" readme)
file(READ "${EXAMPLE}" example)

set(marker "<!-- tests/packaging/readme_example.c -->")
string(FIND "${readme}" "${marker}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "README.md has no line ${marker} in front of the usage example")
endif()
string(SUBSTRING "${readme}" ${at} -1 readme)
string(FIND "${readme}" "```c\n" open)
if(open EQUAL -1)
  message(FATAL_ERROR "README.md: no ```c block after ${marker}")
endif()
math(EXPR open "${open} + 5")
string(SUBSTRING "${readme}" ${open} -1 readme)
string(FIND "${readme}" "```" close)
if(close EQUAL -1)
  message(FATAL_ERROR "README.md: the usage example's ```c block is not closed")
endif()
string(SUBSTRING "${readme}" 0 ${close} block)

string(FIND "${example}" "\n#include" inc)
if(inc EQUAL -1)
  message(FATAL_ERROR "${EXAMPLE}: no #include")
endif()
math(EXPR inc "${inc} + 1")
string(SUBSTRING "${example}" ${inc} -1 code)

if(NOT block STREQUAL code)
  file(WRITE "${WORK}/readme_block.c" "${block}")
  file(WRITE "${WORK}/readme_example_code.c" "${code}")
  execute_process(COMMAND diff -u "${WORK}/readme_block.c"
                  "${WORK}/readme_example_code.c")
  message(FATAL_ERROR "README.md's usage example differs from ${EXAMPLE} (diff above: "
                      "- README, + file)")
endif()
message(STATUS "README.md usage example == ${EXAMPLE}")
