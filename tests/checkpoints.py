"""Test helper: a model written as the smallest checkpoint n2n_fast.load accepts (for inference and CLI tests)."""
from n2n_fast import checkpoint


def save_model(net, path, **state):
    """Write `net` to `path` with the keys n2n_fast.load requires; `state` overrides any of them."""
    checkpoint.save({"model": net.state_dict(), "model_args": net.arguments(), "train_args": {}, "step": 0,
                     "optimizer": {}, "rng": {}, "history": [], **state}, path)
    return path
