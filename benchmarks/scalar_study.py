"""The scalar intuition behind Noise2Noise (paper §2): what a loss recovers from repeated noisy measurements.

Fit one number theta to many noisy measurements y_i of a true value x by gradient descent on the package's own
losses: L2 lands on their mean, L1 on their median, the annealed L0 (gamma 2 -> 0) on their mode. So zero-mean
noise needs L2, zero-median noise needs L1 (an L2 fit stays biased by the mean of the noise), and random-valued
impulse noise, whose mean and median are both pulled towards the middle of the range, needs L0.

The fits are compared with the sample statistics (closed form: numpy mean / median; the mode is x by
construction) of the same measurements. Run alone: `python benchmarks/scalar_study.py`.
"""
import math

import numpy as np
import torch

X = 0.2  # the true value; away from 0.5 so that the impulse noise's mean and median move away from it
TOLERANCE = 0.005  # |fit - statistic| accepted; the statistics' own sampling error is ~0.002 at 40,000 samples


def measurements(kind, count, rng):
    """`count` noisy measurements of X (float64 numpy) for one kind of noise."""
    if kind == "gaussian":  # zero mean, zero median
        return X + 0.2 * rng.standard_normal(count)
    if kind == "median-zero":  # exponential shifted to median 0: its mean is 0.3 (1 - ln 2) = +0.092
        return X + 0.3 * (rng.standard_exponential(count) - math.log(2.0))
    if kind == "mean-zero":  # exponential shifted to mean 0: its median is 0.3 (ln 2 - 1) = -0.092
        return X + 0.3 * (rng.standard_exponential(count) - 1.0)
    if kind == "impulse":  # random-valued impulse, p = 0.7: the rest sits at X (mode), with a little jitter
        hit = rng.random(count) < 0.7
        return np.where(hit, rng.random(count), X + 0.002 * rng.standard_normal(count))
    raise ValueError(f"kind: unknown noise {kind!r}; accepted: {', '.join(KINDS)}")


KINDS = {"gaussian": "Gaussian σ=0.2 (mean 0, median 0)",
         "median-zero": "exponential, median 0, mean +0.092",
         "mean-zero": "exponential, mean 0, median −0.092",
         "impulse": "random-valued impulse p=0.7 (mode at x)"}


def fit(y, loss, steps=1500, lr=0.02):
    """theta minimising mean loss(theta, y) by Adam, full batch, cosine learning-rate decay (so the L1 / L0
    subgradient steps shrink and settle). loss: "l2" | "l1" | "l0" (gamma annealed linearly 2 -> 0)."""
    import n2n_fast

    target = torch.as_tensor(y, dtype=torch.float32)
    theta = torch.full((), float(np.mean(y)), requires_grad=True)  # any start; the mean is a neutral one
    opt = torch.optim.Adam([theta], lr=lr)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        pred = theta.expand_as(target)
        if loss == "l2":
            value = n2n_fast.l2_loss(pred, target)
        elif loss == "l1":
            value = n2n_fast.l1_loss(pred, target)
        else:
            value = n2n_fast.l0_loss(pred, target, gamma=max(2.0 * (1 - step / steps), 0.0), eps=1e-4)
        opt.zero_grad()
        value.backward()
        opt.step()
    return float(theta.detach())


def study(count=40_000, steps=1500, seed=0):
    """One row per kind of noise: the fits, the statistics they should equal, and whether they do."""
    rng = np.random.default_rng(seed)
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 40,000-element steps: a second thread only adds synchronisation (stalls on a busy CPU)
    try:
        for kind, label in KINDS.items():
            rows.append(_row(kind, label, measurements(kind, count, rng), steps))
    finally:
        torch.set_num_threads(threads)
    return rows


def _row(kind, label, y, steps):
    row = {"noise": label, "kind": kind, "mean": float(np.mean(y)), "median": float(np.median(y)),
           "l2": fit(y, "l2", steps), "l1": fit(y, "l1", steps)}
    row["l0"] = fit(y, "l0", steps) if kind == "impulse" else None
    row["l2_is_mean"] = abs(row["l2"] - row["mean"]) < TOLERANCE
    row["l1_is_median"] = abs(row["l1"] - row["median"]) < TOLERANCE
    row["l0_is_mode"] = None if row["l0"] is None else abs(row["l0"] - X) < TOLERANCE
    return row


def as_predicted(rows):
    """The paper's claims: L2 -> mean and L1 -> median everywhere, L0 -> mode on impulse noise, and the noise
    whose median (not mean) is zero fools L2 (biased by more than 10 tolerances) but not L1."""
    by = {r["kind"]: r for r in rows}
    fooled = by["median-zero"]
    return (all(r["l2_is_mean"] and r["l1_is_median"] for r in rows) and bool(by["impulse"]["l0_is_mode"])
            and abs(fooled["l2"] - X) > 10 * TOLERANCE and abs(fooled["l1"] - X) < TOLERANCE)


def markdown(rows):
    lines = [f"True value x = {X}; each fit is gradient descent on one scalar; ✓ = within {TOLERANCE} of the "
             "statistic it should equal.", "",
             "| noise | sample mean | L2 fit | sample median | L1 fit | mode | annealed L0 fit |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        tick = lambda ok: "" if ok is None else (" ✓" if ok else " ✗")  # noqa: E731
        l0 = "—" if r["l0"] is None else f"{r['l0']:.4f}{tick(r['l0_is_mode'])}"
        mode = f"{X:.4f}" if r["l0"] is not None else "—"  # only the impulse noise has its mode at x
        lines.append(f"| {r['noise']} | {r['mean']:.4f} | {r['l2']:.4f}{tick(r['l2_is_mean'])} | "
                     f"{r['median']:.4f} | {r['l1']:.4f}{tick(r['l1_is_median'])} | {mode} | {l0} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    result = study()
    print(markdown(result))
    print("as predicted" if as_predicted(result) else "NOT as predicted")
