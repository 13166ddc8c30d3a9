"""Pure-PyTorch twins of every fast path: the test oracle, the benchmark baseline and the CPU fallback."""
