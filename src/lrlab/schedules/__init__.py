"""Pure, framework-free learning-rate schedules: immutable values, ``lr = schedule(step)``.

Every schedule is a frozen dataclass registered under a config ``type``; ``from_config`` and
``Schedule.to_config`` convert to and from plain dicts (JSON / TOML). See ``lrlab schedules``.
Each type carries one canonical example config (``cls.example``); :data:`EXAMPLES` maps every
schedule type to it (the docs and the test tables are built from it).
"""

from lrlab.schedules.base import (
    NUMPY,
    REGISTRY,
    SCALAR,
    Configurable,
    Ops,
    Schedule,
    from_config,
    register,
)
from lrlab.schedules.basic import (
    Constant,
    Cosine,
    Exponential,
    MultiStep,
    Polynomial,
    Step,
    paper_multistep,
)
from lrlab.schedules.compose import Chain, Clamp, Join, Scale, Warmup
from lrlab.schedules.config import dump_config, load_config
from lrlab.schedules.cyclic import CYCLIC_MODES, Cyclic
from lrlab.schedules.function import FunctionSchedule, from_function
from lrlab.schedules.kdecay import KDECAY_FORMS, KDecay
from lrlab.schedules.ralr import RandomAmplify, ralr_paper
from lrlab.schedules.restarts import CosineRestarts
from lrlab.schedules.sequences import SEQUENCE_KINDS, DecayingSequence
from lrlab.schedules.torchlike import (
    ANNEAL_STRATEGIES,
    ConstantFactor,
    Linear,
    OneCycle,
    OneCycleMomentum,
)
from lrlab.schedules.transformers import WSD_DECAYS, InverseSqrt, WarmupStableDecay


def schedule_types() -> dict[str, type]:
    """Every registered schedule type (policies share the registry and are left out)."""
    return {name: cls for name, cls in sorted(REGISTRY.items()) if issubclass(cls, Schedule)}


#: One canonical example config per schedule type, from each class's ``example``.
EXAMPLES: dict[str, dict] = {
    name: getattr(cls, "example", None) or {} for name, cls in schedule_types().items()
}

__all__ = [
    "ANNEAL_STRATEGIES",
    "CYCLIC_MODES",
    "EXAMPLES",
    "KDECAY_FORMS",
    "NUMPY",
    "REGISTRY",
    "SCALAR",
    "SEQUENCE_KINDS",
    "WSD_DECAYS",
    "Chain",
    "Clamp",
    "Configurable",
    "Constant",
    "ConstantFactor",
    "Cosine",
    "CosineRestarts",
    "Cyclic",
    "DecayingSequence",
    "Exponential",
    "FunctionSchedule",
    "InverseSqrt",
    "Join",
    "KDecay",
    "Linear",
    "MultiStep",
    "OneCycle",
    "OneCycleMomentum",
    "Ops",
    "Polynomial",
    "RandomAmplify",
    "Scale",
    "Schedule",
    "Step",
    "Warmup",
    "WarmupStableDecay",
    "dump_config",
    "from_config",
    "from_function",
    "load_config",
    "paper_multistep",
    "ralr_paper",
    "register",
    "schedule_types",
]
