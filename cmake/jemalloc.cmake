# libmprof-jemalloc.so: jemalloc 5.3.0, built here from Debian's source package jemalloc 5.3.0-1
# with profiling compiled in, plus the profiling core bound to jemalloc's sampler at link time
# (allocator-glue/jemalloc.c explains how). Nothing of jemalloc is in this repository: the source
# tree comes from scripts/fetch-sources.sh jemalloc=5.3.0-1 (run by scripts/install-deps.sh), or
# from -DMPROF_JEMALLOC_SOURCE=DIR.
include(ExternalProject)

set(MPROF_JEMALLOC_VERSION_STRING "5.3.0-0-g54eaed1d8b56b1aa528be3bdd1877e59c56fa90c")
if(DEFINED ENV{MPROF_SOURCE_CACHE})
  set(_mprof_src_cache "$ENV{MPROF_SOURCE_CACHE}")
elseif(DEFINED ENV{XDG_CACHE_HOME})
  set(_mprof_src_cache "$ENV{XDG_CACHE_HOME}/mprof/sources")
else()
  set(_mprof_src_cache "$ENV{HOME}/.cache/mprof/sources")
endif()
set(MPROF_JEMALLOC_SOURCE "${_mprof_src_cache}/jemalloc-5.3.0-1" CACHE PATH
    "jemalloc 5.3.0 source tree (Debian source package jemalloc 5.3.0-1)")
if(NOT EXISTS "${MPROF_JEMALLOC_SOURCE}/configure" OR NOT EXISTS "${MPROF_JEMALLOC_SOURCE}/src/prof.c")
  message(FATAL_ERROR "jemalloc 5.3.0 source not found at ${MPROF_JEMALLOC_SOURCE}: run scripts/fetch-sources.sh jemalloc=5.3.0-1 (or pass -DMPROF_JEMALLOC_SOURCE=DIR, or -DMPROF_WITH_JEMALLOC=OFF)")
endif()

# jemalloc's own configure and make, in the build tree. Options as Debian builds it for amd64
# (4 KiB pages, 2 MiB huge pages, profiling compiled in); public names unprefixed, so the library
# is a drop-in malloc and MALLOC_CONF keeps its name.
find_program(MPROF_MAKE NAMES make gmake REQUIRED)
cmake_host_system_information(RESULT _mprof_ncpu QUERY NUMBER_OF_LOGICAL_CORES)
set(MPROF_JEMALLOC_BUILD ${PROJECT_BINARY_DIR}/jemalloc)
set(MPROF_JEMALLOC_PIC ${MPROF_JEMALLOC_BUILD}/lib/libjemalloc_pic.a)
# The same jemalloc without the profiler, for the benchmarks' baseline.
set(MPROF_JEMALLOC_PLAIN ${MPROF_JEMALLOC_BUILD}/lib/libjemalloc.so.2)
ExternalProject_Add(jemalloc_src
  SOURCE_DIR ${MPROF_JEMALLOC_SOURCE}
  BINARY_DIR ${MPROF_JEMALLOC_BUILD}
  CONFIGURE_COMMAND env CC=${CMAKE_C_COMPILER} ${MPROF_JEMALLOC_SOURCE}/configure
                    --enable-prof --with-lg-page=12 --with-lg-hugepage=21 --disable-doc
                    --with-version=${MPROF_JEMALLOC_VERSION_STRING}
  BUILD_COMMAND ${MPROF_MAKE} -j${_mprof_ncpu} lib/libjemalloc_pic.a lib/libjemalloc.so.2
  INSTALL_COMMAND ""
  BUILD_BYPRODUCTS ${MPROF_JEMALLOC_PIC} ${MPROF_JEMALLOC_PLAIN}
  LOG_CONFIGURE ON LOG_BUILD ON LOG_OUTPUT_ON_FAILURE ON)

# jemalloc's internal functions that the glue replaces (see allocator-glue/jemalloc.c).
set(MPROF_JEMALLOC_WRAPPED
    prof_sample_new_event_wait prof_sample_postponed_event_wait prof_tctx_create
    prof_malloc_sample_object prof_free_sampled_object prof_alloc_rollback prof_mdump
    prof_active_get prof_active_set prof_unwind_init malloc_mutex_lock_slow)
