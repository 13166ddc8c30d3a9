"""Training crops picked and cut on the device, from a step held in device memory: no host work between launches.

The picks are exactly data.draw_crops' (same Philox words, same `word % n` choices: n2n_fast/training/data.py documents
the layout; volumes: volumes.draw_volume_crops', DeviceVolumeCrops), computed from a 0-d int64 step tensor, so a
replayed CUDA graph picks new crops at every step and a run resumed from a checkpoint continues the same sequence.
The images of a store are packed into one flat buffer; one gather reads every crop, with its flips and quarter
turns folded into the indices, and scales integers to [0, 1] by the same float32 factor the host path multiplies
with.
"""
import torch

from . import _backend
from .philox import philox_words

_MASK32 = 0xFFFFFFFF


class DeviceCrops:
    """The images of one data.ImageStore, packed for on-device crops (`usable(store)` says whether they can be)."""

    def __init__(self, store, data_key, purpose):
        images = store.images
        dtype = images[0].dtype if all(image.dtype == images[0].dtype for image in images) else torch.float32
        self.device, self.channels, self.data_key, self.purpose = store.device, store.channels, data_key, purpose
        self.flat = torch.cat([image.reshape(-1).to(dtype) for image in images])
        numels = torch.tensor([image.numel() for image in images], dtype=torch.int64)
        self.offsets = (torch.cumsum(numels, 0) - numels).to(self.device)
        # the last two extents of every size: (H, W) of an image, (D, H, W) of a volume
        self.heights = torch.tensor([size[-2] for size in store.sizes], dtype=torch.int64, device=self.device)
        self.widths = torch.tensor([size[-1] for size in store.sizes], dtype=torch.int64, device=self.device)
        # the host path multiplies by the Python float 1/peak, which torch rounds to float32: the same factor
        self.inv_scale = torch.tensor([1.0 / scale for scale in store.scales], dtype=torch.float32,
                                      device=self.device)

    @staticmethod
    def usable(store):
        """True when every image of `store` is a tensor on its device (not a memmap, not pinned host memory)."""
        return all(isinstance(image, torch.Tensor) and image.device == store.device for image in store.images)

    def words(self, seed, step, index, count, purpose):
        """(count, 4) int64 Philox words in [0, 2**32) for samples index .. index + count - 1 at `step` (an int or
        a 0-d int64 device tensor), with data.py's counter (sample, 0, step, purpose)."""
        counters = torch.zeros(count, 4, dtype=torch.int32, device=self.device)
        counters[:, 0] = torch.arange(index, index + count, dtype=torch.int64, device=self.device) & _MASK32
        if isinstance(step, torch.Tensor):
            counters[:, 2] = step & _MASK32  # int64 -> int32 keeps the low 32 bits
        else:
            counters[:, 2] = (step & _MASK32) - ((step >> 31 & 1) << 32)  # the same bits as a signed int32
        counters[:, 3] = purpose
        return philox_words(counters, seed ^ self.data_key).to(torch.int64) & _MASK32

    def picks(self, seed, step, index, count, crop):
        """(image, row, col, bits) int64 tensors of length `count`: data.draw_crops' picks, on the device."""
        words = self.words(seed, step, index, count, self.purpose)
        image = words[:, 0] % len(self.heights)
        row = words[:, 1] % (self.heights[image] - crop + 1)
        col = words[:, 2] % (self.widths[image] - crop + 1)
        return image, row, col, words[:, 3] & 7

    def crops(self, seed, step, index, count, crop):
        """(count, C, crop, crop) float32: the crops of `picks(seed, step, index, count, crop)`, cut by `cut`. Where
        Triton serves, one `training_crops` launch draws the picks and cuts them; elsewhere the picks come from
        the philox op (the C++ extension on the CPU: the twin's pure-PyTorch Philox costs about 1 ms a call)."""
        name, fused = _backend.choose("training_crops", self.device, None, flat=self.flat)
        if name == "triton":
            return fused(self.flat, self.offsets, self.heights, self.widths, self.inv_scale, seed ^ self.data_key,
                         step, index, count, self.purpose, self.channels, crop)
        return self.cut(self.picks(seed, step, index, count, crop), crop)

    def cut(self, picks, crop):
        """(B, C, crop, crop) float32: the crops of `picks`, flipped (bit 0) then turned (bits 1-2) as
        data.ImageStore.crops does with torch.flip and torch.rot90."""
        image, row, col, bits = picks
        _, gather = _backend.choose("crop_gather", self.device, None, flat=self.flat)
        return gather(self.flat, self.offsets, self.heights, self.widths, self.inv_scale, image, row, col, bits,
                      self.channels, crop)

    def realisation_pairs(self, seed, step, index, count, realisations, purpose):
        """(first, second) int64 tensors: data.draw_realisations' distinct (input, target) realisation numbers."""
        q = self.words(seed, step, index, count, purpose)[:, 0] % (realisations * (realisations - 1))
        first, second = q // (realisations - 1), q % (realisations - 1)
        return first, second + (second >= first).to(torch.int64)


