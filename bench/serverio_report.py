"""The serverio benchmark's results: one row per (loop, chunk size, in flight,
strategy) with its samples over rounds, the summary per configuration, and the text
table (`render`) of the JSON document bench/serverio.py writes.

Because the machine is shared and noisy, the table gives, besides medians over rounds
and their spread (max - min) / median, each row's median per-round ratio to
REFERENCE (measured seconds apart, so drift of the whole machine cancels) and how many
rounds it was the fastest of its configuration; server CPU per GiB varies far less
than MiB/s.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from .serverio_client import Sample
from .serverio_wire import MIB, STRATEGIES

__all__ = ["REFERENCE", "Result", "reference_of", "render", "summary"]

REFERENCE = "pread-bytes"  # every row's per-round MiB/s is also given as a ratio to this one's


@dataclass
class Result:
    loop: str
    chunk_size: int
    in_flight: int
    strategy: str
    unavailable: str = ""
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rounds_won: int = 0

    def median(self, name: str) -> float | None:
        values = [getattr(s, name) for s in self.samples]
        return statistics.median(values) if values else None

    def paired_ratio(self, reference: Result | None) -> float | None:
        """Median over rounds of MiB/s / the reference's MiB/s in the same round: what
        shifts the whole machine between rounds cancels out."""
        by_round = {s.round: s.mib_s for s in reference.samples} if reference is not None else {}
        ratios = [s.mib_s / by_round[s.round] for s in self.samples if by_round.get(s.round)]
        return statistics.median(ratios) if ratios else None

    @property
    def spread(self) -> float | None:
        """(max - min) / median of MiB/s over the rounds."""
        values = [s.mib_s for s in self.samples]
        return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "median_mib_s": self.median("mib_s"),
            "median_server_cpu_s_per_gib": self.median("server_cpu_s_per_gib"),
            "median_client_cpu_s_per_gib": self.median("client_cpu_s_per_gib"),
            "spread": self.spread,
        }


def reference_of(results: list[Result], row: Result) -> Result | None:
    return next((r for r in results if (r.loop, r.chunk_size, r.in_flight, r.strategy)
                 == (row.loop, row.chunk_size, row.in_flight, REFERENCE)), None)


def summary(results: list[Result]) -> list[dict[str, Any]]:
    """Per loop and configuration: the fastest (by the paired ratio to the reference when
    it ran, else by median MiB/s) and the lowest-server-CPU strategy."""
    out = []
    for loop, size, depth in dict.fromkeys((r.loop, r.chunk_size, r.in_flight) for r in results):
        ran = [r for r in results if (r.loop, r.chunk_size, r.in_flight) == (loop, size, depth) and r.samples]
        if not ran:
            continue
        reference = reference_of(results, ran[0])
        fastest = max(ran, key=lambda r: (r.paired_ratio(reference) or 0.0, r.median("mib_s") or 0.0))
        cheapest = min(ran, key=lambda r: r.median("server_cpu_s_per_gib") or float("inf"))
        out.append({"loop": loop, "chunk_size": size, "in_flight": depth,
                    "fastest": fastest.strategy, "fastest_mib_s": fastest.median("mib_s"),
                    "fastest_vs_reference": fastest.paired_ratio(reference),
                    "fastest_rounds_won": fastest.rounds_won, "rounds": len(fastest.samples),
                    "cheapest_server_cpu": cheapest.strategy,
                    "cheapest_server_cpu_s_per_gib": cheapest.median("server_cpu_s_per_gib")})
    return out


def render(doc: dict[str, Any]) -> str:
    p = doc["parameters"]
    lines = [
        f"Server read strategies over loopback: medians of {p['rounds_done']} interleaved rounds of "
        f"{p['seconds']:g} s, {p['data_mib']} MiB of chunk files per size, page cache warm.",
        "MiB/s = 2^20 B/s; spread = (max - min) / median of MiB/s; vs pread = median over rounds of "
        f"MiB/s / {p['reference']}'s in the same round;",
        "CPU = core-seconds per GiB moved; won = rounds in which the row was the fastest of its loop's.",
        "",
        f"{'loop':<8} {'chunk':>6} {'in-flight':>9}  {'strategy':<16} {'MiB/s':>7} {'spread':>7} {'vs pread':>8} "
        f"{'server CPU':>10} {'client CPU':>10} {'won':>5}",
    ]
    rows = sorted(doc["rows"], key=lambda r: (r["loop"], r["chunk_size"], r["in_flight"],
                                              STRATEGIES.index(r["strategy"])))
    for r in rows:
        where = f"{r['loop']:<8} {str(r['chunk_size'] // MIB) + ' MiB':>6} {r['in_flight']:>9}  {r['strategy']:<16}"
        if r["unavailable"]:
            lines.append(f"{where} unavailable: {r['unavailable']}")
        elif not r["samples"]:
            lines.append(f"{where} FAILED: {r['errors'][-1] if r['errors'] else 'no samples'}")
        else:
            spread = f"{100 * r['spread']:.0f}%" if r["spread"] is not None else "-"
            paired = f"{r['vs_reference']:.2f}x" if r["vs_reference"] is not None else "-"
            lines.append(f"{where} {r['median_mib_s']:>7.0f} {spread:>7} {paired:>8} "
                         f"{r['median_server_cpu_s_per_gib']:>10.2f} "
                         f"{r['median_client_cpu_s_per_gib']:>10.2f} {r['rounds_won']:>2}/{len(r['samples'])}"
                         + (f"  ({len(r['errors'])} failed)" if r["errors"] else ""))
    lines += ["", "Fastest and cheapest (server CPU) per loop and configuration:"]
    for s in doc["summary"]:
        lines.append(f"  {s['loop']:<8} {s['chunk_size'] // MIB} MiB x{s['in_flight']:<3} fastest "
                     f"{s['fastest']:<16} {s['fastest_mib_s']:>6.0f} MiB/s"
                     + (f" {s['fastest_vs_reference']:.2f}x pread" if s["fastest_vs_reference"] else "")
                     + f" (won {s['fastest_rounds_won']}/"
                     f"{s['rounds']})   lowest server CPU {s['cheapest_server_cpu']:<16} "
                     f"{s['cheapest_server_cpu_s_per_gib']:.2f} s/GiB")
    return "\n".join(lines)
