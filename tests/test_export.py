"""lrlab.export: optax (JAX) and Keras 3 exports, checked against lrlab's own values.

Accuracy is stated three ways:
* with ``jax_enable_x64`` the optax export equals lrlab to 1e-12 (the very same formula);
* in float32 (the default) the export is as close to lrlab's float64 value as the same formula
  evaluated in float32 by NumPy is (twice that error plus a few float32 ulps of the peak);
* the exports drive real optimizer updates (``optax.sgd``, ``keras.optimizers.SGD``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

if "keras" not in sys.modules:  # Keras picks its backend at import: jax imports fastest here
    os.environ.setdefault("KERAS_BACKEND", "jax" if importlib.util.find_spec("jax") else "torch")

import lrlab
from lrlab.errors import ConfigError
from lrlab.export import as_exportable, to_keras, to_optax
from lrlab.schedules import (
    EXAMPLES,
    Constant,
    Cosine,
    CosineRestarts,
    Cyclic,
    DecayingSequence,
    Exponential,
    Join,
    KDecay,
    MultiStep,
    Polynomial,
    RandomAmplify,
    Step,
    from_config,
    ralr_paper,
)
from lrlab.schedules.base import REGISTRY, NumpyOps

STEPS = 5000
EPS32 = 2.0**-24

SCHEDULES = {
    "constant": Constant(lr=0.1),
    "step": Step(lr=0.1, step_size=300, gamma=0.5),
    "multistep": MultiStep(lr=0.1, milestones=(1000, 3000), gamma=0.1),
    "exponential": Exponential(lr=0.1, gamma=0.999),
    "polynomial": Polynomial(lr=0.1, total=4000, end_lr=0.001, power=2.0),
    "cosine": Cosine(lr=0.1, total=4000, end_lr=1e-4),
    "cosine_restarts": CosineRestarts(lr=0.1, period=100, period_mult=2.0),
    "cosine_restarts_mult1": CosineRestarts(lr=0.1, period=333, end_lr=0.01),
    "cyclic_triangular": Cyclic(base_lr=1e-3, max_lr=6e-3, step_size_up=200),
    "cyclic_triangular2": Cyclic(base_lr=1e-3, max_lr=6e-3, step_size_up=200, mode="triangular2"),
    "cyclic_exp_range": Cyclic(
        base_lr=1e-3,
        max_lr=6e-3,
        step_size_up=200,
        step_size_down=300,
        mode="exp_range",
        gamma=0.9995,
    ),
    "ralr_paper": ralr_paper(50, steps_per_epoch=100, seed=7),
    "ralr_every_step": RandomAmplify(base=Cosine(lr=0.1, total=5000), p=0.5, period=1, seed=3),
    "kdecay_warp": KDecay(base=Cosine(lr=0.1, total=5000), k=2.0),
    "kdecay_additive": KDecay(base=Polynomial(lr=0.1, total=5000), k=1.5, form="additive"),
    "sequence_seq4": DecayingSequence(kind="seq4", lr=0.1, period=100),
    "sequence_seq2": DecayingSequence(kind="seq2", lr=0.1, period=50, length=40),
    "join": Join(schedules=(Constant(lr=0.01), Cosine(lr=0.1, total=3000)), boundaries=(500,)),
    "warmup": Cosine(lr=0.1, total=4000).with_warmup(500),
    "scale": 2.0 * Cyclic(base_lr=1e-3, max_lr=6e-3, step_size_up=200),
    "clamp": Cyclic(base_lr=0.0, max_lr=6e-3, step_size_up=200).clamped(1e-3, 5e-3),
    "cosine_restarts_mult1.8_decay": CosineRestarts(
        lr=0.1, period=30, period_mult=1.8, restart_decay=0.7, max_restarts=4
    ),
    "exponential_slow": Exponential(lr=0.1, gamma=0.99994),
    # the canonical example of every type
    **{f"example_{name}": from_config(config) for name, config in EXAMPLES.items()},
}
POLICY = {"type": "policy", "trigger": "plateau", "factor": 0.5, "lr0": 0.1, "patience": 2}


def test_every_schedule_type_is_covered():
    schedule_types = {name for name, cls in REGISTRY.items() if issubclass(cls, lrlab.Schedule)}
    covered = {s.type_name for s in SCHEDULES.values()}
    for s in SCHEDULES.values():  # nested bases count too
        for attr in ("base",):
            if hasattr(s, attr):
                covered.add(getattr(s, attr).type_name)
    assert schedule_types <= covered, f"add an export case for {sorted(schedule_types - covered)}"


class Float32NumpyOps:
    """The reference arithmetic for "float32 rounding": lrlab's formula in float32 NumPy."""

    pi = np.float32(np.pi)
    floor, exp, log, cos, sqrt = map(staticmethod, (np.floor, np.exp, np.log, np.cos, np.sqrt))
    minimum, maximum, where, clip = map(staticmethod, (np.minimum, np.maximum, np.where, np.clip))

    huge = float(np.finfo(np.float32).max)

    @staticmethod
    def count_le(boundaries, t):
        return np.searchsorted(np.asarray(boundaries, np.float32), t, side="right")

    @staticmethod
    def take(table, index):
        return np.asarray(table, np.float32)[np.asarray(index).astype(np.int64)]

    @staticmethod
    def floor_div(t, n):
        return np.floor_divide(t, np.float32(n))

    @staticmethod
    def power(base, exponent):
        with np.errstate(over="ignore"):
            return np.minimum(np.power(np.float32(base), exponent), np.float32(3.4e38))

    @staticmethod
    def uniform(index, key):
        return NumpyOps.uniform(index, key).astype(np.float32)


