"""scripts/mutants.py stays usable: every mutation's anchor matches the code exactly as often
as declared, its replacement changes the code and still compiles, and the tests it names
exist. (Running the mutations themselves takes minutes: `scripts/mutants.py` does that.)"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_mutants():
    spec = importlib.util.spec_from_file_location(
        "gifsent_mutants", REPO / "scripts" / "mutants.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


mutants = load_mutants()


@pytest.mark.parametrize("m", mutants.MUTATIONS, ids=lambda m: m.name)
def test_anchor_matches_and_mutant_compiles(m):
    text = (REPO / m.file).read_text(encoding="utf-8")
    mutated, why = mutants.locate(m, text)
    assert mutated is not None, why
    compile(mutated, m.file, "exec")
    for t in m.tests:
        path, _, name = t.partition("::")
        assert (REPO / path).is_file(), f"{m.name}: test file {path} is gone"
        if name:
            assert re.search(rf"^def {re.escape(name)}\(", (REPO / path).read_text(), re.M), (
                f"{m.name}: no test {name} in {path}"
            )


def test_names_are_unique_and_a_missing_anchor_is_reported():
    names = [m.name for m in mutants.MUTATIONS]
    assert len(names) == len(set(names))
    m = mutants.MUTATIONS[0]
    mutated, why = mutants.locate(m, "nothing to see here\n")
    assert mutated is None and "matches 0 time(s)" in why and "update the mutation" in why
