#!/usr/bin/env bash
# One prepared GPU check: on a CUDA machine, run the extract and fine-tune benchmarks and print images/s and the
# ratios against forward-only (extract: b/a, b/c; fine-tune: headstart loop / bare loop, strategy timings).
#
#   benchmarks/gpu_check.sh                 # from the repository root
#   HEADSTART_DATA=/data/headstart N=2048 REPEATS=3 benchmarks/gpu_check.sh
#
# Environment:
#   HEADSTART_PYTHON  interpreter with a CUDA build of torch (default: .venv/bin/python, else python3)
#   HEADSTART_DATA    folder holding kaggle_cxr_224/ and kaggle_cxr_fullsize_sample/ (default ../shared/data,
#                     else ./shared/data)
#   N, BATCH, REPEATS extract benchmark size (default 1024 224-px images, batch 128, 2 repeats)
#   FT_LIMIT          images of kaggle_cxr_224 used by the fine-tune strategy timing (default 1000; 0 = all)
# Takes about 5-10 minutes on one H100-class GPU. Prints only measurements taken in this run.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

PY=${HEADSTART_PYTHON:-}
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! "$PY" -c "import torch, torchvision, h5py, click" 2>/dev/null; then
  echo "creating .venv (needs network access to PyPI)" >&2
  make venv PY=python3 >&2
  PY=.venv/bin/python
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: $PY has torch $("$PY" -c 'import torch; print(torch.__version__)') without a usable CUDA device;" \
       "run this on a GPU machine or set HEADSTART_PYTHON to a CUDA build" >&2
  exit 2
fi
# The benchmarks run as scripts from benchmarks/, where the working directory is not on sys.path.
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
(cd / && "$PY" -c "import headstart") 2>/dev/null || "$PY" -m pip install -q --no-deps --no-build-isolation -e .

if [[ -z "${HEADSTART_DATA:-}" ]]; then
  if [[ -d ../shared/data ]]; then HEADSTART_DATA=$(cd ../shared/data && pwd)
  elif [[ -d shared/data ]]; then HEADSTART_DATA=$REPO/shared/data
  else echo "error: no data: set HEADSTART_DATA to the folder holding kaggle_cxr_224/" >&2; exit 2
  fi
fi
export HEADSTART_DATA HEADSTART_OFFLINE=1 PYTHONUNBUFFERED=1
# benchmarks/finetune.py reads ../shared/data/kaggle_cxr_224 only; point it at the same data when that is absent.
if [[ ! -e ../shared && -w .. ]]; then
  ln -s "$(dirname "$HEADSTART_DATA")" ../shared && echo "linked ../shared -> $(dirname "$HEADSTART_DATA")"
fi

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
"$PY" - <<'PY'
import os, torch, torchvision
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}), "
      f"torchvision {torchvision.__version__}, {torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}, "
      f"{len(os.sched_getaffinity(0))} cores")
PY

echo "== extract: (a) forward-only, (b) headstart end to end, (c) tutorial loop; images/s and ratios"
"$PY" benchmarks/extract.py --device cuda --n224 "${N:-1024}" --batch-size "${BATCH:-128}" --repeats "${REPEATS:-2}"

if [[ -f benchmarks/finetune.py ]]; then
  echo "== fine-tune: loop overhead vs a bare loop, and extract + heads vs a fine-tune epoch"
  "$PY" benchmarks/finetune.py --device cuda --backbones resnet18 densenet121 --n 512 --batch-size 64 \
      --repeats "${REPEATS:-2}" --limit "${FT_LIMIT:-1000}"
fi

NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if (( NGPU > 1 )); then
  echo "== torchrun extract on $NGPU GPUs vs 1 (same data; the caches must agree)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  data="$HEADSTART_DATA/kaggle_cxr_224"
  "$PY" -m headstart extract "$data" -o "$tmp/one.h5" --weights random --batch-size 128
  "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" -m headstart extract "$data" \
      -o "$tmp/many.h5" --weights random --batch-size 128
  "$PY" - "$tmp/one.h5" "$tmp/many.h5" <<'PY'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:])
same = all((a["samples"][k][...] == b["samples"][k][...]).all() for k in ("id", "label", "split"))
diff = np.abs(a["features/resnet18"][...].astype("f4") - b["features/resnet18"][...].astype("f4")).max()
print(f"rows and splits equal: {same}; max |feature difference| {diff:.2e}")
for f, name in ((a, "1 GPU"), (b, "torchrun")):
    at = f["features/resnet18"].attrs
    print(f"{name:9s} {at['images_per_second']:8.1f} images/s on {at['device']}")
PY
fi
