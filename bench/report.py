"""The run's results as a text table, a JSON document and a PNG bar chart.

Ratios: each EmberFS figure divided by the baseline of each role measured in the same
run for the same workload and depth ("vs local": page cache, local disk or LMDB; "vs
wire": raw socket or gRPC health; "vs nginx": nginx + aiohttp). Above 1.00x EmberFS
was faster. A baseline that could not run shows why instead of a figure.

The data-loader rows (one cold, shuffled epoch each; dataloader.py) also get a table of
their own, in samples/s beside MiB/s (`loader_summary`, the same records in the JSON's
"loader"); their "vs local" is against local files read in random order, their "vs
nginx" against nginx read block-shuffled.

Then the goals of issues 8 and 17 (`goals`, the JSON's "goals"), each taken by the best
EmberFS row of its workload (any chunk size, transport, event loop and client call; the
line names it) against one baseline of the same run:

    seq read          >= 1.0x nginx + aiohttp, and >= 0.5x the raw socket
    rand read 64 KiB  with 32 in flight, >= 1.0x nginx + aiohttp
    loader            per sample-size range, samples/s of one epoch against local files read
                      in random order: block-shuffled >= 0.8x, random order (batched reads)
                      >= 0.4x; block-shuffled against nginx block-shuffled ("info")
    seq write         MiB/s and its ratio to the same system's seq read (no target: "info")

Every line repeats the CPU seconds per GiB (client + servers) of both sides. PASS or
MISS is the ratio against the target; "n/a" says which side was not measured.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .epoch import BLOCK, RANDOM
from .measure import EMBERFS, LOCAL, MIBS, PEER, WIRE, Row

__all__ = ["RATIO_ROLES", "goals", "loader_summary", "ratios", "render_goals", "render_loader_table",
           "render_table", "write_json", "write_plot"]

_LOADER = "loader "  # the data-loader workloads' prefix (bench/dataloader.py)
_SEQ_READ, _SEQ_WRITE = "seq read", "seq write"  # bench/workloads.py's names
_GOAL_RANDOM = ("rand read 64 KiB", 32)  # (workload, in flight) of the random-read goal
_LOADER_GOALS = ((BLOCK, 0.8), (RANDOM, 0.4))  # (order, target) against local files in random order

RATIO_ROLES = ((LOCAL, "vs local"), (WIRE, "vs wire"), (PEER, "vs nginx"))


def _baseline(rows: Sequence[Row], row: Row, role: str) -> Row | None:
    """The baseline of a role for a row: same workload and depth; for the data loader,
    local files are the ones read in random order (what the loader goals compare with)."""
    loader_local = role == LOCAL and row.workload.startswith(_LOADER)
    return next((b for b in rows if b.role == role and b.workload == row.workload
                 and b.in_flight == row.in_flight and b.value and (not loader_local or b.api == RANDOM)), None)


def ratios(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """One record per EmberFS figure: its ratio to each baseline role (None if none ran)."""
    out = []
    for row in rows:
        if row.role != EMBERFS or row.value is None:
            continue
        record: dict[str, Any] = {"workload": row.workload, "in_flight": row.in_flight, "system": row.system}
        for role, _ in RATIO_ROLES:
            base = _baseline(rows, row, role)
            record[f"vs_{role}"] = row.value / base.value if base is not None and base.value else None
            record[f"{role}_system"] = base.system if base is not None else None
        out.append(record)
    return out


def _fmt_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.3f}x" if value >= 0.001 else f"{value:.1e}x"


def _system_width(rows: Sequence[Row]) -> int:
    return max([30, *(len(r.system) + 2 for r in rows)])


def _fmt_cpu(cpu: tuple[float, float | None] | None) -> str:
    return "-" if cpu is None else f"{cpu[0]:.2f}+{'-' if cpu[1] is None else f'{cpu[1]:.2f}'}"


def render_table(rows: Sequence[Row], notes: Sequence[str] = ()) -> str:
    by_row = {(r["workload"], r["in_flight"], r["system"]): r for r in ratios(rows)}
    width = _system_width(rows)
    header = (f"{'workload':<20}{'in flight':>9}  {'system':<{width}}{'figure':>10} {'unit':<6}{'p50 ms':>8}"
              f"{'CPU s/GiB cli+srv':>19}" + "".join(f"{label:>10}" for _, label in RATIO_ROLES))
    lines = [header, "-" * len(header)]
    last_group = None
    for row in rows:
        group = (row.workload, row.in_flight)
        label = (row.workload, str(row.in_flight) if row.in_flight else "-") if group != last_group else ("", "")
        last_group = group
        start = f"{label[0]:<20}{label[1]:>9}  {row.system:<{width}}"
        if row.value is None:
            lines.append(f"{start}{'unavailable: ' + (row.unavailable or 'no figure')}")
            continue
        cpu_text = _fmt_cpu(row.cpu_s_per_gib)
        p50 = "-" if row.p50_ms is None or row.in_flight == 0 else f"{row.p50_ms:.2f}"
        figure = f"{row.value:>10.1f}" if row.unit == MIBS else f"{row.value:>10.0f}"
        ratio_text = "".join(
            f"{_fmt_ratio(by_row.get((row.workload, row.in_flight, row.system), {}).get(f'vs_{role}')):>10}"
            if row.role == EMBERFS else f"{'':>10}" for role, _ in RATIO_ROLES
        )
        lines.append(f"{start}{figure} {row.unit:<6}{p50:>8}{cpu_text:>19}{ratio_text}")
    lines.append("")
    lines.append("vs local: page cache / local disk / in-process LMDB / local files in random order; vs wire: "
                 "raw asyncio socket / gRPC health call; vs nginx: nginx Range GETs (aiohttp; the loader's "
                 "http.client). >1.00x: EmberFS faster.")
    lines += list(notes)
    loader = render_loader_table(rows)
    if loader:
        lines += ["", loader]
    return "\n".join(lines)


def loader_summary(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """One record per data-loader row: samples/s and MiB/s of its epoch, and EmberFS's
    ratios to local files (random order) and to nginx (block-shuffled)."""
    out = []
    for row in rows:
        if not row.workload.startswith(_LOADER):
            continue
        ratio = dict.fromkeys(("vs_local", "vs_peer"))
        for role, key in ((LOCAL, "vs_local"), (PEER, "vs_peer")):
            base = _baseline(rows, row, role) if row.role == EMBERFS and row.value else None
            if base is not None and base.value and row.value:
                ratio[key] = row.value / base.value
        out.append({
            "sample_size": row.workload[len(_LOADER):], "system": row.system, "order": row.api,
            "workers": row.in_flight, "samples": row.ops, "seconds": row.seconds if row.value is not None else None,
            "samples_per_s": row.ops / row.seconds if row.value is not None else None,
            "mib_per_s": row.value, **ratio, "first_batch_s": _first_batch(row.detail),
            "unavailable": row.unavailable, "detail": row.detail.split("; ")[0],
        })
    return out


def _first_batch(detail: str) -> float | None:
    """The seconds to the first batch that dataloader.py puts at the end of a row's detail."""
    head, sep, tail = detail.rpartition("; first batch after ")
    try:
        return float(tail.removesuffix(" s")) if sep else None
    except ValueError:
        return None


