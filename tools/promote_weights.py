#!/usr/bin/env python3
"""Install a trained weights file as the shipped one: copy it into weights/ and register its hash.

Training runs that continue a shipped model write to a folder of their own
(``--out runs/...``) so that the shipped file stays in place until the new one
has been compared with it; this makes the new one current:

    python tools/promote_weights.py runs/x/tinycompress-s64.safetensors

The file's metadata (model id, the command that made it, steps, figures) is
kept; ``--set KEY=VALUE`` adds to or replaces it (e.g. the earlier schedules
of a chain of continued runs). Pre-1.0, the model's registry entry is replaced,
so ``.tcz`` files made with the old weights stop decoding (with a message
naming the model); a frozen model gets a new version instead (``zoo.save_tensors``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from safetensors import safe_open  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from tinycodec.zoo import save_tensors  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="a .safetensors file written by tools/train_codec.py or train_filters.py")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="metadata to add or replace (repeatable)")
    # This checkout's weights/, not the imported package's: with an editable install of another checkout,
    # `tinycodec.weights` resolves there, and promoting from a second clone overwrote the first's weights.
    parser.add_argument("--to", type=Path, default=ROOT / "weights", help="weights folder (default: this checkout's)")
    args = parser.parse_args()

    with safe_open(str(args.file), "np") as f:
        metadata = dict(f.metadata() or {})
    if "model" not in metadata:
        sys.exit(f"error: {args.file} has no 'model' in its metadata; not a tinycodec training output")
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            sys.exit(f"error: --set takes KEY=VALUE, not {item!r}")
        metadata[key] = value
    metadata.pop("sha256", None)  # recomputed from the tensors
    path = save_tensors(load_file(str(args.file)), args.to / f"{metadata['model']}.safetensors", metadata)
    print(f"wrote {path} ({metadata['model']})")


if __name__ == "__main__":
    main()
