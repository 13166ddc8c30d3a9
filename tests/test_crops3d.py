"""The volume_crops op (n2n_fast/triton/crops.py with VOLUMES: picks and cut of 3-D crops in one launch) against its
PyTorch twin (n2n_fast/reference/crops.py) and the host path (volumes.draw_volume_crops + VolumeStore.crops), bit
for bit: every image dtype the dispatch's table gives Triton, odd crop sizes, few-slice volumes of different
shapes, every flip (z, y, x) and YX turn, steps and sample indices past 2**31 and 2**32, the step as an int and
from device memory; crops larger than a volume refused; the kernel's specialisations compiled for sm_80/sm_90."""
import numpy as np
import pytest
import torch

from n2n_fast import _backend
from n2n_fast.crops import DeviceVolumeCrops
from n2n_fast.reference.crops import volume_crops as twin
from n2n_fast.training import data, volumes

TRITON_DTYPES = dict(next(i for i in _backend.OPS["volume_crops"] if i.backend == "triton").accepts.dtypes)["flat"]
SIZES = [(5, 23, 31), (2, 40, 17), (3, 19, 19), (9, 18, 21)]  # (D, H, W): few slices, odd sides
STEPS = (0, 1, 7, 2**31 + 5, 2**32 - 1)  # every bit of the 32-bit step counter
STARTS = ((0, 0), (12345, 3), (2**62 + 1, 2**32 - 2))  # (seed, index): a batch crossing the 32-bit sample counter
PURPOSES = (data.SAMPLE, volumes.DEPTH)


def _tables(dtype, channels, gen, sizes=SIZES):
    """Packed volumes of `sizes` and the tables DeviceVolumeCrops builds."""
    numels = [channels * d * h * w for d, h, w in sizes]
    if dtype.is_floating_point:
        flat = torch.rand(sum(numels), generator=gen).to(dtype)
    else:
        top = 256 if dtype == torch.uint8 else 65536
        flat = torch.randint(0, top, (sum(numels),), generator=gen, dtype=torch.int32).to(dtype)
    offsets = torch.tensor(np.cumsum([0] + numels[:-1]), dtype=torch.int64)
    depths, heights, widths = (torch.tensor(column, dtype=torch.int64) for column in zip(*sizes))
    inv_scale = torch.tensor([(1 / 255, 1.0, 1 / 65535)[k % 3] for k in range(len(sizes))], dtype=torch.float32)
    return flat, offsets, depths, heights, widths, inv_scale


def _volumes(rng):
    """Volumes (D, H, W, C) of SIZES in every dtype a store keeps, two channels."""
    return {"uint8": [rng.integers(0, 256, (*size, 2), dtype=np.uint8) for size in SIZES],
            "uint16": [rng.integers(0, 65536, (*size, 2), dtype=np.uint16) for size in SIZES[:2]],
            "float32": [rng.random((*size, 2), dtype=np.float32) for size in SIZES[1:]],
            "mixed": [rng.integers(0, 256, (*SIZES[0], 2), dtype=np.uint8), rng.random((*SIZES[2], 2),
                                                                                        dtype=np.float32)]}


@pytest.mark.interpret
@pytest.mark.parametrize("dtype", TRITON_DTYPES, ids=str)
@pytest.mark.parametrize("channels", [1, 3])
def test_triton_volume_crops_equal_the_twin_bitwise(dtype, channels):
    from n2n_fast.triton.crops import volume_crops

    tables = _tables(dtype, channels, torch.Generator().manual_seed(5))
    for crop, step, (seed, index) in (((1, 1, 1), 3, STARTS[1]), ((2, 5, 5), STEPS[3], STARTS[2]),
                                      ((2, 17, 17), 0, STARTS[0]), ((1, 16, 16), STEPS[4], STARTS[1])):
        for step_form in (step, torch.tensor(step)):
            args = (seed ^ data.DATA_KEY, step_form, index, 11, PURPOSES, channels, crop)
            fast = volume_crops(*tables, *args)
            assert fast.dtype == torch.float32 and fast.shape == (11, channels, *crop)
            assert torch.equal(fast, twin(*tables, *args)), (dtype, channels, crop, step)


@pytest.mark.interpret
def test_triton_volume_crops_of_single_slice_volumes_and_whole_volume_crops():
    from n2n_fast.triton.crops import volume_crops

    for sizes, crop in (([(1, 20, 20), (1, 17, 25)], (1, 9, 9)), ([(3, 8, 8)], (3, 8, 8))):
        tables = _tables(torch.uint8, 2, torch.Generator().manual_seed(6), sizes)
        for step in (torch.tensor(2), STEPS[3]):
            args = (7 ^ data.DATA_KEY, step, 5, 13, PURPOSES, 2, crop)
            assert torch.equal(volume_crops(*tables, *args), twin(*tables, *args)), (sizes, crop)


@pytest.mark.interpret
def test_device_volume_crops_through_triton_equal_the_host_path():
    stores = _volumes(np.random.default_rng(1))
    store = volumes.VolumeStore(stores["uint8"], "cpu")
    crops = DeviceVolumeCrops(store, data.DATA_KEY, data.SAMPLE, volumes.DEPTH)
    assert _backend.choose("volume_crops", "cpu", None, flat=crops.flat)[0] == "triton"
    seen_bits = set()
    for step in STEPS:
        for seed, index in STARTS:
            host = volumes.draw_volume_crops(seed, step, index, 8, store.sizes, (2, 15, 15))
            seen_bits |= {p[4] for p in host}
            got = crops.crops(seed, torch.tensor(step), index, 8, (2, 15, 15))
            assert torch.equal(got, store.crops(host, (2, 15, 15))), step
    assert len(seen_bits) == 16  # every z flip, x flip and turn was among the picks


