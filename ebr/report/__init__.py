"""The run report a person reads: one self-contained HTML page per day, built from the workspace's records.

`write_html_report(ws, day)` writes `<workspace>/reports/<day>/index.html` (see ebr/report/html.py); the local
runner calls it at the end of every run, failed runs included.
"""

from ebr.report.html import REPORT_HTML, write_html_report

__all__ = ["REPORT_HTML", "write_html_report"]
