"""Side by side with dataknobs-bots: each measure in a fresh interpreter per side (bench.peers).

Ratios are peer / ours for costs (> 1: we are faster or smaller). Goals on our own figures come
from issue 2 (turn growth <= 1.5, one build under 100 concurrent get_or_create of one id).
"""

from __future__ import annotations

from . import peers as p
from .record import Goal, Results

ONE_BUILD = Goal("==", 1, 2)


def peers(r: Results) -> None:
    version = p.available()
    if version is None:
        raise RuntimeError(
            "dataknobs-bots is not installed in this interpreter: run `make bench` (it builds "
            ".venv-bench from bench/requirements.txt)"
        )
    r.machine.setdefault("versions", {})["dataknobs-bots"] = version
    r.section(f"Peers in process: kubebots vs dataknobs-bots {version}")
    r.note(
        "Each measure runs in a fresh interpreter per side, started the same way (same Python, "
        f"PYTHONHASHSEED=0, pinned to CPU {p.PINNED_CPU} when there are 2+ CPUs), echo provider "
        "and in-memory conversations on both sides; logging at WARNING. dataknobs-bots' "
        "BotManager is deprecated upstream in favour of BotRegistry but is the documented "
        "multi-tenant manager with the same get_or_create / chat API as ours."
    )
    res = p.compare()
    ours, theirs = ({k: v[s] for k, v in res.items()} for s in (p.OURS, p.PEER))
    c = r.compare
    c(
        "cached get_or_create(id)",
        p.PEER,
        ours["cached"]["median_us"],
        theirs["cached"]["median_us"],
        "µs",
    )
    c(
        "new bot get_or_create(id, config)",
        p.PEER,
        ours["new"]["median_us"],
        theirs["new"]["median_us"],
        "µs",
    )
    c("chat(), echo, median", p.PEER, ours["chat"]["median_ms"], theirs["chat"]["median_ms"], "ms")
    c("chat(), echo, p99", p.PEER, ours["chat"]["p99_ms"], theirs["chat"]["p99_ms"], "ms")
    for turn in (1, 50, 100, 200):
        key = f"turn_{turn}_ms"
        c(f"chat() latency at turn {turn}", p.PEER, ours["turns"][key], theirs["turns"][key], "ms")
    for n in (1_000, 10_000):
        key = f"rss_{n}"
        c(
            f"RSS per bot, {n:,} bots",
            p.PEER,
            ours[key]["kib_per_bot"],
            theirs[key]["kib_per_bot"],
            "KiB",
        )
    sf_ours, sf_theirs = ours["single_flight"], theirs["single_flight"]
    c(
        "bots built by 100 concurrent get_or_create(one id)",
        p.PEER,
        sf_ours["builds"],
        sf_theirs["builds"],
        "",
    )
    r.add(
        "kubebots: turn-200 / turn-1",
        ours["turns"]["ratio_200_1"],
        "x",
        detail=f"{ours['turns']['window']}; issue 2's goal is judged in the storage section "
        "(10 conversations, the same windows)",
    )
    r.add(
        "dataknobs-bots: turn-200 / turn-1",
        theirs["turns"]["ratio_200_1"],
        "x",
        detail="no goal for the peer; shown for comparison",
    )
    r.add(
        "kubebots: bots built by 100 concurrent get_or_create",
        sf_ours["builds"],
        "",
        ONE_BUILD,
        f"{sf_ours['distinct_bots']} distinct instance(s) returned; {sf_ours['how']}",
    )
    r.add(
        "dataknobs-bots: bots built by 100 concurrent get_or_create",
        sf_theirs["builds"],
        "",
        detail=f"{sf_theirs['distinct_bots']} distinct instances; {sf_theirs['how']}",
    )
    r.series["peer_results"] = res
    turns = r.series.setdefault("turns_ms", {})
    turns[f"kubebots {ours['turns']['version']} (memory)"] = ours["turns"]["per_turn_ms"]
    turns[f"dataknobs-bots {version} (memory)"] = theirs["turns"]["per_turn_ms"]
    r.series["peer_bars"] = {
        "rss": {
            "title": "Memory per cached bot (VmRSS growth / bots)",
            "unit": "KiB per bot",
            "values": {
                f"{n:,} bots": {s: res[f"rss_{n}"][s]["kib_per_bot"] for s in p.SUBJECTS}
                for n in (1_000, 10_000)
            },
        },
        "ratios": {
            "title": "How many times dataknobs-bots' cost is ours (log; > 1: kubebots is ahead)",
            "unit": "dataknobs-bots / kubebots",
            "log": True,
            "values": {
                cmp.measure.replace("get_or_create", "g_o_c").replace(", echo", ""): {
                    "ratio": cmp.ratio
                }
                for cmp in r.comparisons
                if cmp.peer == p.PEER and cmp.ours > 0
            },
        },
    }
