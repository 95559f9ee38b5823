"""``lrlab lr``, ``lrlab plot``, ``lrlab schedules`` and ``lrlab papers``."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import re
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lrlab.atomic import FIGURE_FORMATS, atomic_save_figure
from lrlab.cli.args import MAX_STEPS, int_at_least
from lrlab.errors import ConfigError
from lrlab.policies import as_driver
from lrlab.schedules import REGISTRY, from_config, load_config

#: rates evaluated (and printed) at a time by ``lrlab lr``, so 10**8 steps never fill memory
CHUNK_STEPS = 1 << 16
SUFFIXES = ", ".join(f".{s}" for s in FIGURE_FORMATS)


def register(sub) -> None:
    p = sub.add_parser("lr", help="print the learning rate at steps 0..N-1 of a config")
    p.add_argument(
        "config",
        help="a .json/.toml file, inline JSON, or STUDY:SCHEDULE (a study file or built-in "
        "study and one of its schedules, placeholders resolved)",
    )
    _add_steps_option(p)
    p.add_argument(
        "--json",
        action="store_true",
        help='print a JSON list instead of a table (with hyper-parameters: {"lr": [...], KEY: [...]})',
    )
    _add_replay_options(p)
    _add_hyperparam_options(p)
    p.set_defaults(func=cmd_lr)

    p = sub.add_parser("plot", help="plot one or more configs' learning rates (PNG, PDF, SVG)")
    p.add_argument("configs", nargs="+", help="as for 'lrlab lr': files, inline JSON, STUDY:NAME")
    _add_steps_option(p)
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help=f"figure path; its suffix sets the format ({SUFFIXES})",
    )
    p.add_argument("--labels", nargs="*", help="one legend label per config")
    p.add_argument("--log", action="store_true", help="logarithmic learning-rate axis")
    _add_replay_options(p)
    _add_hyperparam_options(p)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("schedules", help="list every config type with its parameters and defaults")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_schedules)

    p = sub.add_parser("papers", help="print and plot the schedules of the four papers")
    p.add_argument("-o", "--output", default="lrlab-papers.png", help=f"figure path ({SUFFIXES})")
    p.set_defaults(func=cmd_papers)


def _add_steps_option(p) -> None:
    p.add_argument(
        "--steps",
        type=int_at_least(1, MAX_STEPS),
        required=True,
        metavar="N",
        help=f"number of steps (1..{MAX_STEPS:.0e})",
    )


def _add_replay_options(p) -> None:
    p.add_argument(
        "--metrics",
        metavar="FILE",
        help="replay a recorded metric history through a policy: a JSON list, one value "
        "per epoch (e.g. validation losses)",
    )
    p.add_argument(
        "--steps-per-epoch",
        type=int_at_least(1),
        metavar="S",
        help="steps in one epoch of the replayed history (default 1, or the study's; "
        "needs --metrics)",
    )


def _add_hyperparam_options(p) -> None:
    p.add_argument(
        "--hyperparam",
        action="append",
        default=[],
        metavar="KEY=CONFIG",
        help="also show the schedule of an optimizer hyper-parameter (KEY: momentum, "
        "weight_decay, ...; CONFIG as above); repeatable. STUDY:SCHEDULE brings its own",
    )
    p.add_argument("--momentum", metavar="CONFIG", help="the same as --hyperparam momentum=CONFIG")


_HYPERPARAM_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def hyperparam_options(args) -> dict[str, tuple[str, str]]:
    """``--hyperparam KEY=CONFIG`` and ``--momentum CONFIG`` as ``{key: (option, CONFIG)}``."""
    given = [("--momentum", "momentum", args.momentum)] if args.momentum is not None else []
    for text in args.hyperparam:
        key, eq, config = str(text).partition("=")
        key = key.strip()
        if not eq or not _HYPERPARAM_KEY.match(key):
            raise ConfigError(
                f"--hyperparam must be KEY=CONFIG (e.g. momentum=m.json), got {text[:60]!r}"
            )
        given.append((f"--hyperparam {key}", key, config))
    out: dict[str, tuple[str, str]] = {}
    for option, key, config in given:
        if key == "lr":
            raise ConfigError(f"{option}: the learning rate is the positional CONFIG itself")
        if key in out:
            raise ConfigError(f"{option}: {key!r} is given twice; give it once")
        out[key] = (option, config)
    return out


# --------------------------------------------------------------------------------------------
# Where a config comes from


@dataclasses.dataclass(frozen=True)
class ConfigSource:
    """A config and how to name it: a file's stem, a study's schedule name, or its type."""

    config: dict
    label: str
    #: schedule steps per epoch when the config comes from a study (the replay default)
    steps_per_epoch: int | None = None
    #: the study schedule's hyper-parameter configs (key -> config, placeholders resolved)
    hyperparams: dict = dataclasses.field(default_factory=dict)


def read_source(source: str | dict | ConfigSource) -> ConfigSource:
    """A config from a dict, inline JSON, a .json/.toml file, or ``STUDY:SCHEDULE``."""
    if isinstance(source, ConfigSource):
        return source
    if isinstance(source, dict):
        return ConfigSource(source, str(source.get("type", "config")))
    from lrlab.cli.preview import split_study_source, study_schedule_with_hyperparams

    parts = split_study_source(source)
    if parts is not None:
        config, steps_per_epoch, hyperparams = study_schedule_with_hyperparams(*parts)
        return ConfigSource(config, parts[1], steps_per_epoch, hyperparams)
    config = load_config(source)
    text = str(source).strip()
    _reject_study_file(config, text)
    label = Path(text).stem if not text.startswith("{") else str(config.get("type", "config"))
    return ConfigSource(config, label)


def _reject_study_file(config: dict, text: str) -> None:
    schedules = config.get("schedules") if isinstance(config, dict) else None
    if isinstance(schedules, dict) and "type" not in config:
        names = ", ".join(map(str, schedules))
        raise ConfigError(
            f"{text} is a study file: pick one of its schedules as {text}:NAME ({names})"
        )


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ConfigError(f"--steps must be an integer >= 1 and <= {MAX_STEPS:,}, got {steps!r}")
    return steps


def _policy_needs_metrics(controller) -> ConfigError:
    return ConfigError(
        f"this config is a policy (trigger {controller.trigger.type_name!r}): its value "
        "depends on a metric; give --metrics FILE (a JSON list, one value per epoch) and "
        "--steps-per-epoch S to replay a history"
    )


@dataclasses.dataclass(frozen=True)
class Rates:
    """The learning rates of a config at steps 0..steps-1: iterating yields NumPy arrays of at
    most ``CHUNK_STEPS`` rates, computed afresh on every pass (so 10**8 steps never fill memory);
    a replayed policy is one array."""

    controller: Any
    steps: int
    replayed: Any = None

    def __iter__(self) -> Iterator:
        import numpy as np

        for start in range(0, self.steps, CHUNK_STEPS):
            if self.replayed is not None:  # chunked too: columns of `lrlab lr` go in step
                yield self.replayed[start : start + CHUNK_STEPS]
                continue
            # an overflow shows as inf, which the caller rejects in one line: no numpy warning
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                yield self.controller.values(np.arange(start, min(self.steps, start + CHUNK_STEPS)))


def learning_rate_chunks(
    config_source, steps: int, *, metrics=None, steps_per_epoch: int | None = None
) -> Rates:
    """The learning rates of a config at steps 0..steps-1, in chunks (:class:`Rates`); the
    config is read and checked here. ``config_source`` is anything :func:`read_source` reads.

    With ``metrics`` (a list of per-epoch values, or a path / inline JSON list) a policy is
    replayed through them, ``steps_per_epoch`` steps per epoch (default 1, or the study's);
    a plain schedule ignores them.
    """
    import numpy as np

    steps = _check_steps(steps)
    if steps_per_epoch is not None and metrics is None:
        raise ConfigError(
            "--steps-per-epoch needs --metrics FILE (the per-epoch history to replay)"
        )
    source = read_source(config_source)
    controller = from_config(source.config)
    if metrics is None:
        if as_driver(controller).stateful:
            raise _policy_needs_metrics(controller)
        return Rates(controller, steps)
    from lrlab.policies import load_metrics, replay

    if not isinstance(metrics, (list, tuple)):
        metrics = load_metrics(metrics)
    spe = steps_per_epoch or source.steps_per_epoch or 1
    if spe < 1:
        raise ConfigError(f"--steps-per-epoch must be an integer >= 1, got {spe}")
    lrs = np.asarray(replay(controller, metrics, spe, steps=steps).lrs, dtype=np.float64)
    return Rates(controller, steps, lrs)


def learning_rates(config_source, steps: int, *, metrics=None, steps_per_epoch: int | None = None):
    """The learning rates of a config at steps 0..steps-1 (one NumPy array); see
    :func:`learning_rate_chunks`."""
    import numpy as np

    chunks = list(
        learning_rate_chunks(config_source, steps, metrics=metrics, steps_per_epoch=steps_per_epoch)
    )
    return np.concatenate(chunks)


def _check_finite(values, offset: int, key: str = "lr") -> None:
    import numpy as np

    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        step, value = offset + int(bad[0]), float(values[bad[0]])
        if key == "lr":
            raise ConfigError(
                f"the config yields an invalid learning rate {value} at step {step} "
                "(rates must be finite and >= 0)"
            )
        raise ConfigError(
            f"the {key} config yields an invalid {key} {value} at step {step} "
            "(values must be finite and >= 0)"
        )


def hyperparam_rates(
    args, source: ConfigSource, metrics=None, spe: int | None = None
) -> dict[str, Rates]:
    """``{"lr": rates, key: rates, ...}`` of a source and its hyper-parameters (the study's,
    then the options'), each on the same steps; an error names the option or study field."""
    columns = {"lr": learning_rate_chunks(source, args.steps, metrics=metrics, steps_per_epoch=spe)}
    given = {
        key: (f"schedules.{source.label}.hyperparams.{key}", config)
        for key, config in source.hyperparams.items()
    }
    for key, (option, text) in hyperparam_options(args).items():
        if key in given:
            raise ConfigError(f"{option}: {source.label} already schedules {key!r} in its study")
        given[key] = (option, text)
    for key, (option, config) in given.items():
        try:
            sub = ConfigSource(read_source(config).config, key, source.steps_per_epoch)
            rates = learning_rate_chunks(sub, args.steps, metrics=metrics, steps_per_epoch=spe)
        except ConfigError as exc:
            message = str(exc)
            raise ConfigError(
                message if message.startswith(option) else f"{option}: {message}"
            ) from None
        columns[key] = rates
    return columns


def cmd_lr(args) -> int:
    source = read_source(args.config)
    columns = hyperparam_rates(args, source, args.metrics, args.steps_per_epoch)
    for key, rates in columns.items():  # a first pass checks every value: nothing invalid prints
        offset = 0
        for values in rates:
            _check_finite(values, offset, key)
            offset += len(values)
    if len(columns) == 1:
        _print_rates(columns["lr"], args.json)
    elif args.json:
        _print_json_columns(columns)
    else:
        _print_table(columns)
    return 0


def _print_rates(rates: Rates, as_json: bool) -> None:
    out, offset = sys.stdout, 0
    for values in rates:
        if as_json:
            body = ", ".join(json.dumps(float(v), allow_nan=False) for v in values)
            out.write(("[" if offset == 0 else ", ") + body)
        else:
            out.write("".join(f"{offset + i}\t{float(v)!r}\n" for i, v in enumerate(values)))
        offset += len(values)
    if as_json:
        out.write("]\n")


def _print_json_columns(columns: dict[str, Rates]) -> None:
    """``{"lr": [...], "momentum": [...]}``, written as it is computed, one key at a time."""
    out = sys.stdout
    for n, (key, rates) in enumerate(columns.items()):
        out.write(("{" if n == 0 else "], ") + json.dumps(key) + ": [")
        for i, values in enumerate(rates):
            body = ", ".join(json.dumps(float(v), allow_nan=False) for v in values)
            out.write((", " if i else "") + body)
    out.write("]}\n")


def _print_table(columns: dict[str, Rates]) -> None:
    """A header comment (``# step lr momentum``), then one row per step, columns in step."""
    out, offset = sys.stdout, 0
    out.write("# " + "\t".join(["step", *columns]) + "\n")
    for chunk in zip(*columns.values()):
        rows = zip(*chunk)
        out.write(
            "".join(
                f"{offset + i}\t" + "\t".join(repr(float(v)) for v in row) + "\n"
                for i, row in enumerate(rows)
            )
        )
        offset += len(chunk[0])


# --------------------------------------------------------------------------------------------
# Plots


def plot_curves(
    curves: dict[str, Any],
    path,
    *,
    title: str = "",
    log: bool = False,
    xlabel: str = "step",
    x: dict[str, Any] | None = None,
) -> Path:
    """Draw named learning-rate curves on one figure and save it (PNG, PDF or SVG after the
    path's suffix). A rate holds from its step to the next, so curves are drawn as steps;
    ``x`` optionally gives each curve's x values (default: 0, 1, 2, ...)."""
    return plot_panels({"learning rate": curves}, path, title=title, log=log, xlabel=xlabel, x=x)


def plot_panels(
    panels: dict[str, dict[str, Any]],
    path,
    *,
    title: str = "",
    log: bool = False,
    xlabel: str = "step",
    x: dict[str, Any] | None = None,
) -> Path:
    """:func:`plot_curves` with one panel per quantity (``{"learning rate": curves,
    "momentum": curves, ...}``, stacked, sharing the x axis); ``log`` scales the first."""
    from matplotlib.figure import Figure

    from lrlab.atomic import figure_format

    figure_format(path)  # an unknown suffix fails before any drawing
    fig = Figure(figsize=(8, 4.5 if len(panels) == 1 else 1.0 + 2.6 * len(panels)), dpi=110)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    styles = ("-", "--", "-.", ":")
    for n, (ax, (ylabel, curves)) in enumerate(zip(axes, panels.items())):
        for i, (label, values) in enumerate(curves.items()):
            xs = (x or {}).get(label)
            xs = range(len(values)) if xs is None else xs
            style = styles[(i // 10) % 4]
            ax.plot(xs, values, label=label, lw=1.4, drawstyle="steps-post", ls=style)
        ax.set_ylabel(ylabel)
        if log and n == 0:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1].set_xlabel(xlabel)
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    atomic_save_figure(fig, path)
    return Path(path)


def unique_labels(labels: Sequence[str], sources: Sequence[str]) -> list[str]:
    """Legend labels without repeats: a repeated label becomes its full source text, then is
    numbered (``name #2``)."""
    counts = {label: labels.count(label) for label in labels}
    out = [src if counts[label] > 1 else label for label, src in zip(labels, sources)]
    seen: dict[str, int] = {}
    for i, label in enumerate(out):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            out[i] = f"{label} #{seen[label]}"
    return out


def cmd_plot(args) -> int:
    from lrlab.atomic import figure_format

    figure_format(args.output)
    labels = args.labels or []
    if labels and len(labels) != len(args.configs):
        raise ConfigError(f"--labels: got {len(labels)} labels for {len(args.configs)} configs")
    metrics = None
    if args.metrics is not None:
        from lrlab.policies import load_metrics

        metrics = load_metrics(args.metrics)
    sources = [read_source(s) for s in args.configs]
    names = labels or unique_labels(
        [s.label for s in sources], [str(c).strip() for c in args.configs]
    )
    spe = args.steps_per_epoch if metrics is not None else None
    panels: dict[str, dict[str, Any]] = {}
    for name, source in zip(names, sources):
        for key, rates in hyperparam_rates(args, source, metrics, spe).items():
            panel = panels.setdefault("learning rate" if key == "lr" else key, {})
            panel[name] = _values(rates, key)
    print(plot_panels(panels, args.output, log=args.log))
    return 0


def _values(rates: Rates, key: str):
    """All of a column's values in one array, checked like ``lrlab lr`` checks them."""
    import numpy as np

    values = np.concatenate(list(rates))
    _check_finite(values, 0, key)
    return values


# --------------------------------------------------------------------------------------------
# lrlab schedules


def describe_types() -> list[dict]:
    """Every registered config type: name, plain-text description, parameters with defaults."""
    rows = []
    for name, cls in sorted(REGISTRY.items()):
        params = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # every registered type is a dataclass
            if not f.init:
                continue
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = "<required>"
            params.append({"name": f.name, "default": default})
        rows.append(
            {
                "type": name,
                "summary": plain_description(cls.__doc__ or ""),
                "params": params,
                **getattr(cls, "describe_extra", lambda: {})(),
            }
        )
    return rows


_OUTSIDE_REFERENCE = re.compile(r"\s*\((?:see )?METHODS\.md[^)]*\)")


def plain_description(doc: str) -> str:
    """A docstring's prose before its examples, as plain text: no reStructuredText markup
    (````code````, ``::``), no references to documents outside the repository; formula blocks kept
    as indented lines."""
    text = inspect.cleandoc(doc).split("\n>>>")[0].strip()
    text = _OUTSIDE_REFERENCE.sub("", text.replace("``", ""))
    return re.sub(r"::$", ":", text, flags=re.MULTILINE)


def _wrap(text: str, indent: str, width: int = 79) -> list[str]:
    """Wrap prose paragraphs; keep indented (formula) lines as they are."""
    lines: list[str] = []
    for block in text.split("\n\n"):
        if block.startswith(" "):  # a formula block: its lines, long ones continued deeper
            for line in block.splitlines():
                lines += _wrap_line(indent + line, width)
        else:
            lines += textwrap.wrap(
                " ".join(block.split()), width, initial_indent=indent, subsequent_indent=indent
            )
        lines.append("")
    return lines


def _wrap_line(line: str, width: int) -> list[str]:
    body = line.lstrip()
    lead = line[: len(line) - len(body)]
    code, mark, comment = body.partition("  #")
    if len(line) > width and mark:  # a trailing comment goes on a line of its own
        return [*_wrap_line(lead + code.rstrip(), width), f"{lead}    #{comment.rstrip()}"]
    return textwrap.wrap(
        body,
        width,
        initial_indent=lead,
        subsequent_indent=lead + "    ",
        break_on_hyphens=False,
        break_long_words=False,
    ) or [""]


def _param_text(params: list[dict]) -> str:
    return ", ".join(
        p["name"] if p["default"] == "<required>" else f"{p['name']}={p['default']!r}"
        for p in params
    )


def schedules_text(rows: list[dict]) -> str:
    """``lrlab schedules`` as plain text that fits 80 columns."""
    lines = ["lrlab config types (formulas and plots: docs/schedules.md)", ""]
    for row in rows:
        lines += textwrap.wrap(
            f"{row['type']}: {_param_text(row['params'])}", 79, subsequent_indent="    "
        )
        lines += _wrap(row["summary"], "    ")
        for key, values in row.items():
            if key not in ("type", "summary", "params"):
                lines.append(f"    {key}:")
                for value in values:
                    lines += _wrap_line(f"        {value}", 79)
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def cmd_schedules(args) -> int:
    rows = describe_types()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        sys.stdout.write(schedules_text(rows))
    return 0


# --------------------------------------------------------------------------------------------
# lrlab papers


def paper_schedules(epochs: int = 300) -> dict[str, dict]:
    """One config per paper, per epoch, for the overview plot of ``lrlab papers``."""
    return {
        "RALR (multistep 0.1, p=0.5, u~U[1,3])": {
            "type": "ralr",
            "base": {
                "type": "multistep",
                "lr": 0.1,
                "milestones": [epochs // 2, 3 * epochs // 4],
                "gamma": 0.1,
            },
            "p": 0.5,
            "low": 1.0,
            "high": 3.0,
            "period": 1,
            "seed": 0,
        },
        "CLR triangular2 (0.001..0.006, 20 up)": {
            "type": "cyclic",
            "mode": "triangular2",
            "base_lr": 0.001,
            "max_lr": 0.006,
            "step_size_up": 20,
        },
        "seq4 by epoch (r0=0.01)": {"type": "sequence", "kind": "seq4", "lr": 0.01},
        "k-decay k=3 on cosine (0.1 -> 0.001)": {
            "type": "kdecay",
            "k": 3.0,
            "form": "warp",
            "base": {"type": "cosine", "lr": 0.1, "end_lr": 0.001, "total": epochs},
        },
        "cosine (0.1 -> 0.001)": {"type": "cosine", "lr": 0.1, "end_lr": 0.001, "total": epochs},
    }


#: the epochs ``lrlab papers`` prints: 7 columns of 9 characters beside a 16-character name
PAPER_EPOCHS = (0, 1, 10, 50, 150, 225, 299)


def papers_text(curves: dict[str, Any]) -> str:
    """The table of ``lrlab papers``: plain text within 80 columns, every number whole."""
    lines = ["learning rate per epoch", ""]
    lines.append(f"{'schedule':<16}" + "".join(f"{'e' + str(e):>9}" for e in PAPER_EPOCHS))
    for name, values in curves.items():
        short = name.split(" (")[0].replace(" on cosine", "")[:15]
        cells = "".join(f"{_rate(float(values[e])):>9}" for e in PAPER_EPOCHS)
        lines.append(f"{short:<16}{cells}")
    lines += ["", *(f"  {name}" for name in curves)]
    return "\n".join(lines) + "\n"


def _rate(value: float) -> str:
    """A rate in at most 8 characters, to 3 significant digits."""
    if value != 0 and math.isfinite(value) and abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.3g}"


def cmd_papers(args) -> int:
    from lrlab.atomic import figure_format

    figure_format(args.output)
    epochs = 300
    configs = paper_schedules(epochs)
    curves = {name: from_config(c).values(epochs) for name, c in configs.items()}
    sys.stdout.write(papers_text(curves))
    path = plot_curves(
        curves,
        args.output,
        log=True,
        xlabel="epoch",
        title="The four papers' schedules (log scale)",
    )
    print(path)
    return 0
