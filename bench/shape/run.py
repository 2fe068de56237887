"""Print the shape of ``src/gpudra``: import-linter contracts (count and names), lines per
package (generated stubs left out), the longest functions, and the modules over 300 lines.

Run from the repository root: ``python -m bench.shape.run [--top N]``.  Pure reading: it
parses the sources with ``ast`` and the contracts file with ``configparser``.
"""

from __future__ import annotations

import argparse
import ast
import configparser
from pathlib import Path

SRC = Path("src/gpudra")


def contracts(path: Path = Path(".importlinter")) -> list[str]:
    cp = configparser.ConfigParser()
    cp.read(path)
    return [cp[s]["name"] for s in cp.sections() if s.startswith("importlinter:contract:")]


def modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "_proto" not in p.parts)


def lines_per_package() -> dict[str, int]:
    out: dict[str, int] = {}
    for p in modules():
        rel = p.relative_to(SRC)
        pkg = rel.parts[0] if len(rel.parts) > 1 else "(top)"
        out[pkg] = out.get(pkg, 0) + len(p.read_text().splitlines())
    return out


def functions() -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for p in modules():
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                found.append((n, f"{p.relative_to(SRC)}:{node.lineno} {node.name}"))
    return sorted(found, reverse=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--top", type=int, default=12)
    a = ap.parse_args()
    names = contracts()
    print(f"import-linter contracts: {len(names)}")
    for n in names:
        print(f"  - {n}")
    per = lines_per_package()
    print(f"lines per package (total {sum(per.values())}, {len(modules())} modules):")
    for pkg, n in sorted(per.items(), key=lambda kv: -kv[1]):
        print(f"  {n:6d}  {pkg}")
    print(f"longest functions (top {a.top}):")
    for n, where in functions()[: a.top]:
        print(f"  {n:4d}  {where}")
    big = [(len(p.read_text().splitlines()), p) for p in modules()]
    over = sorted(((n, p) for n, p in big if n > 300), reverse=True)
    print(f"modules over 300 lines: {len(over)}")
    for n, p in over:
        print(f"  {n:4d}  {p.relative_to(SRC)}")


if __name__ == "__main__":
    main()
