#!/bin/bash
# Reruns every published figure that depends on the codec's weights, after tools/promote_weights.py
# has installed new ones: the commands the README and the model card cite, in one place, so that a
# promotion is one background run (about 1.5-2 h on 2 CPU cores, most of it the two rd sweeps) and not a
# hunt through the docs. The figures land in docs/results/; the prose that quotes them (README
# "Results", "Latent refinement", "Against JPEG...", "Batch mode"; weights/README.md tables) is then
# updated by hand from them.
#
# Usage: tools/rerun_figures.sh [DATA_DIR] [STEP ...]    (DATA_DIR: the folder holding kodak/ and train/)
# Steps (default: all, in this order): codec coders rd seed refined filters tiling large progressive backends batch
# Each step logs to runs/figures/STEP.log and leaves runs/figures/STEP.done; a rerun skips finished
# steps (delete the .done file to redo one).
#
# Not here, because they do not depend on the codec's weights: tools/eval_sr.py --skip-codec (TinyPSSR,
# Set5/Set14/BSD68), the TinyPSSR rows of tools/bench_backends.py, tools/fuzz_decoder.py. (The "seed"
# step reruns tools/seed_conventions.py whole, its JPEG sweep included, for its tinycodec rows.) Not here because
# they are training, not measurement: the UNet/SRUNet fine-tunes on the new codec's decodes
# (tools/train_filters.sh) that a large change of the codec may call for; check the "filters" step's
# gains first. The int8 graphs of UNet and SRUNet are recalibrated by themselves: their cache key holds
# the codec weights they are calibrated on.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-../shared/data}
shift || true
STEPS=${*:-codec coders rd seed refined filters tiling large progressive backends batch}
K=$D/kodak
mkdir -p runs/figures
# The rd step compares with JPEG XL through imagecodecs (the [compare] extra): check before the steps
# ahead of it have spent their minutes.
case " $STEPS " in *" rd "*)
    [ -e runs/figures/rd.done ] || python -c "import imagecodecs" 2>/dev/null \
        || { echo "error: the rd step needs imagecodecs: pip install 'tinycodec[compare]'" >&2; exit 2; } ;;
esac

run() {  # run STEP COMMAND...: once, logged
    local step=$1
    shift
    if [ -e "runs/figures/$step.done" ]; then
        echo "$step: done before (runs/figures/$step.done), skipped"
        return
    fi
    echo "$step: $*"
    # A failed step stops the run (set -e) and says so here, not only in its own log.
    "$@" > "runs/figures/$step.log" 2>&1 || { echo "$step failed: see runs/figures/$step.log" >&2; exit 1; }
    touch "runs/figures/$step.done"
}

for step in $STEPS; do
    case $step in
        codec) run codec python tools/bench_codec.py "$K" --json docs/results/bench_codec_kodak.json ;;
        coders) run coders python tools/compare_coders.py "$K" --json docs/results/coders_kodak.json ;;
        rd) run rd tinycodec rd "$K" --jobs 2 --codecs jpeg,webp,avif,jxl,tinycodec --out docs/results -f ;;
        refined)  # into its own folder: the plain rd step owns docs/results' CSV, plots and bd_table.md
            run refined tinycodec rd "$K" --codecs jpeg,tinycodec,tinycodec-refined --jobs 2 --out runs/rd_refined -f
            cp runs/rd_refined/rd_tinycodec-refined.json docs/results/
            cp runs/rd_refined/bd_table.md docs/results/bd_table_refined.md
            {
                echo "# tinycodec plain against refined (refine=30), Kodak 24 images: python tools/summarize_refine.py" \
                    "on the rd_per_image.csv of \`tinycodec rd ../shared/data/kodak --codecs jpeg,tinycodec,tinycodec-refined" \
                    "--jobs 2\` (enc ms: median, one PyTorch thread per worker, 2 workers)"
                python tools/summarize_refine.py runs/rd_refined/rd_per_image.csv
            } > docs/results/refine_kodak.txt ;;
        seed) run seed python tools/seed_conventions.py "$K" --rd-csv docs/results/rd_per_image.csv \
            --json docs/results/seed_conventions.json ;;
        filters) run filters python tools/eval_sr.py "$D" --scale 2 --skip-sr --threads 2 \
            --json docs/results/eval_codec_filters.json ;;
        tiling) run tiling python tools/bench_tiling.py "$K" --limit 1 --scales 4,16,64,256 \
            --json docs/results/tiling_kodak.json ;;
        large)
            [ -e /tmp/big.png ] || python tools/make_large_image.py /tmp/big.png
            run large python tools/bench_large_image.py /tmp/big.png --scales 16,4 --json docs/results/large_image.json ;;
        progressive) run progressive python tools/bench_progressive.py "$K" --scale 16 \
            --json docs/results/progressive_kodak.json ;;
        backends)  # the README's two commands: codec networks capped at 6 s, UNet/SRUNet 100 rounds each
            J="docs/results/bench_backends_cpu$(grep -q avx512_vnni /proc/cpuinfo && echo _avx512vnni).json"
            run backends python tools/bench_backends.py --kodak "$K/kodim23.png" --threads 2 --max-seconds 6 \
                --networks tinycompress-s4.encoder,tinycompress-s4.decoder,tinycompress-s16.encoder,tinycompress-s16.decoder,tinycompress-s64.encoder,tinycompress-s64.decoder,tinycompress-s256.encoder,tinycompress-s256.decoder \
                --json "$J" --update
            run backends-filters python tools/bench_backends.py --kodak "$K/kodim23.png" --threads 2 --min-runs 100 \
                --max-seconds 400 --networks unet,srunet --json "$J" --update ;;
        batch)
            rm -rf /tmp/kodak_tcz
            run batch tcenc "$K" -o /tmp/kodak_tcz/ -j 2 ;;
        *) echo "unknown step: $step" >&2; exit 2 ;;
    esac
done
echo "all steps done; logs in runs/figures/"