def render_loader_table(rows: Sequence[Row]) -> str:
    records = loader_summary(rows)
    if not records:
        return ""
    width = _system_width([r for r in rows if r.workload.startswith(_LOADER)])
    header = (f"{'sample size':<13}{'system':<{width}}{'1st batch':>10}{'seconds':>9}{'samples/s':>11}{'MiB/s':>9}"
              f"{'vs local':>10}{'vs nginx':>10}")
    lines = ["data loader: one shuffled epoch per row, from a cold page cache, worker start included", header,
             "-" * len(header)]
    last = None
    for r in records:
        size = r["sample_size"] if r["sample_size"] != last else ""
        if size:
            detail = next((x["detail"] for x in records if x["sample_size"] == size and x["detail"]), "")
            lines.append(f"{size}: {detail}" if detail else size)
        last = r["sample_size"]
        if r["mib_per_s"] is None:
            lines.append(f"{'':<13}{r['system']:<{width}}unavailable: {r['unavailable'] or 'no figure'}")
            continue
        ratios_text = "".join(f"{_fmt_ratio(r[k]) if r[k] is not None else '':>10}" for k in ("vs_local", "vs_peer"))
        first = "" if r["first_batch_s"] is None else f"{r['first_batch_s']:.2f}"
        lines.append(f"{'':<13}{r['system']:<{width}}{first:>10}{r['seconds']:>9.2f}{r['samples_per_s']:>11.0f}"
                     f"{r['mib_per_s']:>9.1f}{ratios_text}")
    return "\n".join(lines)


