"""The EmberFS metadata server: the namespace on LMDB, served over gRPC.

    config.py    MetaConfig (frozen, validated)
    store.py     MetaStore: one LMDB env, a writer thread with group commit, inline reads
    txn.py       MetaTxn: typed access to one transaction (the ops' context)
    idem.py      retry records for non-idempotent requests
    ops/         one module per operation, run inside a MetaTxn
    service.py   the thin Meta servicer: validate, call the op, map errors
    server.py    build_server / serve / run; __main__.py parses flags
"""
