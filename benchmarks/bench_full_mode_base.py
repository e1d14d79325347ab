"""Full-mode AL at wav2vec2-base size (``Wav2Vec2Config()`` defaults, 95 M parameters, random weights), the short
run: time only (random weights make its UA chance). ``bench_full_mode.py --base_size --seeds 0``, as a script of its
own so that ``make bench`` runs it beside the demo-corpus benchmark and saves ``bench_full_mode_base.json``.

    python benchmarks/bench_full_mode_base.py [--synth_utterances 160] [--seeds 0]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_full_mode  # noqa: E402


def main(argv=None) -> dict:
    return bench_full_mode.main(["--base_size", "--seeds", "0", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
