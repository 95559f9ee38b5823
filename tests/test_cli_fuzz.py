"""Hostile input through the command line: whatever configs, study files, numbers and options a
user types, ``lrlab lr / plot / compare / find`` exit 0 or 2 with at most one line on stderr and
never a traceback, and every rate ``lrlab lr --json`` prints is finite and non-negative.

The config grammar is the one ``tests/test_schedules_validation.py`` fuzzes ``from_config`` with;
the study grammar is ``tests/test_lab_study_fuzz.py``'s. ``LRLAB_FUZZ_EXAMPLES=10000`` runs a long
campaign (the default keeps the suite fast).
"""

from __future__ import annotations

import json
import math

import pytest
from helpers import fuzz_examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_lab_study_fuzz import BASE, FIELDS, values
from test_schedules_validation import configs

from lrlab.cli import main
from lrlab.schedules.config import _to_toml

EXAMPLES = max(10, fuzz_examples(120) // 3)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
steps = st.one_of(
    st.integers(min_value=-3, max_value=200).map(str),
    st.sampled_from(["0", "1e3", "abc", "", "100000000000", "9" * 400, "nan"]),
)


#: --hyperparam KEY=CONFIG / --momentum CONFIG: configs of the same grammar, keys lrlab knows,
#: refuses (lr) or cannot read, and texts that are no config at all
hyper_keys = st.sampled_from(["momentum", "weight_decay", "dampening", "lr", "", "9x", "a b"])
hyper_texts = st.one_of(
    configs.map(json.dumps),
    st.sampled_from(["", "{", "[]", "no-such.json", "=", '{"type": "constant"}']),
)
hyper_options = st.lists(
    st.one_of(
        st.tuples(st.just("--momentum"), hyper_texts),
        st.tuples(st.just("--hyperparam"), st.builds("{}={}".format, hyper_keys, hyper_texts)),
        st.tuples(st.just("--hyperparam"), hyper_keys),  # no '='
    ),
    max_size=3,
).map(lambda pairs: [word for pair in pairs for word in pair])


def one_line_or_nothing(status: int, err: str) -> None:
    assert status in (0, 2), err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 1, err


@FUZZ
@given(config=configs, steps=steps)
def test_lrlab_lr_prints_finite_rates_or_one_line(capsys, config, steps):
    status = main(["lr", json.dumps(config), "--steps", steps, "--json"])
    out, err = capsys.readouterr()
    one_line_or_nothing(status, err)
    if status == 0:
        rates = json.loads(out)
        assert all(isinstance(r, float) and math.isfinite(r) and r >= 0 for r in rates)


@FUZZ
@given(config=configs, log=st.booleans(), suffix=st.sampled_from(["png", "svg", "pdf", "jpg", ""]))
def test_lrlab_plot_writes_or_says_why_in_one_line(tmp_path_factory, capsys, config, log, suffix):
    out_path = tmp_path_factory.mktemp("plot") / f"lr.{suffix}".rstrip(".")
    args = ["plot", json.dumps(config), "--steps", "40", "-o", str(out_path)]
    status = main([*args, "--log"] if log else args)
    _, err = capsys.readouterr()
    one_line_or_nothing(status, err)
    assert status == 2 or out_path.stat().st_size > 0


@FUZZ
@given(config=configs, options=hyper_options, steps=steps)
def test_lrlab_lr_with_hyperparams_prints_finite_values_or_one_line(capsys, config, options, steps):
    status = main(["lr", json.dumps(config), "--steps", steps, *options, "--json"])
    out, err = capsys.readouterr()
    one_line_or_nothing(status, err)
    if status == 0:
        printed = json.loads(out)
        columns = printed if isinstance(printed, dict) else {"lr": printed}
        assert isinstance(printed, list) == (not options)
        assert len({len(v) for v in columns.values()}) == 1
        for values in columns.values():
            assert all(isinstance(v, float) and math.isfinite(v) and v >= 0 for v in values)


@FUZZ
@given(config=configs, options=hyper_options)
def test_lrlab_plot_with_hyperparams_writes_or_says_why(tmp_path_factory, capsys, config, options):
    out_path = tmp_path_factory.mktemp("plot") / "lr.png"
    status = main(["plot", json.dumps(config), "--steps", "30", *options, "-o", str(out_path)])
    _, err = capsys.readouterr()
    one_line_or_nothing(status, err)
    assert status == 2 or out_path.stat().st_size > 0


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(FIELDS), values, max_size=3))
def test_a_hostile_study_file_is_one_line_for_compare(tmp_path_factory, capsys, changes):
    """``--preview`` loads and checks the whole study (and plots it) but trains nothing."""
    folder = tmp_path_factory.mktemp("study")
    data = {**BASE, **changes}
    try:
        text = _to_toml(data)
    except Exception:  # a value TOML cannot hold (None, a key-less dict): write JSON instead
        text = json.dumps(data, default=str)
    (folder / "s.toml").write_text(text)
    status = main(["compare", str(folder / "s.toml"), "--preview", "-o", str(folder / "p.png")])
    _, err = capsys.readouterr()
    one_line_or_nothing(status, err)


@pytest.mark.parametrize(
    "options",
    [
        ["--task", "nosuchtask"],
        ["--task", "nosuchmodule:load"],
        ["--model", "os:getcwd"],
        ["--start-lr", "-1"],
        ["--start-lr", "1", "--end-lr", "0.1"],
        ["--end-lr", "inf"],
        ["--steps", "0"],
        ["--steps", "9" * 400],
        ["--repeats", "0"],
        ["--optimizer", '{"type": "sgd", "momentum": "a lot"}'],
        ["--optimizer", "[1, 2"],
        ["--device", "tpu"],
        ["--batch-size", "true"],
    ],
)
def test_lrlab_find_bad_options_are_one_line(tmp_path, monkeypatch, capsys, options):
    monkeypatch.chdir(tmp_path)
    status = main(["find", *options, "--no-progress", "--no-plot", "--out", str(tmp_path)])
    _, err = capsys.readouterr()
    assert status == 2
    one_line_or_nothing(status, err)
