#!/usr/bin/env python3
"""Fails if a locked dependency needs a newer Rust than the workspace member that uses it declares.

Reads `cargo metadata --format-version 1 --locked` on stdin. For every workspace member, walks its
dependency graph as Cargo.lock resolved it: the member's own normal, build and dev dependencies,
then the normal and build dependencies of each of those, transitively, on every target platform
(a Windows user builds the Windows-only crates). Edges behind `cfg(loom)` are skipped: loom is the
repository's model checker, built only by `.ci/run` with `RUSTFLAGS="--cfg loom"`, never by a user.

Each dependency's `rust-version` must be <= the member's. A dependency that declares none passes
(nothing can be checked); the report counts them.
"""

import json
import sys

# Dependency edges behind these cfgs are built by this repository's CI only.
INTERNAL_CFGS = ("loom", "fuzzing")


def version_key(version):
    parts = [int(p) for p in version.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def internal_only(kinds):
    """True if every way this edge is declared is behind one of our internal cfgs."""
    return all(
        k.get("target") and any(cfg in k["target"] for cfg in INTERNAL_CFGS) for k in kinds
    )


def main():
    metadata = json.load(sys.stdin)
    packages = {p["id"]: p for p in metadata["packages"]}
    nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}
    failures = []
    for member in metadata["workspace_members"]:
        package = packages[member]
        declared = package.get("rust_version")
        if not declared:
            failures.append(f"{package['name']} declares no rust-version")
            continue
        seen = set()
        undeclared = 0
        stack = [(member, True)]
        while stack:
            node_id, is_member = stack.pop()
            for dep in nodes[node_id]["deps"]:
                kinds = [k for k in dep["dep_kinds"] if is_member or k.get("kind") != "dev"]
                if not kinds or internal_only(kinds):
                    continue
                if dep["pkg"] in seen:
                    continue
                seen.add(dep["pkg"])
                dependency = packages[dep["pkg"]]
                needs = dependency.get("rust_version")
                if dependency["id"] in metadata["workspace_members"]:
                    pass  # Checked as a member of its own.
                elif needs is None:
                    undeclared += 1
                elif version_key(needs) > version_key(declared):
                    failures.append(
                        f"{package['name']} declares rust-version {declared}, but its locked "
                        f"dependency {dependency['name']} {dependency['version']} needs {needs}"
                    )
                stack.append((dep["pkg"], False))
        print(
            f"{package['name']}: rust-version {declared}; {len(seen)} locked dependencies checked"
            f" ({undeclared} declare no rust-version)"
        )
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    if failures:
        print(
            "Raise the rust-version in Cargo.toml to the true minimum, or lock an older version "
            "of the dependency (`cargo update -p NAME --precise VERSION`).",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
