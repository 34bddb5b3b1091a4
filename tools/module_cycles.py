#!/usr/bin/env python3
"""Fails if the files of any crate depend on each other in a circle.

A file depends on module `m` of its crate when it names `crate::m` (in a `use` or a path).
Submodules count as their top-level module (`crate::cat::yaml` is `cat`); test modules
(`#[cfg(test)]` to the end of a file) are ignored. Prints each circle found; exit 1 if any.

    python3 tools/module_cycles.py [crates/...]
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")


def module_of(src_dir, path):
    rel = os.path.relpath(path, src_dir)
    top = rel.split(os.sep)[0]
    return top[:-3] if top.endswith(".rs") else top


def edges(src_dir):
    deps = {}
    for base, _dirs, files in os.walk(src_dir):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(base, name)
            mod = module_of(src_dir, path)
            if mod in ("lib", "main"):
                continue
            with open(path, encoding="utf-8") as f:
                text = f.read().split("#[cfg(test)]")[0]
            code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
            for target in REF.findall(code):
                if target != mod:
                    deps.setdefault(mod, set()).add(target)
    return deps


def cycles(deps):
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(deps.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(deps):
        if node not in state:
            visit(node)
    return found


def main(args):
    dirs = args or sorted(
        os.path.join(d, "src")
        for group in ("crates", "tools")
        for d in (os.path.join(ROOT, group, n) for n in os.listdir(os.path.join(ROOT, group)))
        if os.path.isdir(os.path.join(d, "src"))
    )
    bad = 0
    for src in dirs:
        for circle in cycles(edges(src)):
            bad += 1
            print(f"{os.path.relpath(src, ROOT)}: {' -> '.join(circle)}")
    if bad:
        print(f"{bad} dependency circle(s) among the files of a crate")
        return 1
    print(f"no dependency circle among the files of {len(dirs)} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
