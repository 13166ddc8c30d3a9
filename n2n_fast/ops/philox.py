"""Python side of the extension's `n2n_fast::philox` op."""
import torch


@torch.library.register_fake("n2n_fast::philox")
def _philox_fake(counters, seed):
    return torch.empty_like(counters)


def philox_words(counters, seed):
    """Philox4x32-10 words (int32, same shape) for int32 counters of shape (..., 4), on CPU or CUDA."""
    return torch.ops.n2n_fast.philox(counters, int(seed))
