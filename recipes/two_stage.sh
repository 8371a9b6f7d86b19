#!/usr/bin/env bash
# Shared driver of the two-stage HyperEyes recipe; sourced by run_hyperseyes_30b.sh / run_hyperseyes_7b_1node.sh
# after they set SFT_CONFIG, RL_CONFIG and the preset's GPU defaults. Not meant to be run directly.
set -euo pipefail

RECIPES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# the interpreter that has hyperseyes-verl: $PYTHON, else the project's .venv, else python3 on PATH
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$RECIPES_DIR/../.venv/bin/python" ]]; then PYTHON="$RECIPES_DIR/../.venv/bin/python"; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c 'import hyperseyes_verl' 2>/dev/null; then
  echo "error: $PYTHON cannot import hyperseyes_verl: run \`make venv\` in the project (or pip install hyperseyes-verl) and set PYTHON=<that interpreter>" >&2
  exit 2
fi
HYPERSEYES="${HYPERSEYES:-$PYTHON -m hyperseyes_verl.cli}"

usage() {
  cat <<USAGE
usage: $(basename "$0") [--stage 1|2|all] [--dry-run] [-- hydra overrides for the chosen stage(s)...]

  --stage 1    LoRA SFT (verl sft_trainer), then merge the adapter into the base weights
  --stage 2    RL (verl main_ppo) from the merged stage-1 checkpoint (STAGE1_MODEL)
  --stage all  both, in order (default)
  --dry-run    compose and validate each stage's full verl config with \`hyperseyes recipe validate\`; no training

environment (required):  MODEL_PATH (base model)  DATA_DIR  OUT_DIR  INDEX_DIR (embedded search index; not
                         needed with another backend: -- '++hyperseyes.agent_loop.backend={type: serper}')
                         TEACHER_PATH (stage 2, unless OPD is switched off with distillation.enabled=false)
environment (optional):  N_GPUS (per node / per pool) SFT_GPUS NNODES (student nodes) TEACHER_NODES SFT_NNODES
                         SFT_TRAIN RL_TRAIN RL_VAL STAGE1_MODEL LOGGER (e.g. console,wandb) PYTHON
USAGE
}

STAGE=all DRY_RUN=0 EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --stage) STAGE="${2:-}"; shift $(( $# > 1 ? 2 : 1 )) ;;  # a missing value is reported just below
    --stage=*) STAGE="${1#*=}"; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "error: unknown argument '$1' (hydra overrides go after --)" >&2; usage >&2; exit 2 ;;
  esac
done
case "$STAGE" in 1|2|all) ;; *) echo "error: --stage must be 1, 2 or all, got '$STAGE'" >&2; exit 2 ;; esac

die() { echo "error: $*" >&2; exit 2; }
need_var() { [[ -n "${!1:-}" ]] || die "$1 is not set: $2"; }
need_model() {  # a local Hugging Face checkpoint folder
  [[ -f "$2/config.json" ]] || die "$1=$2 is not a Hugging Face checkpoint folder (no config.json): download it first"
}
need_file() { [[ -f "$2" ]] || die "$1=$2 does not exist: create it with \`hyperseyes to-parquet\` (DATA_DIR=$DATA_DIR)"; }

need_var MODEL_PATH "the base model folder, e.g. Qwen3-VL-30B-A3B-Instruct"
need_var DATA_DIR "the folder with sft/train.parquet and rl/{train,val}.parquet (hyperseyes to-parquet)"
need_var OUT_DIR "where checkpoints and the merged stage-1 model are written"
need_model MODEL_PATH "$MODEL_PATH"
SFT_TRAIN="${SFT_TRAIN:-$DATA_DIR/sft/train.parquet}"
RL_TRAIN="${RL_TRAIN:-$DATA_DIR/rl/train.parquet}"
RL_VAL="${RL_VAL:-$DATA_DIR/rl/val.parquet}"
STAGE1_MODEL="${STAGE1_MODEL:-$OUT_DIR/stage1_merged}"
LOGGER="${LOGGER:-console}"
if [[ ",$LOGGER," == *",wandb,"* ]]; then need_var WANDB_API_KEY "LOGGER contains wandb"; fi
OPD_ON=1 EMBEDDED=1
for o in "${EXTRA[@]}"; do
  [[ "$o" == "distillation.enabled=false" ]] && OPD_ON=0
  # another search backend given after -- (e.g. 'hyperseyes.agent_loop.backend={type: serper}'): no index needed
  if [[ "$o" =~ ^(\+\+|\+|~)?hyperseyes\.agent_loop\.backend(\.type)?= && ! "$o" =~ embedded ]]; then EMBEDDED=0; fi
done
if [[ "$STAGE" != 1 ]]; then
  need_file RL_TRAIN "$RL_TRAIN"; need_file RL_VAL "$RL_VAL"
  if [[ $EMBEDDED == 1 ]]; then
    need_var INDEX_DIR "the embedded search index folder (hyperseyes index build); for a web backend pass '++hyperseyes.agent_loop.backend={type: serper}' after --"
  fi
  if [[ $OPD_ON == 1 ]]; then need_var TEACHER_PATH "the OPD teacher model folder (or pass -- distillation.enabled=false)"; need_model TEACHER_PATH "$TEACHER_PATH"; fi
