"""OpenPAYGO Metrics on the meter: usage kept, reported, signed, and tokens taken from answers.

sign        SipHash-2-4 signatures of requests and answers, as the reference writes them
dataformat  the data format and the condensed (positional) form
usage       energy and hours of use integrated into history rows
state       what the reporter persists; record: its two-slot non-volatile record
reporter    the sans-I/O client: requests out, answers in
"""

from __future__ import annotations

from meter_sim.metrics.dataformat import DataFormat
from meter_sim.metrics.reporter import (
    DEFAULT_FORMAT,
    Answered,
    MetricsReporter,
    ReporterConfig,
    Request,
)

__all__ = [
    "DEFAULT_FORMAT",
    "Answered",
    "DataFormat",
    "MetricsReporter",
    "ReporterConfig",
    "Request",
]
