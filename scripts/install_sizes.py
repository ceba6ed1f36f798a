"""Installed size of deploytool's core and of each extra, measured in an environment that has them all
(e.g. the `all,test` venv): the files every distribution of the requirement closure installed (its
RECORD), deploytool itself excluded. Each figure includes the core (numpy, click), not pip/setuptools.

    python scripts/install_sizes.py [--markdown docs/figures/install_sizes.md]      # a Markdown table
"""
from __future__ import annotations

import argparse
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from _common import add_markdown_option, md_table, write_markdown
from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(reqs: list[str], extras_table: dict[str, list[str]]) -> set[str]:
    env = default_environment()
    seen: set[str] = set()
    todo = list(reqs)
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
            continue
        if _norm(req.name) == "deploytool":
            for extra in req.extras:
                todo += extras_table[extra]
            continue
        name = _norm(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"{name} is not installed here: measure in the all,test environment")
        for sub in dist.requires or []:
            r = Requirement(sub)
            wanted = r.marker is None or r.marker.evaluate({**env, "extra": ""}) or any(
                r.marker.evaluate({**env, "extra": e}) for e in req.extras)
            if wanted:
                todo.append(str(Requirement(f"{r.name}{'[' + ','.join(r.extras) + ']' if r.extras else ''}")))
    return seen


def size(names: set[str]) -> int:
    total = 0
    for name in names:
        dist = metadata.distribution(name)
        for f in dist.files or []:
            p = Path(dist.locate_file(f))
            if p.is_file():
                total += p.stat().st_size
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_markdown_option(ap)
    args = ap.parse_args()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = project["dependencies"]
    extras = project["optional-dependencies"]
    rows = []
    for name, reqs in [("core", core)] + [(e, core + extras[e]) for e in extras if e not in ("test", "docs")]:
        names = closure(list(reqs), extras)
        label = "`pip install deploytool`" if name == "core" else f"`pip install 'deploytool[{name}]'`"
        rows.append([label, len(names), f"{size(names) / 2**20:,.0f} MB"])
    table = md_table(["install", "packages", "size"], rows)
    print(table)
    write_markdown(ap, args, table)


if __name__ == "__main__":
    main()
