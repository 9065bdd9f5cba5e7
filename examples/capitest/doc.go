// Package capitest runs the examples written against ckp's C interface
// (capi/ckp_util.h): examples/c (the heat solver in C), examples/fortran (the same in
// Fortran, through the ckp_util module) and examples/mpi (in C on four MPI ranks, which
// agree on a restart through MPI or, with -remote, through a shared store alone). Its
// tests compile them with the system's cc, gfortran and mpicc, kill them with SIGKILL
// at random moments, restart them, and compare their answers with uninterrupted runs',
// byte for byte. The C and Fortran examples also build with CMake (find_package(ckp)
// against a prefix capi/install.sh filled), outside the source tree. The tests skip,
// saying why, where a tool is missing; with CKP_CAPI_REQUIRE=1 they fail instead
// (bash .ci/capi-setup.sh installs the tools).
package capitest
