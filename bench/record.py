"""The figures of one bench run: each with its unit, its goal (from the issue that set it), and
the side-by-side comparisons with the peers; written out as JSON for the report and the plots.

A :class:`Figure` is printed as it is recorded (so a long run shows progress) and kept for
``docs/benchmarks/figures.json``; :class:`Comparison` rows hold ours vs a peer with a ratio whose
direction is spelled out; ``series`` holds raw samples (per-turn latencies, propagation samples,
...) that the plots draw and readers can re-plot.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from .report import row, section

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Goal:
    """``value OP target``, set by ``issue`` (a number, or a short source like "issue 7")."""

    op: str
    target: float
    issue: int

    def met(self, value: float) -> bool:
        return _OPS[self.op](value, self.target)

    def text(self, unit: str) -> str:
        unit = {"": "", "x": "x", "%": "%"}.get(unit, f" {unit}")
        return f"{self.op} {self.target:g}{unit} (issue {self.issue})"


def _shortfall(goal: Goal | None, value: float) -> float:
    """How far a MISS is from its goal, relative to the goal (0 when met or goal-less)."""
    if goal is None or goal.met(value) or goal.target == 0:
        return 0.0
    return abs(value - goal.target) / abs(goal.target)


@dataclass
class Figure:
    section: str
    name: str
    value: float
    unit: str
    goal: Goal | None = None
    detail: str = ""

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return ""
        return "PASS" if self.goal.met(self.value) else "MISS"

    def shortfall(self) -> float:
        return _shortfall(self.goal, self.value)


@dataclass
class Comparison:
    """Ours vs a peer on one measure; ``ratio`` > 1 means we are better (see ``better``)."""

    measure: str
    peer: str
    ours: float
    theirs: float
    unit: str
    better: str  # "lower" or "higher"
    goal: Goal | None = None
    section: str = ""

    @property
    def ratio(self) -> float:
        if self.better == "lower":
            return self.theirs / self.ours if self.ours else float("inf")
        return self.ours / self.theirs if self.theirs else float("inf")

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return ""
        return "PASS" if self.goal.met(self.ratio) else "MISS"

    @property
    def name(self) -> str:
        return f"{self.measure} vs {self.peer}"

    def shortfall(self) -> float:
        return _shortfall(self.goal, self.ratio)


def fmt(value: float, unit: str) -> str:
    """A figure with sensible precision for its size."""
    if unit in ("%",):
        return f"{value:.0f}%"
    magnitude = abs(value)
    if float(value).is_integer():
        text = f"{int(value):,}"
    elif magnitude >= 1000:
        text = f"{value:,.0f}"
    elif magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".rstrip()


@dataclass
class Results:
    machine: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    #: per ``python -m bench`` section key: the titles it recorded under and when it ran
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    _section: str = ""
    _key: str = ""

    def begin(self, key: str) -> None:
        """The figures that follow come from section ``key`` of ``python -m bench``."""
        self._key = key
        self.runs[key] = {
            "titles": [],
            "date": datetime.now().astimezone().isoformat("T", "seconds"),
        }

    def section(self, title: str) -> None:
        self._section = title
        if self._key:
            self.runs[self._key]["titles"].append(title)
        section(title)

    def add(
        self, name: str, value: float, unit: str, goal: Goal | None = None, detail: str = ""
    ) -> Figure:
        fig = Figure(self._section, name, float(value), unit, goal, detail)
        self.figures.append(fig)
        shown = fmt(fig.value, unit)
        if goal is not None:
            shown += f"  (goal {goal.text(unit)})  {fig.verdict}"
        row(name, f"{shown}{'; ' + detail if detail else ''}")
        return fig

    def compare(
        self,
        measure: str,
        peer: str,
        ours: float,
        theirs: float,
        unit: str,
        better: str = "lower",
        goal: Goal | None = None,
    ) -> Comparison:
        c = Comparison(measure, peer, float(ours), float(theirs), unit, better, goal, self._section)
        self.comparisons.append(c)
        shown = f"ours {fmt(c.ours, unit)} vs {peer} {fmt(c.theirs, unit)}: {c.ratio:.1f}x"
        if goal is not None:
            shown += f" (goal {goal.text('x')})  {c.verdict}"
        row(measure, shown)
        return c

    def note(self, text: str) -> None:
        """A sentence printed under the section and kept for the report."""
        self.notes.setdefault(self._section, []).append(text)
        print(f"    {text}", flush=True)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Results:
        """A run back from its figures.json (for profiling the misses of a merged report)."""

        def goal(raw: dict[str, Any] | None) -> Goal | None:
            return Goal(raw["op"], raw["target"], raw["issue"]) if raw else None

        figures = [
            Figure(f["section"], f["name"], f["value"], f["unit"], goal(f["goal"]), f["detail"])
            for f in data["figures"]
        ]
        comparisons = [
            Comparison(
                c["measure"],
                c["peer"],
                c["ours"],
                c["theirs"],
                c["unit"],
                c["better"],
                goal(c["goal"]),
                c.get("section", ""),
            )
            for c in data["comparisons"]
        ]
        return cls(
            data["machine"],
            figures,
            comparisons,
            data["series"],
            data["notes"],
            data.get("runs", {}),
        )

    def misses(self) -> list[Figure | Comparison]:
        out: list[Figure | Comparison] = [f for f in self.figures if f.verdict == "MISS"]
        out += [c for c in self.comparisons if c.verdict == "MISS"]
        return out

    def to_json(self) -> dict[str, Any]:
        def figure(f: Figure) -> dict[str, Any]:
            return {**asdict(f), "verdict": f.verdict}

        def comparison(c: Comparison) -> dict[str, Any]:
            return {**asdict(c), "ratio": c.ratio, "verdict": c.verdict}

        return {
            "machine": self.machine,
            "figures": [figure(f) for f in self.figures],
            "comparisons": [comparison(c) for c in self.comparisons],
            "notes": self.notes,
            "series": self.series,
            "runs": self.runs,
        }


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old`` (a figures.json) with the sections ``new`` re-ran replaced by ``new``'s figures.

    For re-running one slow section (``--only e2e --merge``) without the rest: each section
    keeps the date it ran (``runs``), and the report shows it where it differs."""
    replaced = {t for run in new["runs"].values() for t in run["titles"]}
    replaced |= {t for k in new["runs"] for t in old.get("runs", {}).get(k, {}).get("titles", [])}
    series = dict(old["series"])
    for name, value in new["series"].items():
        if isinstance(value, dict) and isinstance(series.get(name), dict):
            series[name] = {**series[name], **value}
        else:
            series[name] = value
    machine = {**old["machine"], **new["machine"], "date": old["machine"]["date"]}
    machine["versions"] = {
        **old["machine"].get("versions", {}),
        **new["machine"].get("versions", {}),
    }
    return {
        "machine": machine,
        "figures": [f for f in old["figures"] if f["section"] not in replaced] + new["figures"],
        "comparisons": [c for c in old["comparisons"] if c.get("section") not in replaced]
        + new["comparisons"],
        "notes": {t: n for t, n in old["notes"].items() if t not in replaced} | new["notes"],
        "series": series,
        "runs": {**old.get("runs", {}), **new["runs"]},
    }
