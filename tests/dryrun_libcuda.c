/* A stand-in libcuda.so.1 for the GPU dry run (docs/design.md, "Proofs without a GPU", way 4).
 *
 * Triton's C utilities (driver.c: load_binary, launch, device properties) link against libcuda.so.1. The tests
 * compile this file with the system C compiler (-shared -Wl,-soname,libcuda.so.1) and load it with RTLD_GLOBAL
 * before Triton builds its utilities, so every cu* call Triton makes lands here: modules "load" (the cubin was
 * really compiled by ptxas), pointers pass as device pointers, and a launch only counts and records its grid.
 * No kernel runs. Device 0 reports sm_90, device 1 sm_80 (Triton caches the target per device index, so a second
 * architecture in the same process needs its own index).
 *
 * Only the ABI matters: CUresult is an int, handles are pointers, CUdevice an int. No CUDA header is needed.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef void *CUmodule;
typedef void *CUfunction;
typedef uint64_t CUdeviceptr;

/* The launch configuration struct's leading fields (cuda.h's CUlaunchConfig). */
typedef struct {
  unsigned int gridDimX, gridDimY, gridDimZ;
  unsigned int blockDimX, blockDimY, blockDimZ;
  unsigned int sharedMemBytes;
  void *hStream;
  void *attrs;
  unsigned int numAttrs;
} LaunchConfig;

static CUcontext current_context = NULL;
static long launches = 0;
static long modules = 0;
static unsigned int last_grid[3], last_block[3];
static char names[64][128];  /* function handles point into this table */
static int next_name = 0;

/* ---- introspection, read by tests/dryrun.py through ctypes */
long stub_launch_count(void) { return launches; }
long stub_module_count(void) { return modules; }
void stub_last_launch(unsigned int *out) {
  memcpy(out, last_grid, sizeof last_grid);
  memcpy(out + 3, last_block, sizeof last_block);
}

static int capability_major(CUdevice dev) { return dev == 1 ? 8 : 9; }

CUresult cuInit(unsigned int flags) { (void)flags; return 0; }
CUresult cuDriverGetVersion(int *version) { *version = 13000; return 0; }
CUresult cuDeviceGetCount(int *count) { *count = 2; return 0; }
CUresult cuDeviceGet(CUdevice *dev, int ordinal) { *dev = ordinal; return 0; }

CUresult cuDeviceGetAttribute(int *value, int attribute, CUdevice dev) {
  switch (attribute) {
    case 75: *value = capability_major(dev); break;             /* COMPUTE_CAPABILITY_MAJOR */
    case 76: *value = 0; break;                                  /* COMPUTE_CAPABILITY_MINOR */
    case 97:                                                     /* MAX_SHARED_MEMORY_PER_BLOCK_OPTIN */
    case 150: *value = dev == 1 ? 166912 : 232448; break;        /* oversized shared memory */
    case 81: *value = dev == 1 ? 167936 : 233472; break;         /* MAX_SHARED_MEMORY_PER_MULTIPROCESSOR */
    case 12: *value = 65536; break;                              /* MAX_REGISTERS_PER_BLOCK */
    case 16: *value = dev == 1 ? 108 : 132; break;               /* MULTIPROCESSOR_COUNT */
    case 10: *value = 32; break;                                 /* WARP_SIZE */
    case 13: *value = 1980000; break;                            /* CLOCK_RATE (kHz) */
    case 36: *value = 2619000; break;                            /* MEMORY_CLOCK_RATE (kHz) */
    case 37: *value = 5120; break;                               /* GLOBAL_MEMORY_BUS_WIDTH */
    default: *value = 0;
  }
  return 0;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev) {
  *ctx = (CUcontext)(uintptr_t)(0x1000 + dev);
  return 0;
}
CUresult cuDevicePrimaryCtxRelease(CUdevice dev) { (void)dev; return 0; }
CUresult cuCtxGetCurrent(CUcontext *ctx) { *ctx = current_context; return 0; }
CUresult cuCtxSetCurrent(CUcontext ctx) { current_context = ctx; return 0; }
CUresult cuCtxGetDevice(CUdevice *dev) {
  *dev = current_context ? (CUdevice)((uintptr_t)current_context - 0x1000) : 0;
  return 0;
}
CUresult cuCtxGetLimit(size_t *value, int limit) { (void)limit; *value = 1 << 20; return 0; }
CUresult cuCtxSetLimit(int limit, size_t value) { (void)limit; (void)value; return 0; }

CUresult cuGetErrorString(CUresult error, const char **text) {
  (void)error;
  *text = "error in the dry-run libcuda stub";
  return 0;
}
CUresult cuGetErrorName(CUresult error, const char **text) { return cuGetErrorString(error, text); }

CUresult cuModuleLoadData(CUmodule *module, const void *image) {
  (void)image;
  modules++;
  *module = (CUmodule)(uintptr_t)(0x10000 + modules);
  return 0;
}
CUresult cuModuleUnload(CUmodule module) { (void)module; return 0; }
CUresult cuModuleGetFunction(CUfunction *function, CUmodule module, const char *name) {
  (void)module;
  int slot = next_name++ % 64;
  strncpy(names[slot], name, sizeof names[slot] - 1);
  *function = names[slot];
  return 0;
}

CUresult cuFuncGetAttribute(int *value, int attribute, CUfunction function) {
  (void)function;
  switch (attribute) {
    case 0: *value = 1024; break; /* MAX_THREADS_PER_BLOCK */
    case 4: *value = 32; break;   /* NUM_REGS: fake; real figures come from ptxas -v (tests/aot.py) */
    default: *value = 0;          /* shared, const and local (spill) bytes */
  }
  return 0;
}
CUresult cuFuncSetAttribute(CUfunction function, int attribute, int value) {
  (void)function; (void)attribute; (void)value;
  return 0;
}
CUresult cuFuncSetCacheConfig(CUfunction function, int config) { (void)function; (void)config; return 0; }
CUresult cuOccupancyMaxActiveClusters(int *clusters, CUfunction function, const void *config) {
  (void)function; (void)config;
  *clusters = 1;
  return 0;
}

/* Pointer attribute 2 is CU_POINTER_ATTRIBUTE_DEVICE_POINTER: a host pointer passes as its own device address. */
CUresult cuPointerGetAttribute(void *data, int attribute, CUdeviceptr pointer) {
  if (attribute == 2) *(CUdeviceptr *)data = pointer;
  return 0;
}
CUresult cuPointerGetAttributes(unsigned int count, int *attributes, void **data, CUdeviceptr pointer) {
  for (unsigned int i = 0; i < count; i++)
    if (attributes[i] == 2) *(CUdeviceptr *)data[i] = pointer;
  return 0;
}

CUresult cuLaunchKernelEx(const LaunchConfig *config, CUfunction function, void **params, void **extra) {
  (void)function; (void)params; (void)extra;
  launches++;
  last_grid[0] = config->gridDimX, last_grid[1] = config->gridDimY, last_grid[2] = config->gridDimZ;
  last_block[0] = config->blockDimX, last_block[1] = config->blockDimY, last_block[2] = config->blockDimZ;
  return 0;
}

CUresult cuTensorMapEncodeTiled(void) { return 1; }  /* no kernel here uses TMA descriptors */
CUresult cuTensorMapEncodeIm2col(void) { return 1; }