def _best(rows: Sequence[Row], workload: str, in_flight: int | None = None, api: str | None = None) -> Row | None:
    """The fastest measured EmberFS row of a workload (at a depth, with a client call, unless None)."""
    mine = [r for r in rows if r.role == EMBERFS and r.workload == workload and r.value
            and (in_flight is None or r.in_flight == in_flight) and (api is None or r.api == api)]
    return max(mine, key=lambda r: r.value or 0.0, default=None)


def _figure(row: Row) -> tuple[float, str]:
    """A goal's figure: samples/s for the loader, the row's own otherwise."""
    if row.workload.startswith(_LOADER):
        return row.ops / row.seconds, "samples/s"
    return row.value or 0.0, row.unit


def _goal(name: str, workload: str, mine: Row | None, base: Row | None, target: float | None,
          base_name: str) -> dict[str, Any]:
    """One goal record: mine / base against target (None: report the ratio, no verdict)."""
    record: dict[str, Any] = {
        "goal": name, "workload": workload, "target": target, "ratio": None, "verdict": "n/a",
        "system": None, "value": None, "unit": None, "cpu_s_per_gib": None,
        "baseline": base_name, "baseline_value": None, "baseline_cpu_s_per_gib": None, "why": "",
    }
    if mine is not None:
        value, unit = _figure(mine)
        record |= {"system": mine.system, "value": value, "unit": unit, "cpu_s_per_gib": mine.cpu_s_per_gib}
    if base is not None:
        base_value, _ = _figure(base)
        record |= {"baseline": base.system, "baseline_value": base_value,
                   "baseline_cpu_s_per_gib": base.cpu_s_per_gib}
    if mine is None or base is None:
        record["why"] = f"no {'EmberFS' if mine is None else base_name} figure for {workload}"
        return record
    record["ratio"] = record["value"] / record["baseline_value"]
    record["verdict"] = "info" if target is None else "PASS" if record["ratio"] >= target else "MISS"
    return record


