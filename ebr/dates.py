"""Day arithmetic of the daily run (days are UTC `YYYY-MM-DD` strings)."""

from __future__ import annotations

from datetime import date, datetime, timedelta


def day_before(timestamp: str) -> str:
    """The UTC day before an RFC 3339 timestamp such as a scheduled run's trigger time."""
    if not timestamp:
        raise ValueError("scheduled time is empty: pass --day for a run that is not scheduled")
    try:
        t = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"scheduled time {timestamp!r} is not an RFC 3339 timestamp") from e
    return (t.date() - timedelta(days=1)).isoformat()


def check_day(text: str, what: str = "day") -> str:
    """`text` as a canonical YYYY-MM-DD day, or a ValueError naming `what`."""
    try:
        return date.fromisoformat(text).isoformat()
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: {text!r} is not a YYYY-MM-DD day") from e
