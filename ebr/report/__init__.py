"""The run report a person reads: one self-contained HTML page per day, built from the workspace's records.

`write_html_report(ws, day)` writes `<workspace>/reports/<day>/index.html` (see ebr/report/html.py); the local
runner calls it at the end of every run, failed runs included.
"""

from ebr.report.html import REPORT_HTML, write_html_report
from ebr.report.metrics import KEY_METRICS, KEY_SYSTEMS, kfp_metrics

__all__ = ["KEY_METRICS", "KEY_SYSTEMS", "REPORT_HTML", "kfp_metrics", "write_html_report"]
