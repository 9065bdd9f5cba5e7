// Package python runs the tests of ckp's Python package (python/src/ckp) from the Go
// test suite, so that the README's one test command covers them: pytest on
// python/tests with Debian's interpreter (/usr/bin/python3, where python3-numpy,
// python3-pytest, python3-mpi4py and python3-torch install), against a libckp and a
// ckp command built for the test; and the README's Python section, run as written
// (a venv, pip install ./python, the heat example killed and resumed).
//
// The tests skip, saying why, without a C compiler (cgo builds libckp), the
// interpreter or pytest; with CKP_PYTHON_REQUIRE=1 (as .ci/run sets it after
// .ci/python-setup.sh) they fail instead, and so do pytest's own skips for numpy,
// torch, mpi4py and mpirun. CKP_PYTHON names another interpreter.
package python
