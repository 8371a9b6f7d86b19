#!/usr/bin/env bash
# Small preset on ONE 8-GPU node: Qwen3-VL-8B-Instruct student (see README.md for why not Qwen2.5-VL-7B).
# Stage 1 LoRA SFT on all 8 GPUs; stage 2 RL with the student on 4 GPUs and the OPD teacher
# (Qwen3-VL-30B-A3B-Instruct, or your HyperEyes-30B) on the other 4.
#   MODEL_PATH=... TEACHER_PATH=... DATA_DIR=... INDEX_DIR=... OUT_DIR=... recipes/run_hyperseyes_7b_1node.sh [--stage 1|2|all] [--dry-run] [-- overrides]
SFT_CONFIG=stage1_sft_small
RL_CONFIG=stage2_rl_small
N_GPUS="${N_GPUS:-4}"              # stage-2 GPUs per pool (student 4 + teacher 4 = the node's 8)
NNODES="${NNODES:-1}"
TEACHER_NODES="${TEACHER_NODES:-1}" # a pool of N_GPUS on the same node, not an extra node
SFT_NNODES="${SFT_NNODES:-1}"
SFT_GPUS="${SFT_GPUS:-8}"          # stage 1 uses the whole node
source "$(dirname "${BASH_SOURCE[0]}")/two_stage.sh"
