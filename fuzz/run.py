"""Coverage-guided fuzzing of one target with atheris (libFuzzer): ``make fuzz``.

    python fuzz/run.py TARGET [libFuzzer options] [CORPUS_DIR ...]

TARGET is a name of ``fuzz/targets.py``. A crash is any exception but the
target's documented ones; libFuzzer also stops on a hang (``-timeout``) or a
runaway allocation (``-rss_limit_mb``, ``-malloc_limit_mb``) and writes the
input that did it. New inputs that reach new code are added to the corpus
directory (``fuzz/corpus/TARGET``, kept in the repository).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).parent))

with atheris.instrument_imports(include=["longlink"]):
    import longlink.api.jsondepth
    import longlink.api.schemas
    import longlink.protocol.frames
    import longlink.protocol.messages
    import longlink.protocol.push
    import longlink.protocol.stream
    import longlink.protocol.websocket  # noqa: F401
import targets  # noqa: E402


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in targets.TARGETS:
        raise SystemExit(f"usage: run.py TARGET [options]; targets: {', '.join(targets.TARGETS)}")
    name = sys.argv.pop(1)
    target, allowed = targets.TARGETS[name]

    def one(data: bytes) -> None:
        try:
            target(data)
        except allowed:
            pass

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
