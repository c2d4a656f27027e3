"""Checkpoint reading, weight mapping and atomic writing: three pieces kept apart (as in CTranslate2)."""

from .convert import QUANTIZATIONS, convert_folder

__all__ = ["QUANTIZATIONS", "convert_folder"]
