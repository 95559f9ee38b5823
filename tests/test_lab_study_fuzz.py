"""Hostile study files: whatever the fields hold (wrong types, huge or non-finite numbers, deep
nesting, pathological placeholders), loading a study either succeeds or raises one one-line
ConfigError naming the source; it never raises anything else.

``LRLAB_FUZZ_EXAMPLES=10000 pytest tests/test_lab_study_fuzz.py`` runs a longer campaign.
"""

from __future__ import annotations

import math

from helpers import fuzz_examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrlab.errors import ConfigError, LrlabError
from lrlab.lab.study import parse_study

EXAMPLES = fuzz_examples(300)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["${total_steps}", "${" + "1+" * 400 + "1}", "${9" + "9" * 400 + "}", "${x}"]),
    st.sampled_from(["digits", "mlp", "step", "epoch", "sgd", "baseline", "min", "a:b", ".."]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def deep(depth: int):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


FIELDS = ["name", "task", "model", "epochs", "batch_size", "lr_interval", "seeds", "optimizer"]
FIELDS += ["baseline", "objective", "mode", "target", "target_acc", "time_limit", "settings"]
FIELDS += ["trial", "description", "data_dir", "bogus"]

BASE = {
    "task": "digits",
    "model": "mlp",
    "epochs": 1,
    "seeds": 1,
    "schedules": {"a": {"type": "cosine", "lr": 0.1, "total": "${total_steps}"}},
}


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    changes=st.dictionaries(st.sampled_from(FIELDS), values, max_size=3),
    schedule=st.dictionaries(
        st.sampled_from(["type", "lr", "total", "milestones", "optimizer", "lr_interval", "k"]),
        values,
        max_size=3,
    ),
    nesting=st.sampled_from([0, 0, 0, 70, 5000]),
)
def test_any_study_loads_or_fails_in_one_line(changes, schedule, nesting):
    data = {**BASE, **changes}
    data["schedules"] = {"a": {**BASE["schedules"]["a"], **schedule}}
    if nesting:
        data["settings"] = {"deep": deep(nesting)}
    try:
        study = parse_study(data, source="fuzz.toml")
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("fuzz.toml: ") and "\n" not in message
        return
    except LrlabError as exc:  # e.g. user code named by 'trial' that cannot be found
        assert "\n" not in str(exc)
        return
    for cell in study.cells:
        assert cell.spec.epochs >= 1 and len(cell.key) == 16
    assert all(math.isfinite(float(s)) for s in study.seeds)
