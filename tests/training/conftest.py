import pytest


@pytest.fixture(scope="session")
def tiny_volume(shared_data):
    """A small real MRI (42x76x77, 1 mm isotropic cervical spine)."""
    return shared_data / "msk_spine" / "sct_t1w_cspine_crop.nii.gz"


@pytest.fixture(scope="session")
def tiny_val_volume(shared_data):
    return shared_data / "msk_spine" / "sct_t2w_cspine_crop.nii.gz"
