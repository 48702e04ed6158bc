import numpy as np
import pytest

from engine.errors import MedSRError
from training.data import META_SCALES, PatchSampler, SliceBank, hr_patch_size
from training.split import SUBJECTS, TRAIN_SUBJECTS, VALIDATION_SUBJECTS, split_paths


def test_bank_skips_empty_slices_and_crops_to_body(tiny_volume):
    bank = SliceBank([tiny_volume], patch=32)
    assert bank.n_slices > 0
    for plane in bank.planes:
        vol = bank.volumes[plane.volume]
        for i, (y0, y1, x0, x1) in zip(plane.indices, plane.boxes, strict=True):
            img = np.take(vol, i, axis=plane.axis)
            assert y1 - y0 >= 32 and x1 - x0 >= 32
            assert 0 <= y0 and y1 <= img.shape[0] and 0 <= x0 and x1 <= img.shape[1]


def test_empty_slices_are_skipped(tiny_volume, tmp_path):
    import nibabel as nib

    img = nib.load(tiny_volume)
    data = np.asarray(img.dataobj, dtype=np.float32)
    padded = np.concatenate([np.zeros(data.shape[:2] + (10,), np.float32), data], axis=2)
    path = tmp_path / "padded.nii.gz"
    nib.save(nib.Nifti1Image(padded, img.affine), path)
    full = SliceBank([tiny_volume], patch=32)
    bank = SliceBank([path], patch=32)
    assert bank.n_slices == full.n_slices  # the 10 empty slices added no sample


def test_patches_are_deterministic_per_seed_and_augmented(tiny_volume):
    bank = SliceBank([tiny_volume], patch=32)
    a = bank.sample_hr(np.random.default_rng(5), 8, 32)
    b = bank.sample_hr(np.random.default_rng(5), 8, 32)
    c = bank.sample_hr(np.random.default_rng(6), 8, 32)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sampler_makes_lr_with_the_engine_degradation(tiny_volume):
    bank = SliceBank([tiny_volume], patch=32)
    s = PatchSampler(bank, (3.0,), batch_size=4, blur=False, seed=0)
    batch = s.next()
    assert batch.hr.shape == (4, 1, 30, 30) and batch.lr.shape == (4, 1, 10, 10)
    from engine.degradation import downscale

    np.testing.assert_allclose(batch.lr[0, 0].numpy(), downscale(batch.hr[0, 0].numpy(), 3.0), atol=1e-6)


def test_meta_scales_are_one_per_batch_in_tenths():
    assert META_SCALES[0] == 1.1 and META_SCALES[-1] == 4.0 and len(META_SCALES) == 30
    for s in META_SCALES:
        n = hr_patch_size(96, s)
        assert abs(round(n / s) * s - n) < 1e-6 and n <= 96


def test_too_small_volumes_are_refused_with_a_message(tiny_volume):
    with pytest.raises(MedSRError, match="no usable training slices"):
        SliceBank([tiny_volume], patch=512)


def test_split_is_by_subject(shared_data):
    train, val = split_paths(shared_data)
    assert not set(train) & set(val)
    for s in VALIDATION_SUBJECTS:
        assert s not in TRAIN_SUBJECTS
    # every file of the shared data set belongs to exactly one subject
    files = [f for fs in SUBJECTS.values() for f in fs]
    assert len(files) == len(set(files))
    for p in train + val:
        assert p.exists(), p
