"""The one set of number formatters: every figure archbench shows goes through these (stdlib only, so
the CLI can import them without the report machinery). ``—`` stands for a missing value."""

from __future__ import annotations

import math

MIB = 2**20
_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def _missing(value: float | None) -> bool:
    return value is None or not math.isfinite(value)


def fmt_ms(value: float | None) -> str:
    """Milliseconds with three significant digits (at least one decimal below 100 ms)."""
    if _missing(value):
        return "—"
    for limit, digits in ((100, 0), (10, 1), (1, 2)):
        if abs(value) >= limit:
            return f"{value:,.{digits}f}"
    return f"{value:.3f}"


def fmt_sig(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, thousands separated (``1,234``, ``12.3``, ``0.0123``)."""
    if _missing(value):
        return "—"
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def fmt_spec(value: float | None, spec: str) -> str:
    """``format(value, spec)`` (``",.1f"``, ``".1%"``, ...), ``—`` for a missing value."""
    return "—" if _missing(value) else format(value, spec)


def round_sig(value: float, digits: int = 6) -> float:
    """``value`` rounded to ``digits`` significant digits (a number, not text: the rows' stored figures)."""
    if not math.isfinite(value) or value == 0:
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def fmt_int(value: float | None) -> str:
    """``1,234,567``."""
    return "—" if _missing(value) else f"{int(value):,}"


def si(value: float, unit: str = "", digits: int = 4) -> str:
    """``32325736704`` -> ``'32.33 G'`` (``digits`` significant digits, an SI prefix, then ``unit``)."""
    for factor, prefix in _SI:
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {prefix}{unit}"
    return f"{value:g} {unit}".rstrip()


def mib(value: int) -> str:
    """Bytes in binary units: ``'213.0 MiB'``, ``'34.5 KiB'``."""
    for factor, unit in ((2**30, "GiB"), (MIB, "MiB"), (2**10, "KiB")):
        if value >= factor:
            return f"{value / factor:,.1f} {unit}"
    return f"{value:,} B"


def fmt_duration(seconds: float | None) -> str:
    """A duration as ``m:ss`` (``h:mm:ss`` from an hour on)."""
    if _missing(seconds):
        return "—"
    total = round(max(seconds, 0.0))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def fmt_scaled(value: float | None, unit: str) -> str:
    """A count with its unit's prefix scaled to the number: ``751 MMACs``, ``4.12 GFLOPs``, ``590 kMACs``."""
    if _missing(value):
        return "—"
    for scale, prefix in _SI[1:]:
        if abs(value) >= scale:
            return f"{fmt_sig(value / scale)} {prefix}{unit}"
    return f"{fmt_sig(value) if value != int(value) else f'{int(value):,}'} {unit}"


def utc_now() -> str:
    """The time now, UTC, to the second: ``2026-12-03T13:52:48+00:00``."""
    import datetime

    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def coverage_percent(coverage: float) -> str:
    """``93.7%``: the coverage rounded down to 0.1% (a label never claims more than the interval has)."""
    return f"{math.floor(coverage * 1000 + 1e-9) / 10:g}%"
