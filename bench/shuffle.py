"""How well a block-shuffled epoch shuffles: `python -m emberfs.bench.shuffle [--gib 1] [--batch 64]`.

Pure (no cluster, no I/O): a dataset of uniformly 4-28 KiB samples in 1 MiB blocks (the
sizes and order `IterableRecordDataset` uses), one epoch's order (`client/_epoch.py`) for
each window of W blocks, against no shuffle and a full random permutation (`EpochSampler`).
Per row:

    rank corr.   Spearman's rho between a sample's position in the epoch and in the dataset
                 (0: no trace of the file order; 1: file order)
    blocks/batch distinct 1 MiB blocks among the samples of one batch (batch samples at
                 random from the whole dataset: about the batch size)
    same block   share of consecutive samples that come from the same block
    local rho    Spearman's rho within each window-sized run of the epoch, averaged: whether
                 the order inside a window still follows the file (it should be about 0)
"""

from __future__ import annotations

import argparse
import random
import sys
from array import array
from collections.abc import Sequence

from emberfs.client._epoch import EpochOrder, block_table
from emberfs.client._sampler import Permutation


def _spearman(positions: Sequence[int]) -> float:
    """rho of (i, positions[i]) where positions is a permutation of its own ranks' values."""
    n = len(positions)
    if n < 2:
        return 1.0
    ranks = {v: r for r, v in enumerate(sorted(positions))}
    d2 = sum((i - ranks[v]) ** 2 for i, v in enumerate(positions))
    return 1 - 6 * d2 / (n * (n * n - 1))


def measure(order: Sequence[int], block_of: Sequence[int], batch: int, window: int) -> dict[str, float]:
    n = len(order)
    batches = [order[i:i + batch] for i in range(0, n - batch + 1, batch)]
    per_batch = sum(len({block_of[s] for s in b}) for b in batches) / max(len(batches), 1)
    same = sum(1 for a, b in zip(order, order[1:], strict=False) if block_of[a] == block_of[b]) / max(n - 1, 1)
    runs = [order[i:i + window] for i in range(0, n - window + 1, window)] or [list(order)]
    local = sum(_spearman(r) for r in runs) / len(runs)
    return {"rank corr.": _spearman(order), "blocks/batch": per_batch, "same block": same, "local rho": local}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emberfs.bench.shuffle", description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="dataset size (default 1 GiB)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--windows", default="1,4,16,64", help="window sizes in blocks")
    parser.add_argument("--block-mib", type=int, default=1, help="block size (default 1 MiB; 4 is the "
                        "datasets' default with the default cache_bytes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    offsets, total = array("Q", [32]), 0
    while total < args.gib * (1 << 30):
        size = rng.randint(4 << 10, 28 << 10)
        offsets.append(offsets[-1] + size)
        total += size
    block = args.block_mib << 20
    if block < 1:
        parser.error("--block-mib must be at least 1")
    table = block_table([offsets], block)
    n = table.samples
    block_of = array("I", bytes(4 * n))
    for b in range(table.count):
        for s in range(table.firsts[b], table.firsts[b + 1]):
            block_of[s] = b
    per_block = n / table.count
    print(f"{n} samples of 4-28 KiB ({total / (1 << 30):.2f} GiB) in {table.count} blocks of {args.block_mib} MiB "
          f"({per_block:.0f} samples per block), batches of {args.batch}", file=sys.stderr)
    rows: list[tuple[str, dict[str, float]]] = []
    rows.append(("no shuffle", measure(list(range(n)), block_of, args.batch, round(per_block * 64))))
    for w in (int(x) for x in args.windows.split(",")):
        window = max(1, round(per_block * w))
        order = EpochOrder(table, args.seed, 0, window)
        ids = [s for piece in order.pieces([(0, n)]) for s, _ in order.samples_of(*piece)]
        rows.append((f"block-shuffled, W={w}", measure(ids, block_of, args.batch, window)))
    perm = Permutation(n, args.seed + 1)
    rows.append(("full random", measure([perm[i] for i in range(n)], block_of, args.batch, round(per_block * 64))))
    keys = list(rows[0][1])
    print(f"{'order':<24}" + "".join(f"{k:>14}" for k in keys))
    for name, figures in rows:
        print(f"{name:<24}" + "".join(f"{figures[k]:>14.3f}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
