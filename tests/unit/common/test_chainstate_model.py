"""Property test of the chain state machine against a model of the cluster.

Random sequences of failures, restarts, admin actions, writes and sync completions
drive a simulated chain; after every manager step the invariants must hold, above
all that no target serves without every committed write.

The model: a write succeeds only when every target on the published write path is
up (CRAQ waits for the whole chain), and reaches the SERVING targets and a SYNCING
target whose sync finished; a sync copies everything. Storage servers report
OFFLINE when down, UPTODATE when serving or synced, ONLINE otherwise.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from emberfs.common.chainstate import (
    PUBLIC_STATE_ORDER,
    LocalState,
    PublicState,
    new_chain,
    next_chain,
)

S, Y, L = PublicState.SERVING, PublicState.SYNCING, PublicState.LASTSRV

targets_st = st.integers(1, 4)
event_st = st.one_of(
    st.tuples(st.sampled_from(["down", "up", "admin", "sync_done"]), st.integers(0, 3)),
    st.just(("write", 0)),
    st.just(("step", 0)),
)


@settings(max_examples=400, deadline=None)
@given(targets_st, st.lists(event_st, max_size=60))
def test_invariants_hold_for_random_histories(n: int, events: list[tuple[str, int]]) -> None:
    ids = list(range(101, 101 + n))
    chain = new_chain(1, ids)
    up = dict.fromkeys(ids, True)
    admin: set[int] = set()
    synced: set[int] = set()
    have = dict.fromkeys(ids, 0)  # the last write each target holds
    total = 0

    for kind, i in events + [("step", 0)]:
        t = ids[i % n]
        if kind == "down":
            up[t] = False
            synced.discard(t)  # a restart loses the sync in progress
        elif kind == "up":
            up[t] = True
        elif kind == "admin":
            admin ^= {t}
        elif kind == "sync_done":
            serving_up = [s for s in chain.serving if up[s]]
            if chain.state_of(t) == Y and up[t] and serving_up:
                synced.add(t)
                have[t] = have[serving_up[0]]
        elif kind == "write":
            path = chain.write_path
            if path and all(up[p] for p in path):
                total += 1
                for p in path:
                    if chain.state_of(p) == S or p in synced:
                        have[p] = total
        else:
            local = {
                p: LocalState.OFFLINE if not up[p]
                else LocalState.UPTODATE if chain.state_of(p) == S or p in synced
                else LocalState.ONLINE
                for p in ids
            }
            old, chain = chain, next_chain(chain, local, admin)
            _check_step(old, chain, local, admin, have, total)
            synced &= set(chain.with_state(Y))  # out of SYNCING: a later sync starts over


def _check_step(old, new, local, admin, have, total) -> None:
    states = [t.state for t in new.targets]
    assert sorted(t.target_id for t in new.targets) == sorted(t.target_id for t in old.targets)
    assert states.count(Y) <= 1
    ranks = [PUBLIC_STATE_ORDER.index(s) for s in states]
    assert ranks == sorted(ranks), "serving first, then lastsrv, syncing, waiting, offline"
    serving, lastsrv = states.count(S), states.count(L)
    assert (serving >= 1 and lastsrv == 0) or (serving == 0 and lastsrv == 1)
    assert Y not in states or serving >= 1
    changed = new.targets != old.targets
    assert new.chain_version == old.chain_version + changed
    assert next_chain(new, local, admin) == new  # a fixpoint
    for target in new.targets:
        before = old.state_of(target.target_id)
        if target.state == S:
            # Never straight from WAITING/OFFLINE; a sync must finish first.
            assert before == S or (before == Y and local[target.target_id] == LocalState.UPTODATE) \
                or (before == L and not old.serving)
            assert have[target.target_id] == total, "a serving target misses writes"
        if target.state == L:
            assert have[target.target_id] == total, "the lastsrv target misses writes"
        if target.target_id in admin:
            assert target.state not in (S, Y, PublicState.WAITING)
