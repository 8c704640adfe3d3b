#!/bin/bash
# Trains all four scale levels, the exact chain behind the shipped weights
# (see weights/README.md). Resumable: rerun after an interruption.
# Usage: tools/train_all.sh [TRAIN_DIR]
set -e
D=${1:-../shared/data/train}
python tools/train_codec.py $D --scale 4 --steps 16000
python tools/train_codec.py $D --scale 16 --steps 14000 --lr 1e-3 --clip-grad 0.5
python tools/train_codec.py $D --scale 64 --steps 8000 --lr 1e-3 --clip-grad 0.5 --init-from weights/tinycompress-s16.safetensors
python tools/train_codec.py $D --scale 256 --steps 6000 --lr 1e-3 --clip-grad 0.5 --init-from weights/tinycompress-s64.safetensors
