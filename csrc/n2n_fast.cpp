// Every schema of the extension, in one place. Kernels register per device in cpu/ and cuda/ with
// TORCH_LIBRARY_IMPL; Python-side fake (meta) implementations live in n2n_fast/ops/.
#include <Python.h>
#include <torch/library.h>

// Importing n2n_fast._C from Python runs the static TORCH_LIBRARY registrations below.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}

TORCH_LIBRARY(n2n_fast, m) {
  // Philox4x32-10 words for a tensor of counters (int32, last dim 4). The first op: proves the CPU + CUDA build
  // and the shared __host__ __device__ header end to end; the noise kernels build on the same header.
  m.def("philox(Tensor counters, int seed) -> Tensor");
}
