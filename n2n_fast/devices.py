"""The one device check of every entry point (train, denoise, export, the CLI)."""
import torch


def check_device(device, name="device"):
    """A torch.device from None / "cpu" / "cuda" / "cuda:N" / a torch.device, or a ValueError naming `name`."""
    if device is None:
        return None
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{name}: {device!r} is not a device; accepted: 'cpu', 'cuda', 'cuda:N'") from exc
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name}: {device.type!r} devices are not supported; accepted: 'cpu', 'cuda', 'cuda:N'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}: {str(device)!r} asked for, but no CUDA GPU is visible (use 'cpu')")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{name}: {str(device)!r}, but only {torch.cuda.device_count()} GPU(s) are visible")
    return device
