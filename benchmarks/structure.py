"""Structure counts of the package, for before/after notes on a refactor.

    python benchmarks/structure.py [PACKAGE_DIR]

Prints: lines in cli/ against the whole package, functions longer than 80 lines, model-family
switches outside the family code (``isinstance(..., DDPMModel|FlowModel|...Pipeline)`` and
comparisons of a ``family``/``method`` string with "ddpm"/"rf"/"flow"/"ldm"), and in how many
files each sampler name appears as a string literal.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

FAMILY_TYPES = re.compile(r"^(DDPMModel|FlowModel|DDPMPipeline|FlowPipeline)$")
FAMILY_WORDS = {"ddpm", "rf", "flow", "ldm"}
SAMPLERS = ("ddpm", "ddim", "dpm++2m", "euler", "midpoint", "heun", "rk4", "dopri5")


def functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def family_switches(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)}
            if any(FAMILY_TYPES.match(n) for n in names):
                lines.append(node.lineno)
        if isinstance(node, ast.Compare):
            consts = {c.value for c in ast.walk(node) if isinstance(c, ast.Constant)}
            text = ast.unparse(node.left)
            if consts & FAMILY_WORDS and re.search(r"family|method|kind", text):
                lines.append(node.lineno)
    return lines


def main() -> None:
    pkg = Path(sys.argv[1] if len(sys.argv) > 1 else "diffkit")
    total = cli = 0
    long_fns, switches = [], []
    sampler_files: dict[str, set[str]] = {s: set() for s in SAMPLERS}
    for path in sorted(pkg.rglob("*.py")):
        text = path.read_text()
        rel = str(path.relative_to(pkg))
        n = len(text.splitlines())
        total += n
        cli += n if rel.startswith("cli/") else 0
        tree = ast.parse(text)
        for fn in functions(tree):
            length = fn.end_lineno - fn.lineno + 1
            if length > 80:
                long_fns.append((length, f"{rel}:{fn.name}"))
        in_family = rel.startswith(("families/", "models/"))
        switches += [] if in_family else [f"{rel}:{ln}" for ln in family_switches(tree)]
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                words = set(re.split(r"[\s,|/()]+", node.value))
                for s in SAMPLERS:
                    if node.value == s or (s != "ddpm" and s in words):
                        sampler_files[s].add(rel)
    print(f"cli/: {cli} of {total} lines ({100 * cli / total:.0f} %)")
    print(f"functions over 80 lines: {len(long_fns)}")
    for length, name in sorted(long_fns, reverse=True):
        print(f"  {length:4d} {name}")
    print(f"family switches outside models/ and families/: {len(switches)}")
    for s in switches:
        print(f"  {s}")
    print("files naming each sampler (string literals):")
    for s, files in sampler_files.items():
        print(f"  {s}: {len(files)} {sorted(files)}")


if __name__ == "__main__":
    main()