def _float32_bound(schedule, ref):
    t32 = np.arange(STEPS, dtype=np.float32)
    r32 = np.broadcast_to(np.asarray(schedule.evaluate(t32, Float32NumpyOps())), t32.shape)
    peak = float(np.max(np.abs(ref)))
    return 2.0 * float(np.max(np.abs(r32 - ref))) + 8 * EPS32 * peak


# -------------------------------------------------------------------------------- optax / JAX


@pytest.fixture(scope="module")
def jax():
    jax = pytest.importorskip(
        "jax", reason="jax is not installed (pip install 'lrlab[integrations]')"
    )
    return jax


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_optax_jit_matches_lrlab_to_float32_rounding(jax, name):
    schedule = SCHEDULES[name]
    ref = schedule.values(STEPS)
    fn = jax.jit(to_optax(schedule))
    got = np.asarray(jax.vmap(fn)(jax.numpy.arange(STEPS)))
    assert got.dtype == np.float32 and got.shape == (STEPS,)
    err = float(np.max(np.abs(got - ref)))
    assert err <= _float32_bound(schedule, ref), (name, err)
    # and on its own, without vmap, as optax calls it (a scalar int32 count)
    for t in (0, 1, 1234, STEPS - 1):
        value = fn(np.int32(t))
        assert value.shape == ()
        assert float(value) == pytest.approx(float(got[t]), rel=1e-6, abs=1e-9)


def test_optax_with_x64_is_the_same_formula(jax):
    with jax.enable_x64(True):
        for name, schedule in SCHEDULES.items():
            got = np.asarray(jax.vmap(jax.jit(to_optax(schedule)))(jax.numpy.arange(STEPS)))
            assert got.dtype == np.float64
            np.testing.assert_allclose(
                got, schedule.values(STEPS), rtol=1e-12, atol=0, err_msg=name
            )


