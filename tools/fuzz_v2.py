"""Fuzz the decoders of format version 2 (the shallow and pyramid families): mutations of valid files.

    python tools/fuzz_v2.py --seconds 600 --seed 1 --out fuzz-out/v2

Every mutant is resealed (header CRC and grid CRCs recomputed) so that it reaches the parser, the limits, the
entropy decoder and the networks, not just the checksums. A finding is any exception other than
TinyCodecError, an input that takes longer than ``--hang-seconds``, or resident memory above ``--max-mb``.
Targets: ``header`` (fields, names, lengths, extension records), ``payload`` (segment bytes, lengths, swaps),
``bomb`` (large declared sizes with tiny payloads), ``bytes`` (flips, truncations, insertions anywhere).
Reproducers of findings go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import signal
import struct
import sys
import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tinycodec  # noqa: E402
from tinycodec.errors import TinyCodecError  # noqa: E402
from tinycodec import container_v2 as container  # noqa: E402

TARGETS = ("header", "payload", "bomb", "bytes")


@dataclass
class Parsed:
    """A version-2 file split into its parts, rebuilt by :meth:`pack` with fresh checksums."""

    fixed: bytearray  # bytes [0, 24)
    name: bytes
    weights_id: bytes
    extensions: list[tuple[int, bytes]]
    segments: list[bytes]  # the weights segment first, for an overfit file (flag 0x01)
    lengths: list[int] | None = None  # None: the segments' own lengths

    @classmethod
    def parse(cls, data: bytes) -> Parsed:
        header, table, pos = container.read_header(data)
        segs, p = [], pos
        for _, n in table:
            segs.append(data[p : p + n])
            p += n
        return cls(bytearray(data[:24]), header.model.encode(), header.weights_id, list(header.extensions), segs)

    def pack(self) -> bytes:
        body = bytearray(self.fixed)
        body += bytes([len(self.name) & 0xFF]) + self.name + self.weights_id + bytes([len(self.extensions) & 0xFF])
        for t, d in self.extensions:
            body += struct.pack("<BH", t & 0xFF, len(d) & 0xFFFF) + d
        lengths = self.lengths or [len(s) for s in self.segments]
        for seg, n in zip(self.segments, lengths):
            body += struct.pack("<I", zlib.crc32(seg)) + container._varint(n)
        payload = b"".join(self.segments)
        body += struct.pack("<I", len(payload) & 0xFFFFFFFF)
        struct.pack_into("<H", body, 10, (len(body) + 4) & 0xFFFF)
        body += struct.pack("<I", zlib.crc32(body))
        return bytes(body) + payload


def seed_files(rng: np.random.Generator) -> list[bytes]:
    out = []
    for family, (h, w), q, grey, effort in [
            ("pyramid", (16, 16), 0, False, "fast"), ("pyramid", (48, 80), 50, False, "fast"),
            ("pyramid", (70, 33), 90, True, "fast"), ("pyramid", (64, 64), 100, False, "fast"),
            ("pyramid", (40, 40), 60, False, "overfit"), ("shallow", (16, 16), 0, False, "fast"),
            ("shallow", (48, 80), 50, False, "fast"), ("shallow", (70, 130), 90, True, "fast"),
            ("shallow", (64, 64), 100, False, "refine")]:
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([(x * 255 // max(1, w - 1)), (y * 255 // max(1, h - 1)), ((x + y) * 3) % 256], -1)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        out.append(tinycodec.encode(img[..., 0] if grey else img, quality=q, effort=effort, refine=3, family=family))
    return out


def mutate(target: str, base: bytes, rng: random.Random) -> bytes:
    p = Parsed.parse(base)
    if target == "header":
        choice = rng.randrange(7)
        if choice == 0:
            off, size = rng.choice([(12, 4), (16, 4), (20, 1), (21, 1), (22, 1), (22, 1), (23, 1), (9, 1), (8, 1)])
            val = rng.choice([0, 1, 2, 3, 7, 100, 101, 255, 2**16, 2**20, 2**20 + 1, 2**32 - 1, rng.randrange(2**32)])
            p.fixed[off : off + size] = (val % (1 << (8 * size))).to_bytes(size, "little")
        elif choice == 1:
            p.name = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 5, 10, 64, 65, 200])))
        elif choice == 2:
            p.weights_id = bytes(rng.randrange(256) for _ in range(8))
        elif choice == 3:
            p.extensions.append((rng.randrange(256), bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 9, 300])))))
        elif choice == 4:
            p.lengths = [max(0, len(s) + rng.choice([-8, -4, -1, 0, 1, 4, 8, 1 << 20])) for s in p.segments]
        elif choice == 5:
            del p.segments[rng.randrange(len(p.segments))]
        else:
            p.segments.append(b"\0" * 4 * rng.randrange(1, 8))
    elif target == "payload":
        i = rng.randrange(len(p.segments))
        choice = rng.randrange(4)
        if choice == 0:
            seg = bytearray(p.segments[i])
            for _ in range(rng.randrange(1, 8)):
                seg[rng.randrange(len(seg))] ^= 1 << rng.randrange(8)
            p.segments[i] = bytes(seg)
        elif choice == 1:
            n = 4 * rng.randrange(1, max(2, len(p.segments[i]) // 2))
            p.segments[i] = bytes(rng.randrange(256) for _ in range(n))
        elif choice == 2:
            j = rng.randrange(len(p.segments))
            p.segments[i], p.segments[j] = p.segments[j], p.segments[i]
        else:
            p.segments[i] = p.segments[i] + bytes(4 * rng.randrange(1, 4))
    elif target == "bomb":
        side = rng.choice([1000, 4000, 13377, 2**16, 2**20])
        p.fixed[12:16] = side.to_bytes(4, "little")
        p.fixed[16:20] = rng.choice([side, 1, 64, 7]).to_bytes(4, "little")
        if rng.random() < 0.5:
            p.segments = [b"\0" * 4 * rng.randrange(1, 4) for _ in p.segments]
    data = p.pack()
    if target == "bytes":
        data = bytearray(base)
        kind = rng.randrange(3)
        if kind == 0:
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == 1:
            del data[rng.randrange(len(data)) :]
        else:
            at = rng.randrange(len(data))
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
        data = bytes(data)
    return data


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


@dataclass
class Result:
    inputs: int = 0
    seconds: float = 0.0
    outcomes: dict = field(default_factory=lambda: {"decoded": 0, "rejected": 0})
    per_target: dict = field(default_factory=dict)
    findings: list = field(default_factory=list)
    peak_mb: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.findings


def run_campaign(seed: int, max_inputs: int | None = None, max_seconds: float = 60, hang_seconds: float = 10,
                 max_mb: float = 3000, out_dir: Path | None = None) -> Result:
    rng = random.Random(seed)
    seeds = seed_files(np.random.default_rng(seed))
    result = Result(per_target={t: 0 for t in TARGETS})
    signal.signal(signal.SIGALRM, _alarm)
    start = time.perf_counter()
    while time.perf_counter() - start < max_seconds and (max_inputs is None or result.inputs < max_inputs):
        target = TARGETS[result.inputs % len(TARGETS)]
        data = mutate(target, rng.choice(seeds), rng)
        partial = rng.random() < 0.3
        signal.setitimer(signal.ITIMER_REAL, hang_seconds)
        try:
            tinycodec.decode(data, partial=partial)
            result.outcomes["decoded"] += 1
        except TinyCodecError:
            result.outcomes["rejected"] += 1
        except Hang:
            result.findings.append({"kind": "hang", "target": target, "data": data.hex()})
        except Exception as exc:  # noqa: BLE001 - everything else is a finding
            result.findings.append({"kind": "crash", "target": target, "error": repr(exc),
                                    "trace": traceback.format_exc(limit=4), "data": data.hex()})
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        result.inputs += 1
        result.per_target[target] += 1
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result.peak_mb = max(result.peak_mb, rss)
        if rss > max_mb:
            result.findings.append({"kind": "memory", "target": target, "mb": rss, "data": data.hex()})
            break
    result.seconds = time.perf_counter() - start
    if out_dir and result.findings:
        out_dir.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(result.findings):
            (out_dir / f"finding-{i}.json").write_text(json.dumps(f))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--inputs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("fuzz-out/pyramid"))
    args = ap.parse_args()
    r = run_campaign(args.seed, args.inputs, args.seconds, out_dir=args.out)
    print(json.dumps({"inputs": r.inputs, "seconds": round(r.seconds, 1), "inputs_per_second": round(r.inputs / r.seconds, 1),
                      "outcomes": r.outcomes, "per_target": r.per_target, "findings": len(r.findings),
                      "peak_rss_mb": round(r.peak_mb)}))
    sys.exit(1 if r.findings else 0)


if __name__ == "__main__":
    main()