def goals(rows: Sequence[Row], *, nodes: int, replicas: int) -> list[dict[str, Any]]:
    """The goals of issues 8 and 17, measured: see the module docstring."""
    setup = f"{nodes} nodes, {replicas} replicas"
    seq = _best(rows, _SEQ_READ, 0)
    out = []
    for role, target in ((PEER, 1.0), (WIRE, 0.5)):
        base = _baseline(rows, seq, role) if seq is not None else None
        name = "nginx + aiohttp" if role == PEER else "raw socket"
        out.append(_goal(f"seq read ({setup}) >= {target:.1f}x {name}", _SEQ_READ, seq, base, target, name))
    workload, depth = _GOAL_RANDOM
    rand = _best(rows, workload, depth)
    out.append(_goal(f"{workload} x{depth} >= 1.0x nginx + aiohttp", f"{workload} x{depth}", rand,
                     _baseline(rows, rand, PEER) if rand is not None else None, 1.0, "nginx + aiohttp"))
    for loader in dict.fromkeys(r.workload for r in rows if r.workload.startswith(_LOADER)):
        local = f"local files, {RANDOM}"
        for order, target in _LOADER_GOALS:
            mine = _best(rows, loader, api=order)
            out.append(_goal(f"{loader} {order} >= {target:.1f}x {local}", loader, mine,
                             _baseline(rows, mine, LOCAL) if mine is not None else None, target, local))
        mine = _best(rows, loader, api=BLOCK)
        out.append(_goal(f"{loader} {BLOCK} / nginx {BLOCK}", loader, mine,
                         _baseline(rows, mine, PEER) if mine is not None else None, None, f"nginx, {BLOCK}"))
    write = _best(rows, _SEQ_WRITE, 0)
    read = next((r for r in rows if write is not None and r.workload == _SEQ_READ and r.system == write.system
                 and r.value), None)
    out.append(_goal(f"seq write ({replicas} replicas) / its seq read", _SEQ_WRITE, write, read, None,
                     "its seq read"))
    out[-1]["baseline"] = "its seq read"  # the same system: its name would only repeat
    return out


def render_goals(records: Sequence[dict[str, Any]]) -> str:
    """The goals block: verdict, goal, ratio, then both figures with CPU s/GiB (client+servers)."""
    lines = ["goals of issues 8 and 17 (best EmberFS row per goal; CPU s/GiB client+servers in brackets)"]
    width = max(len(r["goal"]) for r in records) + 2 if records else 0
    for r in records:
        start = f"  {r['verdict']:<5} {r['goal']:<{width}}"
        if r["ratio"] is None:
            lines.append(f"{start}{'-':>7}  {r['why']}")
            continue
        lines.append(
            f"{start}{_fmt_ratio(r['ratio']):>7}  {r['system']} {r['value']:.1f} {r['unit']} "
            f"[{_fmt_cpu(r['cpu_s_per_gib'])}] vs {r['baseline']} {r['baseline_value']:.1f} {r['unit']} "
            f"[{_fmt_cpu(r['baseline_cpu_s_per_gib'])}]")
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def write_plot(path: Path, rows: Sequence[Row], title: str) -> str | None:
    """Grouped bars per workload (data MiB/s, log scale; metadata ops/s). None, or why not drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed (pip install 'emberfs[bench]')"
    measured = [r for r in rows if r.value]
    panels = [(MIBS, [r for r in measured if r.unit == MIBS]), ("ops/s", [r for r in measured if r.unit != MIBS])]
    panels = [(unit, rs) for unit, rs in panels if rs]
    if not panels:
        return "nothing was measured"
    systems = list(dict.fromkeys(r.system for r in measured))
    colors = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(systems)}
    fig, axes = plt.subplots(len(panels), 1, figsize=(14, 5 * len(panels)), squeeze=False)
    for ax, (unit, rs) in zip(axes[:, 0], panels, strict=True):
        groups = list(dict.fromkeys((r.workload, r.in_flight) for r in rs))
        present = [s for s in systems if any(r.system == s for r in rs)]
        width = 0.8 / len(present)
        for k, system in enumerate(present):
            xs, ys = [], []
            for g, (workload, depth) in enumerate(groups):
                row = next((r for r in rs if r.system == system and (r.workload, r.in_flight) == (workload, depth)),
                           None)
                if row is not None:
                    xs.append(g + (k - (len(present) - 1) / 2) * width)
                    ys.append(row.value)
            ax.bar(xs, ys, width, label=system, color=colors[system])
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{w}\nx{d}" if d else w for w, d in groups], fontsize=8)
        ax.set_ylabel(unit)
        ax.set_yscale("log")  # 4 KiB reads and page-cache copies differ by 10^3 and more
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, ncol=min(len(present), 4))
    axes[0, 0].set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None
