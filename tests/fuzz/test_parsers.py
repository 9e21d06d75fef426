"""Every parser of untrusted bytes, fuzzed (issue 14, item 7): only documented errors come out.

Two ways: hypothesis here (random and mutated-seed inputs, every
``make test``), and a short run of the coverage-guided fuzzer (atheris) on
each target from the corpus kept in ``fuzz/corpus/`` (the long run is
``make fuzz``). The targets are ``fuzz/targets.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = Path(__file__).parent.parent.parent / "fuzz"
sys.path.insert(0, str(FUZZ))
import targets  # noqa: E402

NAMES = sorted(targets.TARGETS)


def seeds(name: str) -> list[bytes]:
    return [path.read_bytes() for path in sorted((FUZZ / "corpus" / name).iterdir())]


@st.composite
def mutated(draw: st.DrawFn, name: str) -> bytes:
    """A seed of ``name`` with a few bytes changed, cut or inserted."""
    data = bytearray(draw(st.sampled_from(seeds(name))))
    for _ in range(draw(st.integers(0, 6))):
        action = draw(st.integers(0, 2))
        at = draw(st.integers(0, len(data)))
        if action == 0 and data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif action == 1:
            del data[at : at + draw(st.integers(1, 16))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_only_documented_errors(name: str, data: st.DataObject) -> None:
    raw = data.draw(st.one_of(st.binary(max_size=4096), mutated(name)))
    targets.check(name, raw)


@pytest.mark.parametrize("name", NAMES)
def test_the_corpus_passes(name: str) -> None:
    for seed in seeds(name):
        targets.check(name, seed)


@pytest.mark.parametrize("name", NAMES)
def test_a_short_coverage_guided_run(name: str, tmp_path: Path) -> None:
    """2,000 atheris inputs per target (the 1,000,000-input run is ``make fuzz``)."""
    pytest.importorskip("atheris") if os.environ.get("CI") != "true" else None
    result = subprocess.run(
        [
            sys.executable, str(FUZZ / "run.py"), name,
            "-runs=2000", "-max_len=4096", "-timeout=10", "-rss_limit_mb=1024",
            str(tmp_path), str(FUZZ / "corpus" / name),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done 2000 runs" in result.stderr
