#!/usr/bin/env python3
"""Checks that the include graph has no upward edge (docs/architecture.md
"Layers"), run by `make test`.

Every folder of src/ sits on a layer; every public header of include/keel/
belongs to the folder that implements it, so it sits on that folder's
layer. A file may include public headers of its own layer or below, and
private headers (anything not under include/) of its own folder only: a
module's <name>_int.h is for that module's files. Public headers follow
the same rule with their own layer. Tests and fuzzers may include what they
test, so only src/ and include/ are checked.

Usage: check_includes.py [REPO_ROOT]      exit 0 when clean, 1 with one line per violation
"""

import os
import re
import sys

# Lowest first. Folders on one layer may include each other's public headers.
LAYERS = {
    "core": 0, "obs": 0,          # log and metrics are used by the core itself
    "runtime": 1,                 # loops, posts, tasks
    "db": 2, "net": 2,
    "cache": 3, "events": 3, "jobs": 3,
    "http": 4,
    "mw": 5,
    "modules": 6,                 # every module; they reach each other by public headers
    "cmd": 7,
    "main": 8,                    # src/main.c
}

# include/keel/<name>.h -> the folder that implements it.
OWNERS = {
    "arena": "core", "buf": "core", "core": "core", "json": "core", "config": "core",
    "uuid": "core", "lane": "core", "breaker": "core", "ratelimit": "core",
    "clientip": "core", "log": "obs", "metrics": "obs", "health": "obs",
    "runtime": "runtime", "task": "runtime", "net": "net",
    "db": "db", "migrate": "db",
    "redis": "cache", "ratelimit_redis": "cache", "cache": "cache", "l1cache": "cache", "events": "events", "jobs": "jobs",
    "http": "http", "router": "http", "pipeline": "http", "problem": "http",
    "schema": "http", "server": "http",
    "module": "modules", "auth": "modules", "jwt": "modules", "password": "modules",
    "catalog": "modules",
    "cmd": "core", "commands": "cmd",
}

GENERATED = {"keel_version.h", "keel_commit.h"}
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def folder_of(rel):
    """The folder a src/ path belongs to: 'db', 'modules/auth', 'main'."""
    parts = rel.split("/")
    if len(parts) == 1:
        return "main"
    if parts[0] == "modules" and len(parts) > 2:
        return "modules/" + parts[1]
    return parts[0]


def layer_of(folder):
    return LAYERS.get(folder.split("/")[0])


def check_file(root, path, problems):
    rel = os.path.relpath(path, root)
    if rel.startswith("include/keel/"):
        name = os.path.basename(rel)[:-2]
        owner = OWNERS.get(name)
        if owner is None:
            problems.append("%s: no layer for this public header (add it to OWNERS)" % rel)
            return
        here, here_folder = layer_of(owner), owner
    else:
        here_folder = folder_of(os.path.relpath(path, os.path.join(root, "src")))
        here = layer_of(here_folder)
        if here is None:
            problems.append("%s: folder %s has no layer (add it to LAYERS)" % (rel, here_folder))
            return
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for inc in INCLUDE_RE.findall(text):
        if inc in GENERATED:
            continue
        if inc.startswith("keel/"):
            owner = OWNERS.get(os.path.basename(inc)[:-2])
            if owner is None:
                problems.append("%s: includes %s, which has no layer" % (rel, inc))
            elif layer_of(owner) > here:
                problems.append("%s (%s, layer %d) includes %s (%s, layer %d): upward"
                                % (rel, here_folder, here, inc, owner, layer_of(owner)))
            continue
        if rel.startswith("include/"):
            problems.append("%s: a public header includes the private %s" % (rel, inc))
            continue
        target = inc if "/" in inc else os.path.join(os.path.dirname(
            os.path.relpath(path, os.path.join(root, "src"))), inc)
        target_folder = folder_of(os.path.normpath(target))
        if target_folder != here_folder:
            problems.append("%s (%s) includes %s, private to %s" % (rel, here_folder, inc,
                                                                   target_folder))


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    problems = []
    for top in ("src", "include/keel"):
        for d, _, files in os.walk(os.path.join(root, top)):
            for fn in sorted(files):
                if fn.endswith((".c", ".h")):
                    check_file(root, os.path.join(d, fn), problems)
    for p in sorted(problems):
        print("include graph: " + p)
    if problems:
        print("include graph: %d upward or private edge(s); see docs/architecture.md" % len(problems))
        return 1
    print("include graph: clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
