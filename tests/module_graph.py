#!/usr/bin/env python3
"""Fails when the top-level modules of src/ import each other in a cycle.

Usage: tests/module_graph.py [--print] [SRC_DIR]   (default: the repository's src/)

Each top-level module (src/<name>.rs or src/<name>/**) is a node; every `crate::<name>` path in its
code (comments and string literals ignored; grouped `use crate::{a, b::c}` forms included) is an
edge. The graph must be a DAG: otherwise each cycle is printed with the file and line of every
edge in it, and the exit status is 1. `--print` also lists every edge.
"""

import re
import sys
from pathlib import Path

MODULE_DECLARATION = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", re.MULTILINE)
CRATE_PATH = re.compile(r"\bcrate\s*::\s*(\{|[a-z_][a-z0-9_]*)")


def strip_comments_and_strings(text):
    """The code of `text` with comments, string and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end == -1 else end
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    out.append("\n" if text[i] == "\n" else "")
                    i += 1
        elif (raw := re.match(r'b?r(#*)"', text[i:])) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            closing = '"' + raw.group(1)
            end = text.find(closing, i + raw.end())
            end = n if end == -1 else end + len(closing)
            out.append("\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\n":
                    out.append("\n")
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}'), or a lifetime ('a), which stays.
            if text.startswith("\\", i + 1):
                end = text.find("'", i + 2)
                i = n if end == -1 else end + 1
            elif i + 2 < n and text[i + 2] == "'":
                i += 3
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def grouped_names(code, start):
    """The first path segment of each item of the `{...}` group opening at `start`."""
    names, depth, item_start = [], 0, start + 1
    for i in range(start, len(code)):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                names.append(code[item_start:i])
                break
        elif code[i] == "," and depth == 1:
            names.append(code[item_start:i])
            item_start = i + 1
    return [m.group(0) for item in names if (m := re.match(r"[a-z_][a-z0-9_]*", item.strip()))]


def module_of(path, src):
    """The top-level module a file belongs to, or None for the crate root files."""
    parts = path.relative_to(src).parts
    if len(parts) == 1:
        name = parts[0].removesuffix(".rs")
        return None if name in ("lib", "main") else name
    return parts[0]


def collect_edges(src):
    """{(from, to): [(file, line), ...]} over the top-level modules declared in lib.rs."""
    modules = set(MODULE_DECLARATION.findall((src / "lib.rs").read_text()))
    edges = {}
    for path in sorted(src.rglob("*.rs")):
        source = module_of(path, src)
        if source not in modules:
            continue
        code = strip_comments_and_strings(path.read_text())
        for match in CRATE_PATH.finditer(code):
            line = code.count("\n", 0, match.start()) + 1
            head = match.group(1)
            targets = grouped_names(code, match.start(1)) if head == "{" else [head]
            for target in targets:
                if target in modules and target != source:
                    edges.setdefault((source, target), []).append((path, line))
    return modules, edges


def cycles(modules, edges):
    """The strongly connected components with more than one module (Tarjan)."""
    graph = {module: sorted(t for (s, t) in edges if s == module) for module in modules}
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for module in sorted(modules):
        if module not in index:
            visit(module)
    return graph, components


def one_cycle(graph, component):
    """A shortest cycle through the component's first module, as a list of modules."""
    members, start = set(component), component[0]
    paths, seen = [[start]], {start}
    while paths:
        next_paths = []
        for path in paths:
            for successor in graph[path[-1]]:
                if successor == start:
                    return path + [start]
                if successor in members and successor not in seen:
                    seen.add(successor)
                    next_paths.append(path + [successor])
        paths = next_paths
    return [start]


def main(argv):
    show_all = "--print" in argv
    rest = [arg for arg in argv if arg != "--print"]
    src = Path(rest[0]) if rest else Path(__file__).resolve().parent.parent / "src"
    modules, edges = collect_edges(src)
    graph, components = cycles(modules, edges)
    root = src.parent

    def where(edge):
        file, line = edges[edge][0]
        return f"{file.relative_to(root)}:{line}"

    if show_all:
        for (source, target) in sorted(edges):
            print(f"{source} -> {target}  ({where((source, target))})")
    if not components:
        print(f"module graph: {len(modules)} top-level modules, {len(edges)} edges, no cycle")
        return 0
    for component in components:
        cycle = one_cycle(graph, component)
        print(f"module cycle group {{{', '.join(component)}}}; for example:", file=sys.stderr)
        for source, target in zip(cycle, cycle[1:]):
            print(f"  {source} -> {target}  ({where((source, target))})", file=sys.stderr)
    print("module graph: the top-level modules of src/ must not import each other in a cycle", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
