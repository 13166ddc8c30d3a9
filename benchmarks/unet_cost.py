"""What one U-Net call costs per pixel on this CPU, by input side: peak resident memory and time (float32, one
thread, inference mode). The memory model of tile="auto" (n2n_fast/inference/auto_plan.py UNET_FLOATS) must stay above
the measured bytes; the time shows why the default CPU budget is capped (per-pixel cost grows with the side).

    python benchmarks/unet_cost.py [--sides 256 512 704 1024 2048] [--features 48] [--repeats 2]

Each measurement runs in a fresh process (peak RSS is per process: VmHWM after resetting it through
/proc/self/clear_refs), sides interleaved across repeats so a busy machine slows them alike; the fastest repeat
is reported.
"""
import argparse
import subprocess
import sys

_CHILD = """
import sys, time, torch
import n2n_fast
from n2n_fast.inference.auto_plan import activation_bytes_per_pixel
torch.set_num_threads(1)
side, features = int(sys.argv[1]), int(sys.argv[2])
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
net = n2n_fast.UNet(3, features=features).eval()
x = torch.rand(1, 3, side, side)
with torch.inference_mode():
    net(torch.rand(1, 3, 64, 64))  # oneDNN and allocator set-up outside the measurement
    open("/proc/self/clear_refs", "w").write("5")
    base = rss("VmRSS")
    start = time.perf_counter()
    net(x)
    seconds = time.perf_counter() - start
    peak = rss("VmHWM") - base
print(peak / side**2, seconds / side**2 * 1e6, activation_bytes_per_pixel(net, 3))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[256, 512, 704, 1024, 2048])
    parser.add_argument("--features", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    best = {}
    for _ in range(args.repeats):
        for side in args.sides:
            out = subprocess.run([sys.executable, "-c", _CHILD, str(side), str(args.features)], check=True,
                                 capture_output=True, text=True).stdout.split()
            peak, micros, bound = float(out[0]), float(out[1]), int(out[2])
            old = best.get(side)
            best[side] = (max(peak, old[0]) if old else peak, min(micros, old[1]) if old else micros, bound)
    print(f"| side | peak bytes/pixel (measured) | bound used by tile=\"auto\" | us/pixel, 1 thread |")
    print("| --- | --- | --- | --- |")
    for side, (peak, micros, bound) in best.items():
        print(f"| {side} | {peak:.0f} | {bound} | {micros:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
