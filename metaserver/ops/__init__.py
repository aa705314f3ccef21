"""Metadata operations, one per module, each run inside a store transaction.

Every operation is a function `op(tx: MetaTxn, caller: Caller, ...) -> XxxResponse`
of plain request values (paths already split and validated by the service). It
reads and writes only through `tx`, raises only `emberfs.common.errors`, and
leaves durability, retries and batching to the store that runs it.
"""
