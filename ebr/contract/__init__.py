"""The raw search-log contract: schemas, loading with every rule enforced, and dataset checks."""

from ebr.contract.check import DatasetReport, TableReport, check_dataset
from ebr.contract.load import list_days, load, load_table
from ebr.contract.schema import TABLES, TableSpec
from ebr.contract.violations import ContractError, Violation

__all__ = [
    "TABLES",
    "ContractError",
    "DatasetReport",
    "TableReport",
    "TableSpec",
    "Violation",
    "check_dataset",
    "list_days",
    "load",
    "load_table",
]
