"""The run folder: a run's checkpoints and history, never overwritten by accident, saved and resumed whole.

A checkpoint is a plain dict (n2n_fast/checkpoint.py lists its keys); `save_run` writes last.pt (and best.pt when
validation improved) atomically, `resume_run` reads last.pt back and refuses one made with other arguments.
"""
import tempfile
from pathlib import Path

from .. import checkpoint as ckpt
from . import data as training_data
from . import history as history_files

RUN_FILES = ("last.pt", "best.pt", "history.json", "history.csv", "history.png")


def check_run_folder(out_dir, resume, overwrite):
    """A folder holding a run is never overwritten by accident."""
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite: expected a bool, got {type(overwrite).__name__} {overwrite!r}")
    if out_dir is None or not Path(out_dir).is_dir():
        return
    found = [name for name in RUN_FILES if (Path(out_dir) / name).exists()]
    if found and not resume and not overwrite:
        raise FileExistsError(f"out_dir: {str(out_dir)!r} already holds a run ({', '.join(found)}); resume=True "
                              "continues it, overwrite=True replaces it, or choose another folder")


def remove_run(out_dir):
    for name in RUN_FILES:
        (out_dir / name).unlink(missing_ok=True)


def check_writable(out_dir):
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise ValueError(f"out_dir: cannot write to {str(out_dir)!r} ({exc.strerror or exc})") from exc


def save_run(run, train_args, history, best_psnr, done, out_dir, improved):
    state = ckpt.make_checkpoint(model={k: v.detach().cpu() for k, v in run.net.state_dict().items()},
                                 model_args=run.net.arguments(), train_args=train_args, step=done,
                                 optimizer=run.optimizer.state_dict(),
                                 rng={"seed": run.seed, "step": done, "data_key": training_data.DATA_KEY},
                                 history=history, best_psnr=best_psnr)
    ckpt.save(state, out_dir / "last.pt")
    if improved:
        ckpt.save(state, out_dir / "best.pt")
    history_files.write(history, out_dir)


def resume_run(net, optimizer, path, train_args):
    """(start step, history, best PSNR) from the checkpoint at `path`, refusing one made with other arguments."""
    state = ckpt.read(path, "resume")
    if train_args["steps"] < state["step"]:
        raise ValueError(f"steps: the run in out_dir already made {state['step']} steps; steps={train_args['steps']} "
                         "would go back (give at least as many to resume or extend it)")
    # more steps than the checkpoint's run extends it: every other argument must match
    differ = {k: (state["train_args"].get(k), v) for k, v in train_args.items()
              if k != "steps" and state["train_args"].get(k) != v}
    if differ:
        raise ValueError("resume: the checkpoint in out_dir was made with different arguments (checkpoint, now): "
                         + "; ".join(f"{k}: {a!r}, {b!r}" for k, (a, b) in differ.items()))
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["step"], state["history"], state.get("best_psnr")
