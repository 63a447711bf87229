#!/usr/bin/env python3
"""Checks the library's import graph against the layers ARCHITECTURE.md draws ("Layers").

Each file under src/ belongs to a top-level module (src/ring/spsc.rs -> ring). Every `crate::...` path
in code (comments ignored), and every name the crate root re-exports, is an edge to the module that owns
it. An edge not in ALLOWED fails the check. Within each directory, edges between sibling files (through
`super::NAME` or `crate::top::NAME`) must form no cycle; a parent `mod.rs` may use its children, and
children may use their parent's items, but two siblings never depend on each other both ways.
Prints the graph it found (`--graph`) so that the picture in ARCHITECTURE.md can be checked against it.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# Layer order, bottom first: each module may use only those it lists.
ALLOWED = {
    "sync": set(),
    "wire": set(),
    "process": set(),
    "wait": {"sync"},
    "reactor": {"sync", "wait"},
    "ring": {"sync", "wire", "wait", "reactor"},
    "shm": {"sync", "ring", "wait", "process"},
    "transport": {"sync", "wire", "ring", "shm", "wait", "process"},
    "events": set(),
    "socket": {"wire", "ring", "transport", "events"},
    "hub": {"wire", "ring", "shm", "wait", "transport", "events", "socket"},
}


def code_lines(path):
    with open(path) as f:
        for line in f:
            stripped = line.strip()
            if stripped.startswith("//"):
                continue
            yield line.split("//")[0] if "//" in line and '"' not in line else line


def top_module(rel):
    parts = rel.split(os.sep)
    name = parts[0][:-3] if parts[0].endswith(".rs") else parts[0]
    return name


def root_reexports():
    """Names the crate root re-exports, mapped to their owning top-level module."""
    owners = {}
    text = "".join(code_lines(os.path.join(ROOT, "lib.rs")))
    for m in re.finditer(r"pub use (\w+)::(?:\{([^}]*)\}|(\w+));", text):
        module, group, single = m.group(1), m.group(2), m.group(3)
        for name in (group.split(",") if group else [single]):
            name = name.strip().split(" as ")[-1].strip()
            if name:
                owners[name] = module
    # A re-exported module (spsc, from `pub use ring::{spsc, ..}`) resolves to its owner's layer.
    for _ in range(3):
        owners = {n: owners.get(o, o) if o not in ALLOWED else o for n, o in owners.items()}
    return owners


def main():
    owners = root_reexports()
    tops = set(ALLOWED)
    edges = {}
    sibling = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, ROOT)
            if rel == "lib.rs":
                continue
            top = top_module(rel)
            text = "".join(code_lines(path))
            targets = [m.group(1) for m in re.finditer(r"\bcrate::(\w+)", text)]
            for m in re.finditer(r"\bcrate::\{([^}]*)\}", text):
                targets += [t.strip().split("::")[0] for t in m.group(1).split(",") if t.strip()]
            for target in targets:
                dep = target if target in tops else owners.get(target)
                if dep is None:
                    print(f"layers: {rel}: crate::{target} is neither a layer nor a root re-export", file=sys.stderr)
                    sys.exit(1)
                if dep != top:
                    edges.setdefault(top, {}).setdefault(dep, set()).add(rel)
            # sibling edges inside a directory
            d = os.path.dirname(rel)
            me = os.path.splitext(f)[0]
            if me == "mod":
                continue
            names = {os.path.splitext(x)[0] for x in os.listdir(dirpath) if x.endswith(".rs") and x != "mod.rs"}
            names |= {x for x in os.listdir(dirpath) if os.path.isdir(os.path.join(dirpath, x))}
            for m in re.finditer(r"\bsuper::(\w+)", text):
                if m.group(1) in names and m.group(1) != me:
                    sibling.setdefault(d, {}).setdefault(me, set()).add(m.group(1))
            if d:
                for m in re.finditer(r"\bcrate::" + re.escape(d.split(os.sep)[0]) + r"::(\w+)", text):
                    if m.group(1) in names and m.group(1) != me:
                        sibling.setdefault(d, {}).setdefault(me, set()).add(m.group(1))
    bad = False
    for top, deps in sorted(edges.items()):
        for dep, where in sorted(deps.items()):
            if dep not in ALLOWED.get(top, set()):
                print(f"layers: {top} -> {dep} is not allowed (in {', '.join(sorted(where))})", file=sys.stderr)
                bad = True
    for d, graph in sibling.items():
        seen, stack = set(), []

        def visit(n):
            nonlocal bad
            if n in stack:
                print(f"layers: cycle between files in src/{d}: {' -> '.join(stack[stack.index(n):] + [n])}",
                      file=sys.stderr)
                bad = True
                return
            if n in seen:
                return
            seen.add(n)
            stack.append(n)
            for m in sorted(graph.get(n, ())):
                visit(m)
            stack.pop()

        for n in sorted(graph):
            visit(n)
    if "--graph" in sys.argv:
        for top in sorted(ALLOWED):
            print(f"{top:10} -> {', '.join(sorted(edges.get(top, {}))) or '(nothing)'}")
        for d, graph in sorted(sibling.items()):
            for n, ms in sorted(graph.items()):
                print(f"  src/{d}/{n}.rs -> {', '.join(sorted(ms))}")
    if bad:
        sys.exit(1)
    print("layers: the import graph matches ARCHITECTURE.md")


main()
