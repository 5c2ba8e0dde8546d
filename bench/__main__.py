"""``python -m bench [--out DIR] [--only S,...]``: run the benchmarks, record every figure.

With ``--out DIR`` (``make bench`` passes ``docs``) the run writes ``DIR/benchmarks.md``, and
``DIR/benchmarks/`` with ``figures.json`` (every figure, goal, comparison and raw series) and
the PNG plots. Sections: see :data:`SECTIONS`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from . import cluster, record, sections, sections_production
from .machine import header, machine
from .record import Results

SECTIONS: dict[str, Callable[[Results], None]] = {
    "peers": sections.peers,
    "backends": sections.backends,
    "propagation": sections.store_propagation,
    "e2e": sections.kubernetes,
    "cluster": cluster.section,
    "scale": sections.scale,
    "http": sections.http,
    "production": sections_production.section,
}


def write(results: Results, out: Path, merge: bool = False) -> Path:
    """figures.json, the profile of the worst miss, the plots, then the report.

    With ``merge``, the sections of this run replace theirs in the existing figures.json; the
    worst miss is then the worst of the merged report."""
    from . import markdown, plots

    data_dir = out / "benchmarks"
    data_dir.mkdir(parents=True, exist_ok=True)
    data = results.to_json()
    if merge:
        data = record.merge(json.loads((data_dir / "figures.json").read_text()), data)
    (data_dir / "figures.json").write_text(json.dumps(data, indent=1) + "\n")
    sections.profile_worst_miss(Results.from_json(data), data_dir)
    drawn = plots.render_all(data, data_dir)
    report = out / "benchmarks.md"
    profile = data_dir / "profile.md"
    text = markdown.render(
        data,
        {name: str(path.relative_to(out)) for name, path in drawn.items()},
        profile.read_text() if profile.exists() else None,
    )
    report.write_text(text)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--out", type=Path, help="write DIR/benchmarks.md and DIR/benchmarks/")
    parser.add_argument(
        "--only", help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --out and --only: replace just these sections in the existing report",
    )
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    if args.out is not None and set(chosen) != set(SECTIONS) and not args.merge:
        parser.error("--out needs every section, or --merge into an existing report")
    started = time.perf_counter()
    results = Results(machine())
    print("\n".join(header(results.machine)), flush=True)
    for name in chosen:
        results.begin(name)
        SECTIONS[name](results)
        if args.out is not None:  # a crash later must not lose what was measured
            checkpoint = args.out / "benchmarks" / "figures.partial.json"
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            checkpoint.write_text(json.dumps(results.to_json(), indent=1) + "\n")
    if args.out is not None:
        print(f"\nreport: {write(results, args.out, args.merge)}", flush=True)
        (args.out / "benchmarks" / "figures.partial.json").unlink(missing_ok=True)
    misses = results.misses()
    print(f"\n{len(misses)} goal(s) missed; total bench time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
