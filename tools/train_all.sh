#!/bin/bash
# Trains all four scale levels: the commands behind the shipped weights
# (see weights/README.md). Each run is resumable: rerun after an interruption.
# Usage: tools/train_all.sh [TRAIN_DIR]
set -e
D=${1:-../shared/data/train}
python tools/train_codec.py $D --scale 4 --steps 16000
# Deeper levels start from a resampler (models.init_as_resampler): from random
# weights or from the level below they sat at, or collapsed to, a grey image.
python tools/train_codec.py $D --scale 16 --steps 6000 --lr 3e-4 --clip-grad 0.5 --threads 1 --init-resampler
python tools/train_codec.py $D --scale 64 --steps 6000 --lr 3e-4 --clip-grad 0.5 --threads 1 --init-resampler
python tools/train_codec.py $D --scale 256 --steps 4000 --lr 3e-4 --clip-grad 0.5 --threads 1 --init-resampler
