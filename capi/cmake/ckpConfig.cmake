# ckpConfig.cmake: the CMake package configuration of ckp's C library, installed by
# capi/install.sh in PREFIX/lib/cmake/ckp beside PREFIX/lib/libckp.so, libckp.a and
# PREFIX/include/ckp_util.h. A C, C++ or Fortran project writes
#
#   find_package(ckp REQUIRED)        # -DCMAKE_PREFIX_PATH=PREFIX unless CMake searches it
#   target_link_libraries(prog PRIVATE ckp::ckp)          # libckp.so
#   target_link_libraries(prog PRIVATE ckp::ckp_static)   # libckp.a (with pthread, dl, m)
#   target_link_libraries(prog PRIVATE ckp::fortran)      # Fortran: the ckp_util module,
#                                                         # compiled into prog, and libckp.so
#
# Components (find_package(ckp REQUIRED COMPONENTS static)): shared, static, Fortran.
# Variables: ckp_VERSION, ckp_INCLUDE_DIR, ckp_LIBRARY, ckp_STATIC_LIBRARY,
# ckp_FORTRAN_SOURCE. The files are found relative to this one, so the prefix may
# be moved. The library holds a Go runtime: capi/ckp_util.h has the rules.

get_filename_component(_ckp_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(ckp_INCLUDE_DIR "${_ckp_prefix}/include")
if(APPLE)
  set(ckp_LIBRARY "${_ckp_prefix}/lib/libckp.dylib")
else()
  set(ckp_LIBRARY "${_ckp_prefix}/lib/libckp.so")
endif()
set(ckp_STATIC_LIBRARY "${_ckp_prefix}/lib/libckp.a")
set(ckp_FORTRAN_SOURCE "${_ckp_prefix}/include/ckp_util.f90")

set(ckp_shared_FOUND FALSE)
set(ckp_static_FOUND FALSE)
set(ckp_Fortran_FOUND FALSE)

if(EXISTS "${ckp_LIBRARY}" AND EXISTS "${ckp_INCLUDE_DIR}/ckp_util.h")
  if(NOT TARGET ckp::ckp)
    add_library(ckp::ckp SHARED IMPORTED)
    # Go's c-shared library has no SONAME: link it as -lckp from its directory (with
    # an rpath to it), not by its full path.
    set_target_properties(ckp::ckp PROPERTIES
      IMPORTED_LOCATION "${ckp_LIBRARY}"
      IMPORTED_NO_SONAME TRUE
      INTERFACE_INCLUDE_DIRECTORIES "${ckp_INCLUDE_DIR}")
  endif()
  set(ckp_shared_FOUND TRUE)
  if(EXISTS "${ckp_FORTRAN_SOURCE}")
    if(NOT TARGET ckp::fortran)
      # A Fortran module is compiler-specific: its source is compiled into each
      # target that links ckp::fortran, with that target's compiler.
      add_library(ckp::fortran INTERFACE IMPORTED)
      set_target_properties(ckp::fortran PROPERTIES
        INTERFACE_SOURCES "${ckp_FORTRAN_SOURCE}"
        INTERFACE_LINK_LIBRARIES ckp::ckp)
    endif()
    set(ckp_Fortran_FOUND TRUE)
  endif()
endif()

if(EXISTS "${ckp_STATIC_LIBRARY}" AND EXISTS "${ckp_INCLUDE_DIR}/ckp_util.h")
  if(NOT TARGET ckp::ckp_static)
    add_library(ckp::ckp_static STATIC IMPORTED)
    # What the Go runtime in libckp.a needs from the system.
    if(APPLE)
      set(_ckp_system_libs "-framework CoreFoundation" "-framework Security" "m")
    else()
      set(_ckp_system_libs "pthread" "${CMAKE_DL_LIBS}" "m")
    endif()
    set_target_properties(ckp::ckp_static PROPERTIES
      IMPORTED_LOCATION "${ckp_STATIC_LIBRARY}"
      IMPORTED_LINK_INTERFACE_LANGUAGES "C"
      INTERFACE_INCLUDE_DIRECTORIES "${ckp_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "${_ckp_system_libs}")
    unset(_ckp_system_libs)
  endif()
  set(ckp_static_FOUND TRUE)
endif()

# The components asked for (none: the shared library).
set(_ckp_want ${ckp_FIND_COMPONENTS})
if(NOT _ckp_want)
  set(_ckp_want shared)
endif()
foreach(_ckp_c IN LISTS _ckp_want)
  if(NOT _ckp_c MATCHES "^(shared|static|Fortran)$")
    set(ckp_FOUND FALSE)
    set(ckp_NOT_FOUND_MESSAGE "unknown component ${_ckp_c} (ckp has shared, static, Fortran)")
  elseif(NOT ckp_${_ckp_c}_FOUND AND (ckp_FIND_REQUIRED_${_ckp_c} OR NOT ckp_FIND_COMPONENTS))
    set(ckp_FOUND FALSE)
    set(ckp_NOT_FOUND_MESSAGE "the ${_ckp_c} part of ckp is missing under ${_ckp_prefix} (install it with capi/install.sh)")
  endif()
endforeach()
unset(_ckp_want)
unset(_ckp_c)
unset(_ckp_prefix)