@pytest.mark.parametrize("name", ["uint8", "uint16", "float32", "mixed"])
def test_device_picks_and_cut_match_the_host_path_bitwise(name):
    """Where Triton does not serve (this process): the picks from the philox op and the twin's gather."""
    store = volumes.VolumeStore(_volumes(np.random.default_rng(2))[name], "cpu")
    crops = DeviceVolumeCrops(store, data.DATA_KEY, data.SAMPLE, volumes.DEPTH)
    for crop in ((2, 16, 16), (1, 7, 7), (2, 3, 3)):
        for step in (0, STEPS[3], STEPS[4]):
            for seed, index in STARTS:
                host = volumes.draw_volume_crops(seed, step, index, 6, store.sizes, crop)
                picks = crops.picks(seed, torch.tensor(step), index, 6, crop)
                assert [tuple(int(t[i]) for t in picks) for i in range(6)] == [tuple(p) for p in host]
                assert torch.equal(crops.crops(seed, torch.tensor(step), index, 6, crop), store.crops(host, crop))


def test_twin_equals_the_host_path():
    """The twin itself (pure PyTorch, reference Philox) against draw_volume_crops + VolumeStore.crops."""
    store = volumes.VolumeStore(_volumes(np.random.default_rng(3))["float32"], "cpu")
    crops = DeviceVolumeCrops(store, data.DATA_KEY, data.SAMPLE, volumes.DEPTH)
    tables = (crops.flat, crops.offsets, crops.depths, crops.heights, crops.widths, crops.inv_scale)
    for step in (0, STEPS[3]):
        for seed, index in STARTS:
            host = volumes.draw_volume_crops(seed, step, index, 5, store.sizes, (2, 12, 12))
            got = twin(*tables, seed ^ data.DATA_KEY, torch.tensor(step), index, 5, PURPOSES, 2, (2, 12, 12))
            assert torch.equal(got, store.crops(host, (2, 12, 12)))


def test_a_crop_larger_than_a_volume_is_refused_naming_it():
    uint8 = _volumes(np.random.default_rng(4))["uint8"]
    for order, crop, volume in ((1, (3, 8, 8), "volume 1 of 2x40x17"), (1, (2, 18, 18), "volume 1 of 2x40x17"),
                                (-1, (3, 18, 18), "volume 2 of 2x40x17"), (-1, (2, 19, 19), "volume 0 of 9x18x21")):
        store = volumes.VolumeStore(uint8[::order], "cpu")
        crops = DeviceVolumeCrops(store, data.DATA_KEY, data.SAMPLE, volumes.DEPTH)
        with pytest.raises(ValueError, match=f"crop: {'x'.join(map(str, crop))} .* larger than {volume}$"):
            crops.crops(0, torch.tensor(0), 0, 2, crop)


def test_triton_volume_crops_refuse_unequal_height_and_width():
    pytest.importorskip("triton")
    from n2n_fast.triton.crops import volume_crops

    with pytest.raises(ValueError, match="crop: height and width must be equal"):
        volume_crops(*_tables(torch.uint8, 1, torch.Generator()), 0, 0, 0, 2, PURPOSES, 1, (1, 4, 5))


@pytest.mark.parametrize("dtype", TRITON_DTYPES, ids=str)
def test_triton_crops_kernel_compiles_clean(dtype):
    """Every specialisation train() launches (volumes and images, the step in memory and as an int), for sm_80 and
    sm_90: no spills. The source reads are a gather (no 128-bit loads to expect) and the output planes of a crop
    start at any multiple of 4 bytes, so no vector width is asserted either."""
    pytest.importorskip("triton")
    from aot import ARCHES, compile_for, pointer_type

    from n2n_fast.triton.crops import BLOCK, NUM_WARPS, _training_crops_kernel

    signature = {"flat_ptr": pointer_type(dtype), "offsets_ptr": "*i64", "depths_ptr": "*i64", "heights_ptr": "*i64",
                 "widths_ptr": "*i64", "inv_scale_ptr": "*fp32", "out_ptr": "*fp32", "key": "i64", "step": "i32",
                 "step_ptr": "*i64", "index": "i32", "images": "i32", "purpose": "i32", "depth_purpose": "i32",
                 "channels": "i32", "crop_depth": "i32", "crop": "i32"}
    pointers = [name for name, kind in signature.items() if kind.startswith("*")]
    for volumes_on, in_memory in ((True, True), (True, False), (False, True)):
        # images launch with crop_depth 1, which Triton specialises as a constant
        constexprs = {"BLOCK": BLOCK, "STEP_IN_MEMORY": in_memory, "VOLUMES": volumes_on,
                      **({} if volumes_on else {"crop_depth": 1})}
        for arch in ARCHES:
            report = compile_for(_training_crops_kernel, signature, constexprs, aligned=pointers, arch=arch,
                                 num_warps=NUM_WARPS)
            report.assert_clean(min_vector_loads=0, min_vector_stores=0)
