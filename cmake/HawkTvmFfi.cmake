# Locate tvm-ffi's CMake package through the Python interpreter that builds us
# (scikit-build-core runs CMake with the build environment's Python).
find_package(Python COMPONENTS Interpreter REQUIRED)
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c "import tvm_ffi.libinfo as l; print(l.find_cmake_path())"
  OUTPUT_VARIABLE HAWK_TVM_FFI_CMAKE_DIR
  OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE HAWK_TVM_FFI_FOUND)
if(NOT HAWK_TVM_FFI_FOUND EQUAL 0)
  message(FATAL_ERROR "apache-tvm-ffi is not importable by ${Python_EXECUTABLE}")
endif()
find_package(tvm_ffi CONFIG REQUIRED PATHS "${HAWK_TVM_FFI_CMAKE_DIR}" NO_DEFAULT_PATH)
