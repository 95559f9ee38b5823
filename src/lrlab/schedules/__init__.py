"""Pure, framework-free learning-rate schedules: immutable values, ``lr = schedule(step)``.

Every schedule is a frozen dataclass registered under a config ``type``; ``from_config`` and
``Schedule.to_config`` convert to and from plain dicts (JSON / TOML). See ``lrlab schedules``.
"""

from lrlab.schedules.base import (
    NUMPY,
    REGISTRY,
    SCALAR,
    Configurable,
    Schedule,
    from_config,
    register,
)
from lrlab.schedules.basic import (
    Constant,
    Cosine,
    CosineRestarts,
    Exponential,
    MultiStep,
    Polynomial,
    Step,
    paper_multistep,
)
from lrlab.schedules.compose import Clamp, Join, Scale, Warmup
from lrlab.schedules.config import dump_config, load_config
from lrlab.schedules.cyclic import CYCLIC_MODES, Cyclic
from lrlab.schedules.kdecay import KDECAY_FORMS, KDecay
from lrlab.schedules.ralr import RandomAmplify, ralr_paper
from lrlab.schedules.sequences import SEQUENCE_KINDS, DecayingSequence

__all__ = [
    "CYCLIC_MODES",
    "KDECAY_FORMS",
    "NUMPY",
    "REGISTRY",
    "SCALAR",
    "SEQUENCE_KINDS",
    "Clamp",
    "Configurable",
    "Constant",
    "Cosine",
    "CosineRestarts",
    "Cyclic",
    "DecayingSequence",
    "Exponential",
    "Join",
    "KDecay",
    "MultiStep",
    "Polynomial",
    "RandomAmplify",
    "Scale",
    "Schedule",
    "Step",
    "Warmup",
    "dump_config",
    "from_config",
    "load_config",
    "paper_multistep",
    "ralr_paper",
    "register",
]
