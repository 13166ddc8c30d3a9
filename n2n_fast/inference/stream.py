"""Moving image bands between where the image lives and where the model runs, for n2n_fast.denoise.

BandReader hands out the source rows a tile row needs: the image itself when it is already on the compute device
(no copy), else a band of rows copied there. On CUDA the copy of the next band is staged in pinned memory and sent
on a side stream while the current band computes; RowWriter sends finished rows back the same way (pinned buffer,
event) and stores them into the destination (numpy array, memmap or tensor) one band later, so the host-side
stores overlap the GPU's work too. Neither ever moves the whole image.
"""
import torch

from ..conventions import UINT_PEAKS

_PEAK = {getattr(torch, name): float(peak) for name, peak in UINT_PEAKS.items()}


def _check_pixels(rows, limit=None):
    """NaN/Inf refused; with a limit (float data of unstated range, n2n_fast/value_range.py) a maximum above it
    too: checked here, band by band, because a whole-image pass would read a memmap or Zarr image twice."""
    if rows.is_floating_point() and not bool(torch.isfinite(rows).all()):
        raise ValueError("image: contains NaN or Inf values; accepted: finite pixels")
    if limit is not None and rows.is_floating_point() and rows.numel() and float(rows.max()) > limit:
        from ..value_range import refuse_unstated

        refuse_unstated(float(rows.max()), "image")


class BandReader:
    def __init__(self, view, device, limit=None):
        self.view, self.device, self.limit = view, torch.device(device), limit
        self.local = isinstance(view, torch.Tensor) and view.device == self.device  # else: copied by bands
        self.cuda = self.device.type == "cuda" and not self.local
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.pending = {}
        if self.local and self.device.type == "cuda":
            _check_pixels(view, limit)  # once, up front: a per-band check would sync the device every tile row

    def prefetch(self, rows):
        """Start bringing image rows [lo, hi) to the device (checks them for NaN/Inf on the way)."""
        if rows in self.pending:
            return
        lo, hi = rows
        band = self.view[:, :, lo:hi]
        if self.local:
            if self.device.type != "cuda":
                _check_pixels(band, self.limit)
            self.pending[rows] = (self.view, 0, None)
            return
        _check_pixels(band, self.limit)
        if self.cuda and band.device.type == "cpu":
            staging = torch.empty(band.shape, dtype=band.dtype, pin_memory=True)
            staging.copy_(band)
            with torch.cuda.stream(self.stream):
                moved = staging.to(self.device, non_blocking=True)
                event = torch.cuda.Event()
                event.record(self.stream)
            self.pending[rows] = (moved, lo, event)
        else:
            self.pending[rows] = (band.to(self.device), lo, None)

    def take(self, rows):
        """(tensor holding image rows from `top` on, top) covering rows, ready on the current stream."""
        self.prefetch(rows)
        band, top, event = self.pending.pop(rows)
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            band.record_stream(current)  # allocated on the side stream, used on this one
        return band, top


class RowWriter:
    def __init__(self, destination, device):
        self.destination, self.device = destination, torch.device(device)
        self.deferred = self.device.type == "cuda" and destination.device.type == "cpu"
        self.pending = None

    def _convert(self, rows):
        dtype = self.destination.dtype
        peak = _PEAK.get(dtype)
        if peak is not None:
            return torch.round(rows.clamp(0.0, 1.0) * peak).to(dtype)
        return rows.to(dtype)

    def write(self, rows, top):
        """Store float32 rows (N, C, h, W) as destination rows [top, top + h)."""
        if rows.shape[2] == 0:
            return
        converted = self._convert(rows)
        if not self.deferred:
            self.destination[:, :, top:top + rows.shape[2]].copy_(converted)
            return
        staging = torch.empty(converted.shape, dtype=converted.dtype, pin_memory=True)
        staging.copy_(converted, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        self.flush()
        self.pending = (staging, top, event)

    def flush(self):
        if self.pending is not None:
            staging, top, event = self.pending
            event.synchronize()
            self.destination[:, :, top:top + staging.shape[2]].copy_(staging)
            self.pending = None

    def finish(self):
        self.flush()
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
