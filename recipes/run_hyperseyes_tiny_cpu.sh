#!/usr/bin/env bash
# HyperEyes, both stages at toy size on a CPU box (laptop / CI): the same two-stage driver as the 30B recipe,
# with the CPU runtime (HYPERSEYES_CPU_RUNTIME=1: cpu platform, FSDP2 on gloo, HF-transformers rollout and
# teacher). `make train-tiny` prepares a tiny Qwen-VL, the demo's data and index, then runs this script.
#   MODEL_PATH=... TEACHER_PATH=... DATA_DIR=... INDEX_DIR=... OUT_DIR=... recipes/run_hyperseyes_tiny_cpu.sh [--stage 1|2|all] [--dry-run] [-- overrides]
SFT_CONFIG=stage1_sft_tiny_cpu
RL_CONFIG=stage2_rl_tiny_cpu
N_GPUS="${N_GPUS:-1}"              # one fake GPU per pool: placement only
NNODES="${NNODES:-1}"
TEACHER_NODES="${TEACHER_NODES:-1}"
SFT_NNODES="${SFT_NNODES:-1}"
LOGGER="${LOGGER:-console,file}"
MERGE_DTYPE="${MERGE_DTYPE:-float32}"  # the CPU runtime computes in fp32 end to end
export HYPERSEYES_CPU_RUNTIME=1
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# stage 2's Ray actors share the cores: one thread each; stage 1 is one process: all of them (3.6 -> 2.6 s/step on 2)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
export SFT_OMP_NUM_THREADS="${SFT_OMP_NUM_THREADS:-$(env -u OMP_NUM_THREADS nproc)}"  # nproc obeys OMP_NUM_THREADS
source "$(dirname "${BASH_SOURCE[0]}")/two_stage.sh"