def test_ralr_hash_traces_with_uint32(jax):
    """RALR's integer hash runs on jnp.uint32 under jit: the same draws as lrlab, bit for bit."""
    s = RandomAmplify(base=Constant(lr=1.0), p=0.5, low=1.0, high=3.0, period=1, seed=123)
    got = np.asarray(jax.jit(jax.vmap(to_optax(s)))(jax.numpy.arange(STEPS)))
    ref = s.values(STEPS)
    assert np.array_equal(got == 1.0, ref == 1.0)  # same amplify / keep decisions
    assert np.all(np.abs(got - ref) <= 2 * EPS32 * 3.0)  # factors exact to float32


def test_optax_sgd_update_loop(jax):
    """A real optax update loop: with gradient 1 the parameter falls by exactly lr(k) per step."""
    import optax

    jnp = jax.numpy
    schedule = RandomAmplify(
        base=Cyclic(base_lr=1e-3, max_lr=6e-3, step_size_up=20, mode="triangular2"), p=0.5, seed=1
    )
    tx = optax.sgd(learning_rate=to_optax(schedule))
    params = {"w": jnp.zeros(3)}
    state = tx.init(params)

    @jax.jit
    def update(params, state):
        grads = jax.grad(lambda p: jnp.sum(p["w"]))(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    lrs = []
    for _ in range(300):
        before = params["w"][0]
        params, state = update(params, state)
        lrs.append(float(before - params["w"][0]))
    # each lr is read back as a difference of float32 parameters: exact to an ulp of |w| < 1
    np.testing.assert_allclose(lrs, schedule.values(300), rtol=1e-5, atol=6e-8)
    # the schedule is also what optax reports through inject_hyperparams
    tx2 = optax.inject_hyperparams(optax.sgd)(learning_rate=to_optax(schedule))
    s2 = tx2.init(params)
    for k in range(3):
        _, s2 = tx2.update(jax.tree.map(jnp.ones_like, params), s2, params)
        # the lr of the update just made
        assert float(s2.hyperparams["learning_rate"]) == pytest.approx(schedule(k), rel=1e-6)


def test_optax_accepts_config_dict_and_carries_it(jax):
    config = {"type": "cosine", "lr": 0.1, "total": 1000}
    fn = to_optax(config)
    assert fn.lrlab_config == lrlab.from_config(config).to_config()
    assert float(jax.jit(fn)(500)) == pytest.approx(0.05, rel=1e-6)


# -------------------------------------------------------------------------------- Keras 3


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip(
        "keras", reason="keras is not installed (pip install 'lrlab[integrations]')"
    )


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_keras_matches_lrlab_to_float32_rounding(keras, name):
    schedule = SCHEDULES[name]
    ref = schedule.values(STEPS)
    lr = to_keras(schedule)
    got = np.asarray(keras.ops.convert_to_numpy(lr(keras.ops.arange(STEPS))))
    assert got.dtype == np.float32
    err = float(np.max(np.abs(got - ref)))
    assert err <= _float32_bound(schedule, ref), (name, keras.backend.backend(), err)


def test_keras_config_round_trip(keras):
    schedule = SCHEDULES["ralr_paper"]
    lr = to_keras(schedule)
    config = lr.get_config()
    assert config["config"] == schedule.to_config()
    json.dumps(config)  # plain JSON
    again = type(lr).from_config(config)
    assert again.schedule == schedule
    # through Keras' own serialisation, by registered name (what model.save / optimizer configs use)
    blob = keras.saving.serialize_keras_object(lr)
    back = keras.saving.deserialize_keras_object(json.loads(json.dumps(blob)))
    assert back.schedule == schedule
    # inside an optimizer's config, too
    opt = keras.optimizers.SGD(learning_rate=lr)
    opt_config = json.loads(json.dumps(keras.saving.serialize_keras_object(opt)))
    opt2 = keras.saving.deserialize_keras_object(opt_config)
    lr2 = keras.saving.deserialize_keras_object(opt2.get_config()["learning_rate"])
    assert type(lr2) is type(lr) and lr2.schedule == schedule


def test_keras_optimizer_update_loop(keras):
    """Keras' SGD applies lr(k) at its k-th update (iterations starts at 0, like lrlab's step)."""
    schedule = Cyclic(base_lr=1e-3, max_lr=6e-3, step_size_up=10, mode="triangular2")
    opt = keras.optimizers.SGD(learning_rate=to_keras(schedule))
    var = keras.Variable(np.zeros(3, np.float32))
    lrs = []
    for _ in range(60):
        before = float(keras.ops.convert_to_numpy(var.value)[0])
        opt.apply_gradients([(keras.ops.ones((3,)), var)])
        lrs.append(before - float(keras.ops.convert_to_numpy(var.value)[0]))
    np.testing.assert_allclose(lrs, schedule.values(60), rtol=1e-4, atol=1e-9)


def test_keras_model_fit(keras):
    """model.fit with an exported schedule; the optimizer's current lr is lrlab's at its step."""
    schedule = Cosine(lr=0.05, total=40, end_lr=0.001).with_warmup(5)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=to_keras(schedule)), loss="mse")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations.value))
    assert steps == 24
    current = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert current == pytest.approx(schedule(steps), rel=1e-6)


