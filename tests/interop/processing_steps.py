"""What the bioimage.io tests share: a package's pre/postprocessing run as its loaded description states it."""
import numpy as np


def apply_steps(steps, array):
    """Run pre/postprocessing steps as the loaded description states them (the spec inserts implicit casts)."""
    for step in steps:
        if step.id == "ensure_dtype":
            array = array.astype(step.kwargs.dtype)
        elif step.id == "scale_linear":
            array = array * np.float32(step.kwargs.gain) + np.float32(step.kwargs.offset)
        else:
            raise AssertionError(f"unexpected processing step {step.id}")
    return array
