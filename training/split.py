"""Train/validation split of ../shared/data by subject (files of one person never straddle the split).

Subjects follow the data MANIFEST, including its note that the ``rorden_chris_*`` files and both
Rorden DICOM series come from one volunteer. Validation holds three subjects of different anatomy
(brain, cervical spine, abdomen); CT stays in training because the set has only one CT subject.
"""

from __future__ import annotations

from pathlib import Path

SUBJECTS: dict[str, list[str]] = {
    "rorden_lab": [
        "brain_mri/rorden_chris_t1.nii.gz",
        "brain_mri/rorden_chris_PD.nii.gz",
        "dicom/rorden_decubitus_HFS_t1_fl2d_sag",
        "dicom/rorden_trio_b17_t1_MPRAGE",
    ],
    "utah_seg3d": ["brain_mri/utah_seg3d_MR.nii.gz"],
    "indiana_xa30": ["dicom/indiana_xa30_T1w_enhanced"],
    "totalseg_ct": ["ct/totalseg_example_ct_abdomen_pelvis.nii.gz", "dicom/totalseg_ct_body_jpeg2000"],
    "monai_prostate": ["body_mri/monai_test_prostate_t2_tse_tra.nii.gz"],
    "vtk_knee": ["msk_spine/vtkdata_knee_sag_3D_GE_1slice.dcm"],
    "nema_shoulder": ["msk_spine/nema_MR2_shoulder_T1SE_1slice.dcm"],
    "cstar_stroke": [
        "brain_mri/cstar_stroke_T1.nii.gz",
        "brain_mri/cstar_stroke_T2.nii.gz",
        "brain_mri/cstar_stroke_FLAIR.nii.gz",
    ],
    "sct_errsm30": [
        "msk_spine/sct_t2s_axial_cspine.nii.gz",
        "msk_spine/sct_t1w_cspine_crop.nii.gz",
        "msk_spine/sct_t2w_cspine_crop.nii.gz",
    ],
    "totalseg_mr": ["body_mri/totalseg_example_mr_sm_abdomen.nii.gz"],
}

VALIDATION_SUBJECTS = ("cstar_stroke", "sct_errsm30", "totalseg_mr")
TRAIN_SUBJECTS = tuple(s for s in SUBJECTS if s not in VALIDATION_SUBJECTS)


def split_paths(root: Path) -> tuple[list[Path], list[Path]]:
    """(train, validation) paths under the shared data folder ``root``."""
    train = [root / p for s in TRAIN_SUBJECTS for p in SUBJECTS[s]]
    val = [root / p for s in VALIDATION_SUBJECTS for p in SUBJECTS[s]]
    return train, val


def subject_of(path: Path) -> str | None:
    text = str(path)
    for subject, files in SUBJECTS.items():
        if any(text.endswith(f) or text.endswith(f + "/") for f in files):
            return subject
    return None


def link_split(root: Path, dest: Path) -> tuple[Path, Path]:
    """Make dest/train and dest/val folders of symlinks (for ../shared/tools/sr_eval.py --root)."""
    train, val = split_paths(root)
    out = []
    for name, paths in (("train", train), ("val", val)):
        folder = dest / name
        folder.mkdir(parents=True, exist_ok=True)
        for p in paths:
            link = folder / p.name
            if not link.exists():
                link.symlink_to(p.resolve(), target_is_directory=p.is_dir())
        out.append(folder)
    return out[0], out[1]


if __name__ == "__main__":
    import argparse

    repo = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description="Link the subject-wise train/validation split into folders.")
    ap.add_argument("--root", type=Path, default=repo.parent / "shared" / "data")
    ap.add_argument("--dest", type=Path, default=repo / "data")
    a = ap.parse_args()
    for folder in link_split(a.root, a.dest):
        print(folder)