class DeviceVolumeCrops(DeviceCrops):
    """The volumes of one volumes.VolumeStore, packed for on-device 3-D crops: volumes.draw_volume_crops' picks
    (SAMPLE's words as for images, `depth_purpose`'s for the first slice and the z flip) and VolumeStore.crops' cut,
    bit for bit. crop is (depth, height, width), height == width."""

    def __init__(self, store, data_key, purpose, depth_purpose):
        super().__init__(store, data_key, purpose)
        self.depth_purpose, self.sizes = depth_purpose, [tuple(size) for size in store.sizes]
        self.depths = torch.tensor([d for d, _, _ in self.sizes], dtype=torch.int64, device=self.device)

    def check(self, crop):
        """An error naming the first volume smaller than `crop` (host sizes: no sync); the picks would be wrong."""
        for k, size in enumerate(self.sizes):
            if any(extent > side for extent, side in zip(crop, size)):
                raise ValueError(f"crop: {'x'.join(map(str, crop))} (depth x height x width) is larger than volume "
                                 f"{k} of {'x'.join(map(str, size))}")

    def picks(self, seed, step, index, count, crop):
        """(volume, z, row, col, bits) int64 tensors of length `count`: volumes.draw_volume_crops' picks, on the
        device (bits 0-2 the YX bits, bit 3 the z flip)."""
        words = self.words(seed, step, index, count, self.purpose)
        slices = self.words(seed, step, index, count, self.depth_purpose)
        volume = words[:, 0] % len(self.heights)
        z = slices[:, 0] % (self.depths[volume] - crop[0] + 1)
        row = words[:, 1] % (self.heights[volume] - crop[1] + 1)
        col = words[:, 2] % (self.widths[volume] - crop[2] + 1)
        return volume, z, row, col, (words[:, 3] & 7) | ((slices[:, 1] & 1) << 3)

    def crops(self, seed, step, index, count, crop):
        """(count, C, depth, height, width) float32: the crops of `picks(...)`, in one `volume_crops` launch where
        Triton serves, else the picks from the philox op and `cut`."""
        self.check(crop)
        name, fused = _backend.choose("volume_crops", self.device, None, flat=self.flat)
        if name == "triton":
            return fused(self.flat, self.offsets, self.depths, self.heights, self.widths, self.inv_scale,
                         seed ^ self.data_key, step, index, count, (self.purpose, self.depth_purpose),
                         self.channels, crop)
        return self.cut(self.picks(seed, step, index, count, crop), crop)

    def cut(self, picks, crop):
        """(B, C, depth, height, width) float32: the crops of `picks`, flipped and turned as VolumeStore.crops."""
        volume, z, row, col, bits = picks
        _, gather = _backend.choose("volume_crop_gather", self.device, None, flat=self.flat)
        return gather(self.flat, self.offsets, self.depths, self.heights, self.widths, self.inv_scale, volume, z,
                      row, col, bits, self.channels, tuple(crop))
