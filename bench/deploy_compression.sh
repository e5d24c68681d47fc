#!/usr/bin/env bash
# Compression for deployment on the MNIST CNN (trained in a local
# federation, or given with --model), all through fedge-export, accuracy on
# the 10,000 MNIST test examples:
#
#   pruned_sparsity=0.8 accuracy_drop_pp=X
#       global magnitude pruning of 80% of the conv/linear weights, then
#       fine-tuning rounds in the federation with the mask kept
#       (model.initial_weights_path, train.keep_pruned; --fine_rounds,
#       default 1); sparsity "none" if the mask did not survive. For
#       reference, the same with one epoch of local fine-tuning
#       (fine_tuning=local);
#   int8 size_ratio=R accuracy_drop_pp=Y
#       post-training static int8 quantization (qnnpack, calibrated on 1,000
#       training examples); R = int8 TorchScript file / float TorchScript
#       file;
#   distilled_student=NAME params=P accuracy=Z
#       a zoo student trained on the CNN's softened outputs (T = 4; labels
#       unused).
# Also, for reference: structured_channels=0.5 ... (half the channels of
# each layer zeroed by L1 norm, fine-tuned, and exported to TorchScript
# without them: parameters, MACs and file size of the narrower network vs
# the CNN's), the CNN's own accuracy and the targets
# (pruning and int8 lose at most 0.5 pp, int8 at most 1/3.5 of the float
# file): targets_met=true|false. A figure not reached prints "none".
#
# usage: bench/deploy_compression.sh [--data_dir DIR] [--rounds N]
#            [--fine_rounds N] [--model CNN.fedge] [--student mobile_cnn]
#            [--distill_epochs 5]
#   --rounds: federated rounds of the CNN (default 10, about 2 minutes each
#   on 2 cores); --model: use this CNN (its .spec beside it) instead.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data_dir="$root/../shared/data/mnist"
rounds=10
fine_rounds=1
model=""
student=mobile_cnn
distill_epochs=5
while [ $# -gt 0 ]; do
  case "$1" in
    --data_dir) data_dir=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --fine_rounds) fine_rounds=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --student) student=$2; shift 2 ;;
    --distill_epochs) distill_epochs=$2; shift 2 ;;
    *) echo "deploy_compression.sh: unknown argument '$1' (see its header)" >&2; exit 2 ;;
  esac
done
build="${FEDGE_BUILD_DIR:-$root/build}"
export="$build/server/fedge-export"
[ -x "$export" ] || { echo "deploy_compression.sh: build fedge-export first" >&2; exit 2; }
data_dir=$(cd "$data_dir" && pwd)
. "$root/scripts/lib.sh"
. "$root/bench/deploy_lib.sh"
fedge_work_dir deploy
data=(--data_dir "$data_dir")
m="$work/cnn"
if [ -n "$model" ]; then
  cp "$model" "$m.fedge"
  cp "${model%.fedge}.spec" "$m.spec"
else
  fedge_federate cnn "$rounds" "$m" "$data_dir"
fi

# run NAME ARGS...: fedge-export ARGS, its report kept in $work/NAME.txt and
# echoed to stderr.
run() {
  local name=$1
  shift
  "$export" "$@" "${data[@]}" | tee "$work/$name.txt" >&2
}
after_accuracy() { fedge_figure accuracy "$(grep '^after ' "$work/$1.txt")"; }

run prune prune "$m.fedge" --sparsity 0.8 -o "$work/pruned.fedge"
base=$(fedge_figure accuracy "$(grep '^before ' "$work/prune.txt")")
# Fine-tuning rounds in the federation: the coordinator starts from the
# pruned model and its agents keep its zeros (train.keep_pruned), one round
# of 3 agents x 1 local epoch on their thirds of MNIST. Pruning the result
# to 0.8 again must find nothing more to prune: the mask survived.
fedge_federate cnn "$fine_rounds" "$work/pruned_fed" "$data_dir" \
  --model.initial_weights_path="$work/pruned.fedge" --train.keep_pruned=true
run pruned_fed evaluate "$work/pruned_fed.fedge"
run repruned prune "$work/pruned_fed.fedge" --sparsity 0.8 -o "$work/repruned.fedge"
pruned_drop=$(fedge_pp "$base" "$(fedge_figure accuracy "$(cat "$work/pruned_fed.txt")")")
nonzero_pruned=$(fedge_figure nonzero_parameters "$(grep '^after ' "$work/prune.txt")")
nonzero_fed=$(fedge_figure nonzero_parameters "$(grep '^before ' "$work/repruned.txt")")
sparsity=none
if [ "$nonzero_pruned" != none ] && [ "$nonzero_pruned" = "$nonzero_fed" ]; then
  sparsity=$(fedge_figure weight_sparsity "$(cat "$work/prune.txt")")
fi
echo "federated fine-tuning: nonzero parameters $nonzero_pruned after pruning, $nonzero_fed after $fine_rounds round(s)" >&2
# For reference: the same fine-tuning locally (fedge-export finetune).
run finetune finetune "$work/pruned.fedge" --epochs 1 -o "$work/pruned_ft.fedge"
local_drop=$(fedge_pp "$base" "$(after_accuracy finetune)")

run structured prune "$m.fedge" --sparsity 0.5 --structured -o "$work/structured.fedge"
run structured_ft finetune "$work/structured.fedge" --epochs 1 -o "$work/structured_ft.fedge"
structured_drop=$(fedge_pp "$base" "$(after_accuracy structured_ft)")
# Exported, the zeroed channels are left out: a narrower network.
run structured_pt model "$work/structured_ft.fedge" --format torchscript \
  -o "$work/structured.pt"

run quantize quantize "$m.fedge" --calibration-data train \
  --calibration-examples 1000 --engine qnnpack -o "$work/cnn_int8.pt"
int8=$(grep '^int8 ' "$work/quantize.txt" || true)
ratio=$(fedge_figure size_ratio "$int8")
int8_drop=$(fedge_figure accuracy_drop_pp "$int8")

run distill distill "$m.fedge" --student "$student" --epochs "$distill_epochs" \
  --learning_rate 0.05 --batch_size 64 -o "$work/student.fedge"
d=$(grep '^distilled_student' "$work/distill.txt" || true)

echo "cnn accuracy=$base"
echo "pruned_sparsity=0.8 accuracy_drop_pp=$pruned_drop"
echo "pruned_sparsity=0.8 fine_tuning=local accuracy_drop_pp=$local_drop"
echo "int8 size_ratio=$ratio accuracy_drop_pp=$int8_drop"
echo "distilled_student=$(fedge_figure distilled_student "$d") params=$(fedge_figure params "$d") accuracy=$(fedge_figure accuracy "$d")"
s=$(grep '^exported ' "$work/structured_pt.txt" || true)
float_size=$(fedge_figure size_bytes "$(grep '^before ' "$work/quantize.txt" || true)")
echo "structured_channels=0.5 parameters=$(fedge_figure parameters "$s") macs=$(fedge_figure macs "$s") torchscript_size_bytes=$(fedge_figure size_bytes "$s") cnn_torchscript_size_bytes=$float_size accuracy_drop_pp=$structured_drop"
met=$(awk -v s="$sparsity" -v p="$pruned_drop" -v r="$ratio" -v q="$int8_drop" 'BEGIN {
  ok = s != "none" && p != "none" && r != "none" && q != "none" &&
       s + 0 >= 0.8 - 1e-6 && p + 0 <= 0.5 && q + 0 <= 0.5 && r + 0 <= 1 / 3.5
  print ok ? "true" : "false" }')
echo "targets_met=$met"
