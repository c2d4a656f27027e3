"""Checkpoint reading (config.py, checkpoint.py), weight mapping (encoder_spec.py) and atomic writing
(convert.py, with output.py saying where it may write), kept apart as in CTranslate2."""

from .convert import QUANTIZATIONS, convert_folder
from .output import check_output

__all__ = ["QUANTIZATIONS", "check_output", "convert_folder"]
