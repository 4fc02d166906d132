# Shared by the benchmark scripts: `source benchmarks/lib.sh` after setting OUT (log folder)
# and, optionally, STEPS (which parts to run).

want() {  # want STEP: whether STEP is listed in $STEPS
  [[ " $STEPS " == *" $1 "* ]]
}

run() {  # run LOG ARGS...: a diffkit command, logged; prints its last stdout line (a path)
  local log="$OUT/$1.log"; shift
  echo "[$(date +%H:%M:%S)] diffkit $*" | tee -a "$OUT/commands.txt" >&2
  diffkit "$@" 2>>"$log" | tee -a "$log" | tail -n 1
}

ensure_classifier() {  # the MNIST feature classifier that every FID here uses
  ls "${DIFFKIT_RUNS_DIR:-runs}"/classifier/*-mnist/classifier.safetensors >/dev/null 2>&1 \
    || run classifier train classifier --dataset mnist >/dev/null
}
