"""Claims on a real Redis against a plain model: one flusher at a time per task, /predict shares only with
/predict, a release gives back only the releaser's own claim, a confirmed task stays done (property test)."""

from __future__ import annotations

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from backend.pipeline.claims import DONE, Claims, claim_key

HOLDERS = ["flush:a", "flush:b", "predict:x", "predict:y"]
OPS = st.lists(
    st.tuples(
        st.sampled_from(["take", "extend", "release", "confirm", "expire"]),
        st.lists(st.integers(1, 4), min_size=1, max_size=4, unique=True),
        st.sampled_from(HOLDERS),
    ),
    max_size=30,
)


@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_claims_follow_the_model(redis_conn, ops):
    redis_conn.delete(*[claim_key(1, "v", t) for t in range(1, 5)])
    claims = Claims(redis_conn, 1, "v", ttl=60)
    owner: dict[int, str] = {}
    for op, tasks, holder in ops:
        if op == "take":
            got = claims.take(tasks, holder)
            for task in tasks:
                current = owner.get(task)
                if current is None:
                    owner[task] = holder
                shared = holder.startswith("predict:") and owner[task].startswith("predict:")
                assert got[task] == (holder if shared else owner[task])
        elif op == "extend":
            assert claims.extend(tasks, holder) == all(owner.get(t) == holder for t in tasks)
        elif op == "release":
            claims.release(tasks, holder)
            for task in tasks:
                if owner.get(task) == holder:
                    del owner[task]
        elif op == "confirm":
            claims.confirm(tasks)
            owner.update({t: DONE for t in tasks})
        else:  # the claim's lifetime ran out
            redis_conn.delete(*[claim_key(1, "v", t) for t in tasks])
            for task in tasks:
                owner.pop(task, None)
        stored = {t: v.decode() for t in range(1, 5) if (v := redis_conn.get(claim_key(1, "v", t)))}
        assert stored == owner
    assert all(0 < redis_conn.pttl(claim_key(1, "v", t)) <= 60_000 for t in owner)
