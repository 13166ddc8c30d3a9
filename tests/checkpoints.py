"""Test helper: a model written as the smallest checkpoint n2n_fast.load accepts (for inference and CLI tests)."""
from n2n_fast import checkpoint


def save_model(net, path, **state):
    """Write `net` to `path` with the parts n2n_fast.load requires (checkpoint.make_checkpoint); `state` overrides
    any of them."""
    parts = dict(model=net.state_dict(), model_args=net.arguments(), train_args={}, step=0, optimizer={}, rng={},
                 history=[])
    checkpoint.save(checkpoint.make_checkpoint(**{**parts, **state}), path)
    return path
