"""What one 3-D U-Net call (UNet dims=3) costs per voxel on this CPU, by tile shape and width: peak resident memory
and time (float32, one thread, inference mode). The memory model of the 3-D tile="auto" plan
(n2n_fast/inference/volume_plan.py tile_bytes: UNET3D_FLOATS per voxel plus the column buffer of thin tiles)
must stay above the measured bytes; docs/tiling.md §8 has the
table. The 2-D twin is benchmarks/unet_cost.py.

    python benchmarks/unet_cost3d.py [--features 8 16 48] [--shapes 16x64x64 32x64x64 32x128x128] [--repeats 2]

Each measurement runs in a fresh process (peak RSS is per process: VmHWM after resetting it through
/proc/self/clear_refs), shapes interleaved across repeats so a busy machine slows them alike; the largest peak and
the fastest time over the repeats are reported. z_pools=5 (isotropic volumes: z pooled at every level, the most
feature maps along z); a tile thinner than 32 slices is mirror-padded to 32 inside the network, so shapes use at
least 32 slices unless --z-pools says fewer levels pool z.
"""
import argparse
import subprocess
import sys

_CHILD = """
import sys, time, torch
import n2n_fast
from n2n_fast.inference.volume_plan import activation_bytes_per_voxel, tile_bytes
torch.set_num_threads(1)
features, z_pools = int(sys.argv[1]), int(sys.argv[2])
shape = tuple(int(v) for v in sys.argv[3].split("x"))
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
net = n2n_fast.UNet(1, features=features, dims=3, z_pools=z_pools).eval()
x = torch.rand(1, 1, *shape)
voxels = shape[0] * shape[1] * shape[2]
with torch.inference_mode():
    net(torch.rand(1, 1, 2 ** z_pools, 32, 32))  # oneDNN and allocator set-up outside the measurement
    open("/proc/self/clear_refs", "w").write("5")
    base = rss("VmRSS")
    start = time.perf_counter()
    net(x)
    seconds = time.perf_counter() - start
    peak = rss("VmHWM") - base
bound = tile_bytes(net, 1, shape, activation_bytes_per_voxel(net, 1)) / voxels  # with the column buffer
print(peak / voxels, seconds / voxels * 1e6, int(bound))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=int, nargs="+", default=[8, 16, 48])
    parser.add_argument("--shapes", nargs="+", default=["32x64x64", "32x128x128", "64x128x128"])
    parser.add_argument("--z-pools", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    best = {}
    for _ in range(args.repeats):
        for features in args.features:
            for shape in args.shapes:
                out = subprocess.run([sys.executable, "-c", _CHILD, str(features), str(args.z_pools), shape],
                                     check=True, capture_output=True, text=True).stdout.split()
                peak, micros, bound = float(out[0]), float(out[1]), int(out[2])
                old = best.get((features, shape))
                best[features, shape] = (max(peak, old[0]) if old else peak, min(micros, old[1]) if old else micros,
                                         bound)
                print(f"features {features} {shape}: {peak:.0f} bytes/voxel, {micros:.2f} us/voxel", flush=True)
    print("| features | tile (d x h x w) | peak bytes/voxel (measured) | bound used by tile=\"auto\" | us/voxel, 1 thread |")
    print("| --- | --- | --- | --- | --- |")
    for (features, shape), (peak, micros, bound) in best.items():
        print(f"| {features} | {shape.replace('x', ' x ')} | {peak:.0f} | {bound} | {micros:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
