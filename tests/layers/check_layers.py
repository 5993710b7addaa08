#!/usr/bin/env python3
"""Checks every #include under src/ and include/fedkd/ against src/layers.txt.

    check_layers.py ROOT          check the tree at ROOT; exit 1 on a violation
    check_layers.py --self-test   build small trees that break each rule and
                                  check that every one of them is refused

A file of layer L may include:
  - "fedkd/M/..." (a public header) when M is L or a layer below L;
  - "L/..." (a private header of its own layer, resolved from src/);
  - a header beside it or a system header.
Every folder of src/ that holds project code and every folder of
include/fedkd/ must be a layer of the list; include/fedkd/ holds no header
outside a layer folder.
"""
import os
import re
import sys
import tempfile

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def read_layers(root):
    path = os.path.join(root, 'src', 'layers.txt')
    layers = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith('#'):
                layers.append(line)
    return layers


def source_files(root):
    for top in ('src', os.path.join('include', 'fedkd')):
        for folder, _, names in os.walk(os.path.join(root, top)):
            for name in sorted(names):
                if name.endswith(('.c', '.h')):
                    yield os.path.relpath(os.path.join(folder, name), root)


def layer_of(path):
    parts = path.split(os.sep)
    if parts[0] == 'src':
        return parts[1] if len(parts) > 2 else None
    return parts[2] if len(parts) > 3 else None  # include/fedkd/<layer>/x.h


def check(root):
    layers = read_layers(root)
    rank = {name: i for i, name in enumerate(layers)}
    problems = []
    for path in source_files(root):
        with open(os.path.join(root, path), errors='replace') as f:
            text = f.read()
        includes = INCLUDE.findall(text)
        own = layer_of(path)
        if own not in rank:
            if includes or path.startswith('include'):
                problems.append(f'{path}: not in a layer folder; the layers are {", ".join(layers)} '
                                f'(src/layers.txt)')
            continue
        for target in includes:
            parts = target.split('/')
            if parts[0] == 'fedkd':
                other = parts[1] if len(parts) > 2 else None
                if other not in rank:
                    problems.append(f'{path}: includes "{target}", a public header outside the '
                                    f'layer folders of include/fedkd/')
                    continue
            elif parts[0] in rank and len(parts) > 1:
                other = parts[0]
                if other != own:
                    problems.append(f'{path}: includes "{target}", a private header of layer '
                                    f'{other}; use its public headers in include/fedkd/{other}/')
                    continue
            else:
                continue  # beside the file
            if rank[other] > rank[own]:
                problems.append(f'{path}: layer {own} includes "{target}" of layer {other}, '
                                f'which is above it (src/layers.txt)')
    return problems


def self_test():
    """Each case is a tree that breaks one rule; every one must be refused,
    and the clean tree must pass."""
    layers = 'core\nnn\nfl\n'
    cases = {
        'clean': {'src/nn/a.c': '#include "fedkd/core/x.h"\n#include "nn/p.h"\n#include "b.h"\n'},
        'upward public': {'src/nn/a.c': '#include "fedkd/fl/fl.h"\n'},
        'upward header': {'include/fedkd/core/x.h': '#include "fedkd/nn/nn.h"\n'},
        'foreign private': {'src/fl/a.c': '#include "nn/nn_private.h"\n'},
        'flat public': {'src/fl/a.c': '#include "fedkd/fl.h"\n'},
        'unknown folder': {'src/extra/a.c': '#include "fedkd/core/x.h"\n'},
    }
    failures = 0
    for name, files in cases.items():
        with tempfile.TemporaryDirectory() as root:
            os.makedirs(os.path.join(root, 'src'))
            with open(os.path.join(root, 'src', 'layers.txt'), 'w') as f:
                f.write(layers)
            for rel, text in files.items():
                os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
                with open(os.path.join(root, rel), 'w') as f:
                    f.write(text)
            found = check(root)
            if (name == 'clean') != (not found):
                print(f'FAIL: self-test case "{name}": {found or "no problem found"}')
                failures += 1
    print(f'self-test: {len(cases) - failures} of {len(cases)} cases as expected')
    return 1 if failures else 0


def main():
    if len(sys.argv) == 2 and sys.argv[1] == '--self-test':
        return self_test()
    if len(sys.argv) != 2:
        print('usage: check_layers.py ROOT | --self-test', file=sys.stderr)
        return 2
    problems = check(sys.argv[1])
    for p in problems:
        print(p)
    files = sum(1 for _ in source_files(sys.argv[1]))
    print(f'{files} files checked against src/layers.txt: {len(problems)} problem(s)')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
