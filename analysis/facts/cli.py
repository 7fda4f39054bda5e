"""``anisotropy facts`` (formerly ``anisotropy limits``): verify the analytic facts symbolically
and numerically; exit status 1 if any fails."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field

from anisotropy.cli.args import add_dataclass_arguments, from_namespace

from .catalogue import verify_all

__all__ = ["LimitsOptions", "main"]


# --- command line ------------------------------------------------------------------------------
@dataclass
class LimitsOptions:
    """Options of ``anisotropy facts`` (alias ``anisotropy limits``)."""

    json: bool = field(default=False, metadata={"help": "print the results as a JSON list"})
    only: list[str] = field(
        default_factory=list, metadata={"help": "names of the facts to check (default: all)"}
    )


def main(argv: list[str] | None = None) -> int:
    """``anisotropy facts [--json] [--only NAME ...]``: exit status 1 if any fact fails."""
    parser = argparse.ArgumentParser(prog="anisotropy facts", description=" ".join(__doc__.split()))
    add_dataclass_arguments(parser, LimitsOptions)
    opts = from_namespace(LimitsOptions, parser.parse_args(argv))
    try:
        results = verify_all(opts.only or None)
    except ValueError as exc:  # an unknown fact name: usage error, exit status 2
        parser.error(str(exc))
    if opts.json:
        print(json.dumps([r.to_dict() for r in results], indent=1))
    else:
        for r in results:
            print(r.report())
        print(f"{sum(r.passed for r in results)}/{len(results)} facts verified")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
