#!/usr/bin/env bash
# A ResNeXt-101 study-path model on demo data (Hara-format checkpoint, random weights: the
# Kinetics file cannot be downloaded here), built once under a git-ignored cache folder,
# then the quiet-machine measurements issue 25 asks of it.
#
#   benchmarks/bench_study_model.sh            # build if missing (~15-25 min on 2 quiet cores), then measure
#   benchmarks/bench_study_model.sh build      # only build (prints each step's seconds)
#   benchmarks/bench_study_model.sh measure    # only measure (needs the build)
#
# Settings (environment): STUDY_CACHE (default benchmarks/.cache/study), STUDY_GIFS (240 demo
# GIFs), STUDY_SEGMENTS (2 segments of 16 frames at 112x112, the encoder's own crop: the
# study path has no smaller input for ResNeXt-101; fewer GIFs and segments keep it short),
# STUDY_SKIP_MODEL=1 (measure: only the cold/warm CLI runs), STUDY_EVAL (48 held-out GIFs judge precisions), STUDY_CALIB (8 calibration GIFs: each int8
# recipe calibrates ResNeXt-101 in minutes; the memory bound at the default 16 is bench_export's).
# Built: $STUDY_CACHE/models/r101-rnn.onnx (fp32, with recorded bf16 + every int8 recipe's
# check) and r101-rnn-int8.onnx (the first int8 recipe that holds the gate).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
CACHE=${STUDY_CACHE:-benchmarks/.cache/study}
GIFS=${STUDY_GIFS:-240}
SEGMENTS=${STUDY_SEGMENTS:-2}
EVAL=${STUDY_EVAL:-48}
CALIB=${STUDY_CALIB:-8}
case $CACHE in /*) ;; *) CACHE=$PWD/$CACHE ;; esac  # STUDY_CACHE may be absolute
export GIFSENT_HOME=$CACHE/home
mkdir -p "$CACHE/models"
FP32=$CACHE/models/r101-rnn.onnx
INT8=$CACHE/models/r101-rnn-int8.onnx
WEIGHTS=$CACHE/r101-random-hara.pth

step() {  # step NAME command...: run, print its wall time
    local t0=$SECONDS
    echo "== $1" >&2
    shift
    nice -n 10 "$@"
    echo "== done in $((SECONDS - t0)) s (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
}

build() {
    local t0=$SECONDS
    [ -f "$WEIGHTS" ] || step "random Hara-format ResNeXt-101 weights" \
        "$PY" benchmarks/random_hara_weights.py "$WEIGHTS"
    [ -f "$CACHE/data/truth.csv" ] || step "demo data ($GIFS GIFs)" \
        "$BIN/gifsent-train" demo-data "$CACHE/data" --n-gifs "$GIFS"
    if [ ! -f "$GIFSENT_HOME/runs/LATEST" ]; then
        step "study path: scores, ResNeXt-101 features ($SEGMENTS segments), search, report" \
            "$BIN/gifsent-train" --preset study --data "$CACHE/data" --truth "$CACHE/data/truth.csv" \
            --encoder-weights "$WEIGHTS" --segments "$SEGMENTS" --trials 2 --seeds 1 \
            --max-epochs 60
    fi
    [ -f "$FP32" ] || step "fp32 export, recording bf16 and every int8 recipe vs fp32" \
        "$BIN/gifsent-export" --model rnn -o "$FP32" --measure bf16 --measure int8 \
        --eval-count "$EVAL" --calibration-count "$CALIB"
    [ -f "$INT8" ] || step "int8 export (auto: the first recipe that holds the gate)" \
        "$BIN/gifsent-export" --model rnn -o "$INT8" --precision int8 \
        --eval-count "$EVAL" --calibration-count "$CALIB"
    echo "built in $((SECONDS - t0)) s: $FP32 $INT8" >&2
    "$BIN/gifsent-infer" info "$FP32" | grep -iE "precision|bf16|int8|spearman" || true
}

measure() {
    [ -f "$FP32" ] && [ -f "$INT8" ] || { echo "no model under $CACHE: run $0 build" >&2; exit 2; }
    # default path (auto/auto) and int8 vs onnxruntime fp32, model alone (targets 2.5x, 5x)
    [ "${STUDY_SKIP_MODEL:-}" ] || "$PY" benchmarks/bench_default_path.py "$FP32" --int8 "$INT8"
    # one-GIF CLI run, cold vs warm compiled-model cache (target: warm >= 40% less wall)
    local gifs cw
    gifs=("$CACHE"/data/gifs/*.gif)
    local gif=${gifs[0]}
    cw=$(mktemp -d)
    for round in 1 2; do
        rm -rf "$cw/home"
        for p in cold warm; do
            rm -rf "$cw/out.csv"*  # a finished output file would be resumed, not rescored
            /usr/bin/time -f "round $round $p %e s wall (load $(cut -d' ' -f1 /proc/loadavg))" \
                env GIFSENT_HOME="$cw/home" "$BIN/gifsent-infer" score "$gif" --model "$FP32" \
                -o "$cw/out.csv" --quiet
        done
    done
    rm -rf "$cw"
}

case "${1:-all}" in
    build) build ;;
    measure) measure ;;
    all) build; measure ;;
    *) echo "usage: $0 [build|measure|all]" >&2; exit 2 ;;
esac
