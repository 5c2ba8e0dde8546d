"""Printing the figures: one aligned line each, flushed so progress shows as it happens."""

from __future__ import annotations

LABEL_WIDTH = 46


def section(title: str) -> None:
    """A blank line and a section title."""
    print(f"\n== {title}", flush=True)


def row(label: str, figure: str) -> None:
    """One figure: ``label`` padded to a common width, then the value with its unit."""
    print(f"  {label:<{LABEL_WIDTH}} {figure}", flush=True)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"
