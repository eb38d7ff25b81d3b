"""How much each of kit's optional extras adds to an environment that has kit's own
dependencies: the installed size of every distribution the extra pulls in beyond them.

    python scripts/extra_sizes.py          # in the README's test environment
"""

from __future__ import annotations

import re
from importlib import metadata

from _bench import env_info

EXTRAS = ("executorch", "litert", "openvino", "edge")


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(names: set[str]) -> set[str]:
    """``names`` and everything they require (markers ignored: what is installed counts)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        todo += [_name(r) for r in dist.requires or [] if "extra ==" not in r]
    return seen


def _size_mb(name: str) -> float:
    files = metadata.distribution(name).files or []
    return sum(f.locate().stat().st_size for f in files if f.locate().is_file()) / 2**20


def main() -> None:
    kit = metadata.distribution("kit")
    requires = kit.requires or []
    base = _closure({_name(r) for r in requires if "extra ==" not in r} | {"kit"})
    print(
        f"# extra_sizes ({env_info()}); kit's own dependencies: {sum(map(_size_mb, base)):,.0f} MB"
    )
    for extra in EXTRAS:
        wanted = {_name(r) for r in requires if f'extra == "{extra}"' in r}
        if "kit" in wanted:  # kit[edge] is the three others together
            wanted = {
                _name(r)
                for r in requires
                if any(f'extra == "{e}"' in r for e in ("executorch", "litert", "openvino"))
            }
        added = _closure(wanted) - base
        print(f"kit[{extra}]: {sum(map(_size_mb, added)):,.0f} MB in {len(added)} distributions")


if __name__ == "__main__":
    main()
