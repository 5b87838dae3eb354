"""The component that turns a scheduled run's trigger time into the day it evaluates."""

from kfp import dsl

from components.runtime import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def resolve_day(day: str, scheduled_time: str) -> str:
    """`day` when given, else the UTC day before the scheduled time (a 02:00 run evaluates yesterday's logs)."""
    from ebr.dates import day_before

    return day or day_before(scheduled_time)
