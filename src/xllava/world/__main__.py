"""`python -m xllava.world OUT_DIR [SEED]`: build the world with the default config."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from xllava.config import WorldConfig
from xllava.world.build import build_world


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    cfg = WorldConfig(seed=int(argv[1])) if len(argv) > 1 else WorldConfig()
    start = time.perf_counter()
    summary = build_world(Path(argv[0]), cfg)
    print(json.dumps(summary["counts"], ensure_ascii=False, indent=2))
    print(f"built in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
