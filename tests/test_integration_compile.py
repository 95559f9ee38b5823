"""torch.compile: a tensor learning rate + a compiled optimizer step + lrlab.torch.Scheduler.

The learning rate changes at every one of 500 steps (RALR drawing a new factor every step, a CLR
triangle, a plateau policy) and Dynamo compiles nothing after the optimizer's first two steps
(the first creates the momentum / Adam state, the second is the steady-state graph). The default
backend (inductor) is used: its C++ compile of these tiny graphs takes ~15 s the first time on 2
CPU cores, far less once its on-disk cache is warm.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch._dynamo.testing import CompileCounterWithBackend  # noqa: E402
from torch._dynamo.utils import counters  # noqa: E402

from lrlab.schedules import Cosine, Cyclic, RandomAmplify  # noqa: E402
from lrlab.torch import Scheduler  # noqa: E402

STEPS = 500
RALR = RandomAmplify(
    base=Cosine(lr=0.05, total=STEPS, end_lr=0.005), p=0.5, low=1.0, high=3.0, period=1, seed=11
)
CLR = Cyclic(base_lr=0.001, max_lr=0.02, step_size_up=7, step_size_down=9)
PLATEAU = {
    "type": "policy",
    "trigger": "plateau",
    "factor": 0.5,
    "patience": 0,
    "schedule": Cyclic(base_lr=1e-3, max_lr=1e-2, step_size_up=10).to_config(),
}


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def _param_groups(model, lr):
    first, second = list(model[0].parameters()), list(model[2].parameters())
    return [{"params": first, "lr": lr()}, {"params": second, "lr": lr()}]


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 8, generator=g)
    return x, torch.sin(x.sum(dim=1, keepdim=True))


def _train(make_opt, schedules, *, tensor_lr, compiled, metric_every=0, backend="inductor"):
    """Train STEPS steps; return (lrs per step, final params, compile counter or None)."""
    torch._dynamo.reset()
    counters.clear()
    model = _model()
    lr = (lambda: torch.tensor(0.01)) if tensor_lr else (lambda: 0.01)
    opt = make_opt(_param_groups(model, lr), compiled)
    sched = Scheduler(opt, schedules)
    cnt = CompileCounterWithBackend(backend) if compiled else None
    step = torch.compile(opt.step, backend=cnt) if compiled else opt.step
    x, y = _data()
    lrs, frames_after_warmup = [], None
    for i in range(STEPS):
        lrs.append([float(g["lr"]) for g in opt.param_groups])  # the lr this step uses
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        step()
        opt.zero_grad(set_to_none=False)
        sched.step()
        if metric_every and (i + 1) % metric_every == 0:
            sched.step(1.0)  # a metric that never improves: the plateau policy keeps cutting
        if i == 1 and compiled:
            frames_after_warmup = (cnt.frame_count, counters["frames"]["ok"])
    if compiled:
        assert frames_after_warmup == (cnt.frame_count, counters["frames"]["ok"]), (
            f"recompiled after warm-up: {frames_after_warmup} -> "
            f"{(cnt.frame_count, counters['frames']['ok'])}"
        )
    params = [p.detach().clone() for p in model.parameters()]
    return lrs, params, cnt


def _sgd(groups, compiled=True):
    return torch.optim.SGD(groups, momentum=0.9)


def _adam(groups, compiled=True):
    # a tensor lr needs capturable=True when compiled; eager Adam allows that only on accelerators
    return torch.optim.Adam(groups, capturable=compiled)


def test_compiled_sgd_ralr_and_clr_never_recompile():
    lrs, params, cnt = _train(_sgd, [RALR, CLR], tensor_lr=True, compiled=True)
    print(
        f"inductor SGD: frame_count={cnt.frame_count} op_count={cnt.op_count} "
        f"frames={dict(counters['frames'])} unique_graphs={counters['stats']['unique_graphs']}"
    )
    assert cnt.frame_count == 2  # first step (creates momentum buffers) + steady state
    # the learning rate really changed at (almost) every step, in both groups
    ralr, clr = zip(*lrs)
    assert sum(a != b for a, b in zip(ralr, ralr[1:])) == STEPS - 1
    assert sum(a != b for a, b in zip(clr, clr[1:])) == STEPS - 1
    assert ralr == pytest.approx([RALR(t) for t in range(STEPS)], rel=1e-6)
    assert clr == pytest.approx([CLR(t) for t in range(STEPS)], rel=1e-6)
    # and the compiled step used it: the same parameters as eager training with float lrs
    _, eager_params, _ = _train(_sgd, [RALR, CLR], tensor_lr=False, compiled=False)
    for p, q in zip(params, eager_params):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_compiled_adam_capturable_with_a_policy_never_recompiles():
    lrs, params, cnt = _train(_adam, [PLATEAU, CLR], tensor_lr=True, compiled=True, metric_every=50)
    print(
        f"inductor Adam(capturable): frame_count={cnt.frame_count} frames={dict(counters['frames'])}"
    )
    assert cnt.frame_count <= 2
    # a metric at every 50th step that never improves: one cut per observation after the first
    base = Cyclic(**{k: v for k, v in PLATEAU["schedule"].items() if k != "type"})
    assert lrs[-1][0] == pytest.approx(base(STEPS - 1) * 0.5 ** (STEPS // 50 - 2), rel=1e-6)
    _, eager_params, _ = _train(
        _adam, [PLATEAU, CLR], tensor_lr=False, compiled=False, metric_every=50
    )
    for p, q in zip(params, eager_params):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def _float_lr_frames(**config):
    model = _model()
    opt = _sgd(_param_groups(model, lambda: 0.01))
    sched = Scheduler(opt, CLR)
    torch._dynamo.reset()
    cnt = CompileCounterWithBackend("eager")
    with torch._dynamo.config.patch(**config):
        step = torch.compile(opt.step, backend=cnt)
        x, y = _data()
        for _ in range(6):
            torch.nn.functional.mse_loss(model(x), y).backward()
            step()
            opt.zero_grad()
            sched.step()
    return cnt.frame_count


def test_the_counters_do_see_recompiles():
    """The control: when Dynamo specialises on a float lr (torch < 2.6 did by default), the same
    counters report a recompile at every step. (Recent torch passes an unspecialised float lr as
    a graph input too; a tensor lr is what works on every version and with capturable optimizers.)"""
    assert _float_lr_frames(specialize_float=True) >= 5
    print(
        f"float lr, default config: frame_count={_float_lr_frames()} "
        f"(specialize_float={torch._dynamo.config.specialize_float})"
    )


def test_scheduler_step_inside_the_compiled_function():
    """The pattern of torch's tutorial: ``opt.step(); sched.step()`` both in the compiled function."""
    model = _model()
    opt = _sgd(_param_groups(model, lambda: torch.tensor(0.01)))
    sched = Scheduler(opt, [RALR, CLR])
    torch._dynamo.reset()
    cnt = CompileCounterWithBackend("eager")

    @torch.compile(backend=cnt)
    def step():
        opt.step()
        sched.step()

    x, y = _data()
    for _ in range(50):
        torch.nn.functional.mse_loss(model(x), y).backward()
        step()
        opt.zero_grad()
    assert sched.last_epoch == 50
    assert float(opt.param_groups[1]["lr"]) == pytest.approx(CLR(50), rel=1e-6)
    assert cnt.frame_count <= 2


def test_docs_snippet():
    """The torch.compile snippet of docs/integrations.md: 100 steps, a new rate each, <= 2 graphs."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "integrations.md").read_text()
    code = re.search(r"<!-- snippet: compile -->\s*```python\n(.*?)```", text, re.S).group(1)
    torch._dynamo.reset()
    counters.clear()
    namespace: dict = {}
    exec(compile(code, "docs/integrations.md[compile]", "exec"), namespace)
    assert namespace["sched"].last_epoch == 100
    assert counters["stats"]["unique_graphs"] <= 2, dict(counters["stats"])


def test_importing_the_adapter_leaves_dynamo_unimported():
    """Dynamo (and sympy under it) costs ~2 s of CPU to import: a process that never compiles,
    each lab worker among them, must not pay it at ``import lrlab.torch``."""
    import subprocess
    import sys

    code = "import sys, lrlab.torch, lrlab.finder, lrlab.lab.trainer; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