fi
if [[ "$STAGE" != 2 ]]; then need_file SFT_TRAIN "$SFT_TRAIN"; fi

AGENT_LOOP_YAML="$($PYTHON -c 'import hyperseyes_verl, os; print(os.path.join(os.path.dirname(hyperseyes_verl.__file__), "verl", "agent_loop.yaml"))')"
TOTAL_GPUS=$(( N_GPUS * (NNODES + TEACHER_NODES) ))

SFT_GPUS="${SFT_GPUS:-$N_GPUS}"
SFT_ARGS=("model.path=$MODEL_PATH" "data.train_files=$SFT_TRAIN" "trainer.default_local_dir=$OUT_DIR/stage1"
          "trainer.n_gpus_per_node=$SFT_GPUS" "trainer.nnodes=$SFT_NNODES" "trainer.logger=[$LOGGER]")
make_rl_args() {  # $1 = student model path; fills RL_ARGS
  local a=("actor_rollout_ref.model.path=$1" "data.train_files=$RL_TRAIN" "data.val_files=$RL_VAL"
           "actor_rollout_ref.rollout.agent.agent_loop_config_path=$AGENT_LOOP_YAML"
           "trainer.default_local_dir=$OUT_DIR/stage2" "trainer.n_gpus_per_node=$N_GPUS" "trainer.nnodes=$NNODES"
           "trainer.logger=[$LOGGER]")
  if [[ $EMBEDDED == 1 ]]; then a+=("hyperseyes.agent_loop.backend.index_dir=$INDEX_DIR"); fi
  if [[ $OPD_ON == 1 ]]; then
    a+=("distillation.teacher_models.teacher_model.model_path=$TEACHER_PATH" "distillation.n_gpus_per_node=$N_GPUS"
        "distillation.nnodes=$TEACHER_NODES")
  fi
  RL_ARGS=("${a[@]}")
}

if [[ $DRY_RUN == 1 ]]; then
  rc=0
  if [[ "$STAGE" != 2 ]]; then
    $HYPERSEYES recipe validate --stage sft --config "$RECIPES_DIR/$SFT_CONFIG.yaml" --total-gpus "$TOTAL_GPUS" \
      "${SFT_ARGS[@]}" "${EXTRA[@]}" || rc=1
  fi
  if [[ "$STAGE" != 1 ]]; then
    student="$STAGE1_MODEL"
    if [[ ! -f "$STAGE1_MODEL/config.json" ]]; then
      # stage 1 has not run yet: its output has the base model's architecture and tokenizer
      echo "note: $STAGE1_MODEL does not exist yet; validating stage 2 with MODEL_PATH as its stand-in"
      student="$MODEL_PATH"
    fi
    make_rl_args "$student"
    $HYPERSEYES recipe validate --stage rl --config "$RECIPES_DIR/$RL_CONFIG.yaml" --total-gpus "$TOTAL_GPUS" \
      "${RL_ARGS[@]}" "${EXTRA[@]}" || rc=1
  fi
  exit $rc
fi

if [[ "$STAGE" != 2 ]]; then
  # SFT_OMP_NUM_THREADS: CPU threads of each SFT process (torchrun would otherwise force 1)
  sft_env=()
  [[ -n "${SFT_OMP_NUM_THREADS:-}" ]] && sft_env=(OMP_NUM_THREADS="$SFT_OMP_NUM_THREADS" MKL_NUM_THREADS="$SFT_OMP_NUM_THREADS")
  # shellcheck disable=SC2086  (SFT_TORCHRUN_ARGS: extra torchrun flags, e.g. --rdzv_endpoint, word-split on purpose)
  env "${sft_env[@]}" "$PYTHON" -m torch.distributed.run --nnodes "$SFT_NNODES" --nproc_per_node "$SFT_GPUS" ${SFT_TORCHRUN_ARGS:-} -m verl.trainer.sft_trainer \
    --config-path "$RECIPES_DIR" --config-name "$SFT_CONFIG" "${SFT_ARGS[@]}" "${EXTRA[@]}"
  step="$(cat "$OUT_DIR/stage1/latest_checkpointed_iteration.txt")"
  $PYTHON -m verl.model_merger merge --backend fsdp --local_dir "$OUT_DIR/stage1/global_step_$step" \
    --target_dir "$OUT_DIR/stage1_hf"
  if [[ -d "$OUT_DIR/stage1_hf/lora_adapter" ]]; then
    $HYPERSEYES recipe merge-lora --model "$OUT_DIR/stage1_hf" --adapter "$OUT_DIR/stage1_hf/lora_adapter" \
      --out "$STAGE1_MODEL" --dtype "${MERGE_DTYPE:-bfloat16}"
  else  # full fine-tuning (model.lora_rank=0): the merged FSDP shards are the stage-1 model
    rm -rf "$STAGE1_MODEL" && cp -r "$OUT_DIR/stage1_hf" "$STAGE1_MODEL"
  fi
fi
if [[ "$STAGE" != 1 ]]; then
  need_model STAGE1_MODEL "$STAGE1_MODEL"
  make_rl_args "$STAGE1_MODEL"
  $PYTHON -m verl.trainer.main_ppo --config-path "$RECIPES_DIR" --config-name "$RL_CONFIG" "${RL_ARGS[@]}" "${EXTRA[@]}"
fi
