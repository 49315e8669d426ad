#!/usr/bin/env bash
# Train DPO from one base model with several settings and compare each against that base.
#
#   bash benchmarks/dpo_sweep.sh outputs            # uses outputs/base and outputs/data/preference
#
# Writes <run folder>/dpo-sweep/summary.md: one row per setting, with the comparison's columns.
# Each row is one DPO run of about a minute on 2 CPU cores.
set -euo pipefail

cd "$(dirname "$0")/.."
RUN_DIR="${1:?usage: bash benchmarks/dpo_sweep.sh RUN_DIR (the OUTPUT_DIR of a reproduce.sh run)}"
SWEEP_DIR="$RUN_DIR/dpo-sweep"
mkdir -p "$SWEEP_DIR"
summary="$SWEEP_DIR/summary.md"
echo "| setting | preference | adherence | empirical entropy (bits) | sequence entropy (bits) | distinct | KL to base (nats) | early EOS | frontier gap |" > "$summary"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|" >> "$summary"

run() {
    local name=$1
    shift
    accelerate launch --config_file recipes/accelerate_configs/cpu.yaml recipes/dpo.py \
        --config recipes/config/dpo.yaml --model_name_or_path "$RUN_DIR/base" \
        --dataset_name "$RUN_DIR/data/preference" --output_dir "$SWEEP_DIR/$name" \
        --save_strategy no --eval_strategy no "$@" > "$SWEEP_DIR/$name.log" 2>&1
    python recipes/compare.py --config recipes/config/compare.yaml --base_model "$RUN_DIR/base" \
        --policies "dpo=$SWEEP_DIR/$name" --output_dir "$SWEEP_DIR/$name-results" 2> /dev/null \
        | grep '^| DPO' | sed "s/^| DPO |/| \`$*\` |/" >> "$summary"
    echo "done: $name"
}

run lr5e-6-1ep --learning_rate 5e-6 --num_train_epochs 1
run lr2e-5-1ep --learning_rate 2e-5 --num_train_epochs 1
run lr1e-5-2ep --learning_rate 1e-5 --num_train_epochs 2
run lr2e-5-2ep --learning_rate 2e-5 --num_train_epochs 2
run lr2e-5-2ep-beta0.3 --learning_rate 2e-5 --num_train_epochs 2 --beta 0.3
run lr2e-5-2ep-sft0.1 --learning_rate 2e-5 --num_train_epochs 2 --loss_type sigmoid sft --loss_weights 1.0 0.1
run lr2e-5-2ep-sft1 --learning_rate 2e-5 --num_train_epochs 2 --loss_type sigmoid sft --loss_weights 1.0 1.0
cat "$summary"
