#!/bin/bash
# Trains all four scale levels: the exact chain behind the shipped weights
# (see weights/README.md). Each run is resumable: rerun after an interruption.
# Usage: tools/train_all.sh [TRAIN_DIR]
set -e
D=${1:-../shared/data/train}
python tools/train_codec.py $D --scale 4 --steps 16000
# TC-16 from TC-4's weights at lr 2e-3 collapsed to a constant image: deeper levels
# train at lr 1e-3 with clipped gradients, TC-16 from scratch.
python tools/train_codec.py $D --scale 16 --steps 14000 --lr 1e-3 --clip-grad 0.5 --threads 1
python tools/train_codec.py $D --scale 64 --steps 8000 --lr 1e-3 --clip-grad 0.5 --threads 1 --init-from weights/tinycompress-s16.safetensors
python tools/train_codec.py $D --scale 256 --steps 5000 --lr 1e-3 --clip-grad 0.5 --threads 1 --init-from weights/tinycompress-s64.safetensors
