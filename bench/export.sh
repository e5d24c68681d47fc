#!/usr/bin/env bash
# Checks fedge-export's TorchScript and ONNX files in runtimes that are not
# fedge: for the MNIST 2NN and CNN (trained in a local federation) and the
# TorchScript example (examples/torchscript_cnn, fine-tuned on MNIST), the
# ONNX file runs in OpenCV's DNN module (bench/onnx_opencv_check) and passes
# onnx.checker, and the TorchScript file runs in Python torch, on 1,000
# MNIST test examples; both are compared with fedge's own logits (LibTorch):
#
#   model=NAME format=onnx max_abs_diff=D runtime=opencv-dnn
#   model=NAME format=torchscript max_abs_diff=D runtime=python-torch
#
# then export_max_abs_diff=D export_ok=true|false (every D below 1e-4;
# exit 1 otherwise). A result that could not be measured prints "none".
#
# usage: bench/export.sh [--data_dir DIR] [--rounds N] [--cnn MODEL.fedge]
#   --rounds: federated rounds for each of the 2NN and the CNN (default 1;
#   a CNN round takes about 2 minutes on 2 cores); --cnn: use this CNN
#   (with its .spec beside it) instead of training one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data_dir="$root/../shared/data/mnist"
rounds=1
cnn=""
while [ $# -gt 0 ]; do
  case "$1" in
    --data_dir) data_dir=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --cnn) cnn=$2; shift 2 ;;
    *) echo "export.sh: unknown argument '$1' (see its header)" >&2; exit 2 ;;
  esac
done
build="${FEDGE_BUILD_DIR:-$root/build}"
export="$build/server/fedge-export"
opencv="$build/bench/onnx_opencv_check"
py=/usr/bin/python3
for b in "$export" "$build/server/fedge-evaluator" "$build/server/fedge-coordinator" "$build/edge_agent/fedge-agent"; do
  [ -x "$b" ] || { echo "export.sh: build $(basename "$b") first (scripts/build.sh)" >&2; exit 2; }
done
data_dir=$(cd "$data_dir" && pwd)
. "$root/scripts/lib.sh"
. "$root/bench/deploy_lib.sh"
fedge_work_dir export
data=(--data_dir "$data_dir")

# The models: NAME -> $work/NAME.fedge (+ .spec, + archive).
fedge_federate 2nn "$rounds" "$work/2nn" "$data_dir"
if [ -n "$cnn" ]; then
  cp "$cnn" "$work/cnn.fedge"
  cp "${cnn%.fedge}.spec" "$work/cnn.spec"
else
  fedge_federate cnn "$rounds" "$work/cnn" "$data_dir"
fi
# The TorchScript example: its archive, initial weights, a spec naming the
# archive, then one epoch on 10,000 MNIST examples.
"$py" "$root/examples/torchscript_cnn/make_model.py" --out "$work/example.pt" >/dev/null
"$build/server/fedge-evaluator" --export-initial "$work/example.pt" \
  "$work/example0.fedge" --input_shape 1,28,28 --num_classes 10 >/dev/null
cat > "$work/example0.spec" <<EOF
architecture: "torchscript"
input_shape: [1, 28, 28]
num_classes: 10
torchscript_sha256: "$(sha256sum "$work/example.pt" | cut -d' ' -f1)"
torchscript_size_bytes: $(stat -c %s "$work/example.pt")
EOF
"$export" finetune "$work/example0.fedge" --archive "$work/example.pt" \
  -o "$work/example.fedge" --epochs 1 "${data[@]}" \
  --data.max_train_examples=10000 >&2

worst=0
ok=true
note() {  # NAME FORMAT DIFF RUNTIME
  echo "model=$1 format=$2 max_abs_diff=$3 runtime=$4"
  if [ "$3" = none ]; then ok=false; return; fi
  worst=$(awk -v a="$worst" -v b="$3" 'BEGIN { print (b > a ? b : a) }')
  awk -v d="$3" 'BEGIN { exit !(d < 1e-4) }' || ok=false
}
for name in 2nn cnn example; do
  archive=()
  [ "$name" = example ] && archive=(--archive "$work/example.pt")
  m="$work/$name"
  "$export" model "$m.fedge" "${archive[@]}" --format torchscript -o "$m.export.pt" >&2
  "$export" model "$m.fedge" "${archive[@]}" --format onnx -o "$m.onnx" >&2
  "$export" evaluate "$m.fedge" "${archive[@]}" "${data[@]}" --limit 1000 \
    --features_out "$m.x.npy" --logits_out "$m.logits.npy" >&2
  checked=$("$py" "$root/bench/check_export.py" --name "$name" \
    --features "$m.x.npy" --logits "$m.logits.npy" --torchscript "$m.export.pt" \
    --onnx "$m.onnx") || { echo "export.sh: check_export.py failed for $name" >&2; ok=false; }
  echo "$checked" | grep "format=onnx" >&2 || true
  if [ -x "$opencv" ]; then
    dnn=$("$opencv" "$m.onnx" "$m.x.npy" "$m.logits.npy" "$name") || dnn=""
  else
    echo "export.sh: no $opencv (libopencv-dnn-dev)" >&2
    dnn=""
  fi
  note "$name" onnx "$(fedge_figure max_abs_diff "$dnn")" opencv-dnn
  note "$name" torchscript \
    "$(fedge_figure max_abs_diff "$(echo "$checked" | grep format=torchscript)")" python-torch
done
echo "export_max_abs_diff=$worst export_ok=$ok"
[ "$ok" = true ]