set(_mprof_wrap_opts "")
foreach(fn ${MPROF_JEMALLOC_WRAPPED})
  list(APPEND _mprof_wrap_opts "LINKER:--wrap=je_${fn}")
endforeach()

# jemalloc's malloc-family functions whose results or errno differ from glibc's are defined by
# the glue (allocator-glue/jemalloc.c, "The malloc family"): jemalloc's realloc and memalign are
# renamed mprof__je_<name> in a copy of the archive (the glue calls them, and declares them
# hidden so they are not exported), its valloc is made local (unused).
set(MPROF_JEMALLOC_GLUED ${MPROF_JEMALLOC_BUILD}/lib/libjemalloc_mprof.a)
set(_mprof_objcopy_opts --localize-symbol=valloc)
foreach(fn realloc memalign)
  list(APPEND _mprof_objcopy_opts --redefine-sym ${fn}=mprof__je_${fn})
endforeach()
# jemalloc's mutex operations (its only calls of these three, include/jemalloc/internal/mutex.h)
# go to the glue, which counts the jemalloc mutexes each thread holds (mprof__host_set_in_allocator).
foreach(fn pthread_mutex_lock pthread_mutex_trylock pthread_mutex_unlock)
  list(APPEND _mprof_objcopy_opts --redefine-sym ${fn}=mprof__je_${fn})
endforeach()
add_custom_command(OUTPUT ${MPROF_JEMALLOC_GLUED}
  COMMAND ${CMAKE_OBJCOPY} ${_mprof_objcopy_opts} ${MPROF_JEMALLOC_PIC} ${MPROF_JEMALLOC_GLUED}
  DEPENDS jemalloc_src ${MPROF_JEMALLOC_PIC}
  COMMENT "jemalloc's archive with the glue's malloc-family and mutex names")
add_custom_target(jemalloc_glued DEPENDS ${MPROF_JEMALLOC_GLUED})

add_library(mprof_jemalloc SHARED ${PROJECT_SOURCE_DIR}/allocator-glue/jemalloc.c
                                  ${PROJECT_SOURCE_DIR}/allocator-glue/glue.c
                                  ${MPROF_MUTEX_APP_SOURCE}
                                  $<TARGET_OBJECTS:mprof_core_obj>)
add_library(mprof::mprof_jemalloc ALIAS mprof_jemalloc)
add_dependencies(mprof_jemalloc jemalloc_src jemalloc_glued)
# The glue is compiled against jemalloc's internal headers (its own and the generated ones),
# as jemalloc's sources are: GNU C, _REENTRANT. They are system headers to our warnings.
set_source_files_properties(${PROJECT_SOURCE_DIR}/allocator-glue/jemalloc.c PROPERTIES
  COMPILE_OPTIONS "-std=gnu11;-D_REENTRANT")
target_include_directories(mprof_jemalloc SYSTEM PRIVATE ${MPROF_JEMALLOC_BUILD}/include
                                                         ${MPROF_JEMALLOC_SOURCE}/include)
target_include_directories(mprof_jemalloc PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
                                                 $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_compile_options(mprof_jemalloc PRIVATE ${MPROF_WARNINGS} -ftls-model=initial-exec)
target_link_libraries(mprof_jemalloc PRIVATE mprof_core_obj
  -Wl,--whole-archive ${MPROF_JEMALLOC_GLUED} -Wl,--no-whole-archive stdc++ m Threads::Threads)
target_link_options(mprof_jemalloc PRIVATE -Wl,-z,nodelete -Wl,--no-undefined ${_mprof_wrap_opts})
set_target_properties(mprof_jemalloc PROPERTIES OUTPUT_NAME mprof-jemalloc VERSION ${PROJECT_VERSION}
                      SOVERSION 0 PUBLIC_HEADER include/mprof.h EXPORT_NAME mprof_jemalloc
                      LINK_DEPENDS ${MPROF_JEMALLOC_GLUED})

install(TARGETS mprof_jemalloc EXPORT mprofJemallocTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        PUBLIC_HEADER DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT mprofJemallocTargets NAMESPACE mprof:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mprof)
file(RELATIVE_PATH MPROF_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file(${PROJECT_SOURCE_DIR}/cmake/mprof-jemalloc.pc.in
               ${PROJECT_BINARY_DIR}/mprof-jemalloc.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/mprof-jemalloc.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
