#!/usr/bin/env python3
"""Fail when two source files of a crate import each other, directly or round a loop.

The project's rule: files do one job and there are no import cycles between them. An edge A -> B
is a `use crate::...`, `use super::...` or `use self::...` in A (or an inline `crate::x::y` path)
that names something defined in file B, and a plain (non-`pub`) `use child::...` in a `mod.rs` or
`lib.rs`. `pub use` re-exports of a facade (`lib.rs`, `mod.rs`) are not edges: a facade only
lists what its files define. Items of `#[cfg(test)]` modules are ignored (a test module's
`use super::*` is its own file).

    python3 tools/check_import_cycles.py        # exit 1 and the cycles, or exit 0
"""
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USE = re.compile(r"(\bpub(?:\([a-z]+\))?\s+)?\buse\s+((?:crate|super|self|[a-z_][a-z0-9_]*)(?:::[^;]+));", re.S)
INLINE = re.compile(r"\b(crate(?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def expand(tree):
    """`a::{b, c::{d, e}}` -> [`a::b`, `a::c::d`, `a::c::e`]."""
    i = tree.find("{")
    if i < 0:
        return [tree.split(" as ")[0]]
    head, body = tree[:i], tree[i + 1:tree.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in body:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = []
    for p in filter(None, (p.strip() for p in parts)):
        out += [head.rstrip(":")] if p == "self" else expand(head + p)
    return out


def module_of(src, f):
    rel = os.path.relpath(f, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def file_of(src, parts):
    """The file defining the longest module prefix of `parts` (the crate root if none)."""
    for n in range(len(parts), 0, -1):
        p = os.path.join(src, *parts[:n])
        for cand in (p + ".rs", os.path.join(p, "mod.rs")):
            if os.path.isfile(cand):
                return cand
    for root in ("lib.rs", "main.rs"):
        if os.path.isfile(os.path.join(src, root)):
            return os.path.join(src, root)
    return None


def edges(src, f):
    text = re.sub(r"//.*", "", open(f, encoding="utf-8").read()).split("#[cfg(test)]")[0]
    here = module_of(src, f)
    facade = os.path.basename(f) in ("mod.rs", "lib.rs", "main.rs")
    paths = []
    for m in USE.finditer(text):
        if m.group(1):
            continue  # a re-export
        paths += expand(re.sub(r"\s+", "", m.group(2)))
    paths += [m.group(1) for m in INLINE.finditer(text)]
    out = set()
    for p in paths:
        segs = p.split("::")
        if segs[0] == "crate":
            base, segs = [], segs[1:]
        elif segs[0] == "self":
            base, segs = (here if facade else here), segs[1:]
        elif segs[0] == "super":
            base = here[:-1] if not facade else here[:-1]
            segs = segs[1:]
            while segs and segs[0] == "super":
                base, segs = base[:-1], segs[1:]
        elif facade and os.path.exists(os.path.join(src, *here, segs[0] + ".rs")) or (
            facade and os.path.isdir(os.path.join(src, *here, segs[0]))
        ):
            base = here
        else:
            continue
        target = file_of(src, base + segs)
        if target and target != f:
            out.add(target)
    return out


def cycles(graph):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return found


def main():
    bad = 0
    for src in sorted(glob.glob(os.path.join(ROOT, "crates", "*", "src"))):
        files = glob.glob(os.path.join(src, "**", "*.rs"), recursive=True)
        graph = {f: edges(src, f) for f in files}
        for comp in cycles(graph):
            bad += 1
            crate = os.path.basename(os.path.dirname(src))
            print(f"{crate}: files import each other: {', '.join(sorted(os.path.relpath(x, src) for x in comp))}")
    if bad:
        sys.exit(1)
    print("no import cycles between files")


if __name__ == "__main__":
    main()
