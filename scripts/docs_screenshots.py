"""Refresh the README's screenshots from the browser tests' artifacts (run `make test PYTEST_ARGS=tests/browser`
first). Scaled to 1200 px wide and reduced to 128 colours, so the repository stays small."""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHOTS = [
    "approvals-queue.png",
    "approvals-queue-dark.png",
    "evidence-detail.png",
    "approved.png",
    "viewer-detail.png",
    "models.png",
    "lineage.png",
    "audit-filtered.png",
]


def main() -> int:
    src = ROOT / "tests" / "artifacts" / "browser"
    out = ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    missing = [n for n in SHOTS if not (src / n).is_file()]
    if missing:
        print(f"missing in {src}: {missing}; run the browser tests first", file=sys.stderr)
        return 1
    for name in SHOTS:
        im = Image.open(src / name).convert("RGB")
        if im.width > 1200:
            im = im.resize((1200, round(im.height * 1200 / im.width)), Image.Resampling.LANCZOS)
        im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out / name, optimize=True)
        print(f"{out / name}: {(out / name).stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
