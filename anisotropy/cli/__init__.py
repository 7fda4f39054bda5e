"""The ``anisotropy`` console script: one entry point, one subcommand per task.

Subcommands live next to the code they drive and are imported lazily, so that
``anisotropy limits`` does not pay for importing torch.  Each target is a
``main(argv: list[str] | None) -> int`` function whose options are derived from
a configuration dataclass with :mod:`anisotropy.cli.args`.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "main"]

#: subcommand -> ("module:function", one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "facts": ("analysis.facts:main", "verify the analytic facts symbolically and numerically"),
    "limits": ("analysis.facts:main", "the same as 'facts' (its former name)"),
    "converge": (
        "analysis.convergence.study:main",
        "convergence study of the free-entropy estimators",
    ),
    "train": ("anisotropy.cli.train:main", "train a model from a TOML configuration"),
    "cooling": ("analysis.cooling:main", "cooling-law analysis of logged layer signals"),
    "flatness": (
        "anisotropy.training.flatness:main",
        "measure a run's final flatness (local energy, local free entropy)",
    ),
    "sweep": ("experiments.sweep:main", "run an experiment's sweep of training runs"),
    "figures": ("paper_figs.make:main", "draw the paper's figures from sweep results"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: anisotropy COMMAND [options]   (anisotropy COMMAND --help for details)",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``anisotropy COMMAND ...`` to the command's ``main``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"anisotropy: unknown command {name!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr
        )
        return 2
    target, _ = COMMANDS[name]
    module, func = target.split(":")
    result = getattr(importlib.import_module(module), func)(rest)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
