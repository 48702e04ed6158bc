"""Volume I/O: NIfTI and DICOM in, NIfTI and derived DICOM series out.

Every volume is returned in closest-canonical RAS+ (see ``engine.volume.Volume``). Loader extras in
``Volume.metadata``: ``format`` ("nifti"/"dicom"), ``source_orientation`` (axis codes of the file's
own voxel order, used when saving), ``nonfinite_voxels`` (NaN/Inf replaced by the finite minimum),
``warnings`` (decisions a user should see); for DICOM also ``series`` (every ``SeriesInfo`` found),
``series_uid``, ``dicom_reference`` (header of the first slice, no pixels), ``dicom_modality`` and
``skipped_files`` (non-DICOM or non-image files passed over).
"""

from engine.io.dicom_scan import SeriesInfo, list_dicom_series
from engine.io.load import load_volume
from engine.io.save import save_volume

__all__ = ["SeriesInfo", "list_dicom_series", "load_volume", "save_volume"]
