"""Data quality with Great Expectations: raw tables of a day and the sample tables, with a readable report.

`validate_raw(data_root, day, out_dir, cfg)` and `validate_samples(samples_dir, out_dir, cfg)` run every check,
write `report.md`, `result.json` and Data Docs HTML to `out_dir`, and raise `ValidationFailed` on a failure.
"""

from ebr.validation.config import ValidationConfig
from ebr.validation.outcome import CheckResult, ValidationFailed, ValidationResult
from ebr.validation.raw_validation import validate_raw
from ebr.validation.sample_specs import SAMPLE_TABLES, Range, SampleSpec
from ebr.validation.sample_validation import validate_samples

__all__ = [
    "SAMPLE_TABLES",
    "CheckResult",
    "Range",
    "SampleSpec",
    "ValidationConfig",
    "ValidationFailed",
    "ValidationResult",
    "validate_raw",
    "validate_samples",
]
