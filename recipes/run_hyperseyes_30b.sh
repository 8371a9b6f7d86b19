#!/usr/bin/env bash
# HyperEyes-30B, both stages (official recipe): stage 1 LoRA SFT of Qwen3-VL-30B-A3B-Instruct on 1 node, then
# stage 2 RL on NNODES student nodes + TEACHER_NODES teacher nodes (Qwen3-VL-235B-A22B teacher for OPD).
#   MODEL_PATH=... TEACHER_PATH=... DATA_DIR=... INDEX_DIR=... OUT_DIR=... recipes/run_hyperseyes_30b.sh [--stage 1|2|all] [--dry-run] [-- overrides]
# See recipes/README.md. Run from a Ray cluster head node for stage 2 (ray start --head / --address).
SFT_CONFIG=stage1_sft_30b
RL_CONFIG=stage2_rl_30b
N_GPUS="${N_GPUS:-8}"              # GPUs per node
NNODES="${NNODES:-2}"              # stage-2 student nodes (FSDP actor + vLLM rollout)
TEACHER_NODES="${TEACHER_NODES:-1}" # stage-2 teacher nodes (235B teacher, TP 8)
SFT_NNODES="${SFT_NNODES:-1}"      # stage-1 nodes (global batch 8 = one sample per GPU)
source "$(dirname "${BASH_SOURCE[0]}")/two_stage.sh"