@pytest.mark.filterwarnings(
    "ignore:__array__ implementation:DeprecationWarning"
)  # keras + numpy 2.4
def test_keras_model_save_and_load(keras, tmp_path):
    """model.save / keras.models.load_model restore the schedule (registered as "lrlab>Schedule")."""
    schedule = Cosine(lr=0.1, total=100)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=to_keras(schedule)), loss="mse")
    model.fit(np.ones((8, 4), "float32"), np.ones((8, 1), "float32"), verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    lr = keras.saving.deserialize_keras_object(loaded.optimizer.get_config()["learning_rate"])
    assert lr.schedule == schedule


def test_keras_torch_backend_in_a_subprocess():
    """The exports under Keras' torch backend too (its own process: Keras fixes its backend at import)."""
    pytest.importorskip("keras")
    code = textwrap.dedent(
        """
        import os, sys, json
        os.environ["KERAS_BACKEND"] = "torch"
        import numpy as np, keras
        from lrlab.export import to_keras
        sys.path.insert(0, sys.argv[1])
        import test_export as t
        worst = {}
        for name, s in t.SCHEDULES.items():
            ref = s.values(t.STEPS)
            got = keras.ops.convert_to_numpy(to_keras(s)(keras.ops.arange(t.STEPS)))
            err = float(np.max(np.abs(got - ref)))
            assert err <= t._float32_bound(s, ref), (name, err)
            worst[name] = err
        print(keras.backend.backend(), json.dumps(len(worst)))
        """
    )
    env = dict(os.environ, KERAS_BACKEND="torch")
    out = subprocess.run(
        [sys.executable, "-c", code, os.path.dirname(__file__)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["torch", str(len(SCHEDULES))]


# -------------------------------------------------------------------------------- policies


def test_policies_are_rejected_with_a_config_error():
    with pytest.raises(ConfigError, match="metric-driven policy .*'policy'.* cannot be exported"):
        to_optax(POLICY)
    with pytest.raises(ConfigError, match="cannot be exported"):
        to_keras(lrlab.from_config(POLICY))
    with pytest.raises(ConfigError, match="must be an lrlab schedule"):
        as_exportable(42)
    with pytest.raises(ConfigError, match="unknown schedule type"):
        to_optax({"type": "cosinus", "lr": 0.1, "total": 10})


@pytest.mark.parametrize("name", ["optax", "keras"])
def test_docs_snippets(name):
    """The optax and Keras snippets of docs/integrations.md run as written."""
    import re
    from pathlib import Path

    pytest.importorskip("optax" if name == "optax" else "keras")
    text = (Path(__file__).parents[1] / "docs" / "integrations.md").read_text()
    code = re.search(rf"<!-- snippet: {name} -->\s*```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, f"docs/integrations.md[{name}]", "exec"), {})
