# One library per folder, each declaring what it depends on (after
# abseil-cpp's absl_cc_library), and the unit tests beside it.
#
#   toolgate_library(NAME name SRCS a.cc ... DEPS lib ...)
#     A static library toolgate_<name>. Every source file of the project is
#     included by its path from the repository root ("server/base/log.h").
#
#   toolgate_test(NAME name SRCS a_test.cc ... DEPS lib ...)
#     A GoogleTest executable toolgate_<name>_test whose tests CTest runs
#     one by one. Built only with TOOLGATE_BUILD_TESTS. TOOLGATE_SOURCE_DIR
#     is defined for tests that read files of the repository.

function(toolgate_library)
  cmake_parse_arguments(TG "" "NAME" "SRCS;DEPS" ${ARGN})
  add_library(toolgate_${TG_NAME} STATIC ${TG_SRCS})
  target_include_directories(toolgate_${TG_NAME} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(toolgate_${TG_NAME} PUBLIC ${TG_DEPS})
endfunction()

function(toolgate_test)
  cmake_parse_arguments(TG "" "NAME" "SRCS;DEPS" ${ARGN})
  if(NOT TOOLGATE_BUILD_TESTS)
    return()
  endif()
  add_executable(toolgate_${TG_NAME}_test ${TG_SRCS})
  target_link_libraries(toolgate_${TG_NAME}_test PRIVATE ${TG_DEPS} GTest::gmock GTest::gtest
    GTest::gtest_main)
  target_compile_definitions(toolgate_${TG_NAME}_test PRIVATE
    TOOLGATE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  gtest_discover_tests(toolgate_${TG_NAME}_test DISCOVERY_TIMEOUT 60)
endfunction()
