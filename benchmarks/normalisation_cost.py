"""What the network's affine map costs a training step (docs/normalisation.md): the map's own work, (x - offset) /
scale on the way in and y * scale + offset on the way out, forward and backward, against the forward and backward
of the U-Net it wraps, same batch. Each is the minimum over many repeats (the least disturbed run on a shared
machine); float32, one thread.

    python benchmarks/normalisation_cost.py [batch] [side] [repeats]
"""
import sys
import time

import torch

from n2n_fast import UNet


def fastest(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(batch=4, side=128, repeats=5):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = UNet(3)
    x, target = torch.rand(batch, 3, side, side), torch.rand(batch, 3, side, side)
    y = torch.rand(batch, 3, side, side, requires_grad=True)

    def network():
        torch.mean((net(x) - target) ** 2).backward()

    def the_map():  # what UNet(normalisation=...) adds: the input map (no gradient) and the output map
        inputs = (x - 0.4) / 0.25
        torch.mean((y.float() * 0.25 + 0.4 - target) ** 2).backward()
        return inputs

    def loss_only():
        torch.mean((y - target) ** 2).backward()

    step = fastest(network, repeats)
    added = fastest(the_map, 20 * repeats) - fastest(loss_only, 20 * repeats)
    print(f"{batch}x3x{side}x{side} float32, 1 thread: network forward+backward {step * 1e3:.1f} ms; the map adds "
          f"{added * 1e3:.3f} ms ({100 * added / step:.2f}% of it)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
