#!/usr/bin/env bash
# Not a speed benchmark: hostile inputs and faults (a pickle that runs code, a decompression
# bomb, a checkpoint claiming a huge model, bad configs, ...) run against the real `diffkit`
# executable, one line each: case | exit code | stderr lines | last stderr line.
# Usage: DIFFKIT_DATA_DIR=../shared/data bash benchmarks/bad_inputs.sh [WORK_DIR]
set -u
W=$(realpath -m "${1:-/tmp/diffkit-bad-inputs}")
rm -rf "$W" && mkdir -p "$W"
export DIFFKIT_DOWNLOAD=false DIFFKIT_RUNS_DIR=$W/runs
: "${DIFFKIT_DATA_DIR:?set DIFFKIT_DATA_DIR to the folder holding mnist/}"
R=$(diffkit train ddpm --preset tiny --limit-data 64 --batch-size 16 --max-steps 3 --sample-every 0 --name base 2>/dev/null | tail -1)
F=$(diffkit train rf --preset tiny --limit-data 64 --batch-size 16 --max-steps 3 --sample-every 0 --name flow 2>/dev/null | tail -1)
S=$(diffkit sample $R -n 12 --steps 2 2>/dev/null | tail -1)
echo "{\"data\": {\"dataset\": \"folder:$W/bomb\", \"channels\": 1, \"image_size\": 28}}" > $W/bomb.json; touch $W/afile; echo '{"train": 5}' > $W/t5.json; echo '{"model": {"base_channels": 8192}}' > $W/big.json
python - <<PY
import pickle, os
class E:
    def __reduce__(self): return (os.system, ("touch $W/PWNED",))
open("$W/evil.pth","wb").write(pickle.dumps(E()))
import struct, zlib
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")
os.makedirs("$W/bomb", exist_ok=True); open("$W/bomb/big.png", "wb").write(png)
from PIL import Image
for i in range(3): Image.new("L", (28, 28), i * 80).save(f"$W/bomb/ok{i}.png")
PY
# a checkpoint that claims a huge model: the base run's config with base_channels 8192, tiny tensors
python - "$R" <<PY
import sys, json, torch
from diffkit.runs import load_checkpoint, save_checkpoint, Checkpoint
c = load_checkpoint(sys.argv[1] + "/checkpoints/last.safetensors")
c.config["model"]["base_channels"] = 8192
from pathlib import Path; save_checkpoint(Path("$W/huge.safetensors"), Checkpoint(c.config, {k: v for k, v in c.tensors.items()}, {}))
c = load_checkpoint(sys.argv[1] + "/checkpoints/last.safetensors")
c.train_state["position"]["step"] = "x"
import shutil; shutil.copytree(sys.argv[1], "$W/tampered")
save_checkpoint(Path("$W/tampered/checkpoints/last.safetensors"), c)
PY
run() { local label="$1"; shift; local err; err=$( "$@" 2>&1 >/dev/null ); local rc=$?; printf '%s\t%s\t%s\t%s\n' "$label" "$rc" "$(printf '%s\n' "$err" | grep -c .)" "$(printf '%s\n' "$err" | tail -1 | cut -c1-150)"; }
run "train --runs-dir under a file" diffkit train ddpm --preset tiny --runs-dir $W/afile/x
run "DIFFKIT_RUNS_DIR is a file" env DIFFKIT_RUNS_DIR=$W/afile diffkit train vae --max-steps 1
run "make-pairs --runs-dir a file" diffkit reflow make-pairs $F --runs-dir $W/afile
run "sample --out under a file" diffkit sample $R --out $W/afile/o -n 2
run "sample -n 1e12" diffkit sample $R -n 1000000000000
run "config base_channels 8192" diffkit train ddpm --preset tiny --config $W/big.json
run "checkpoint claims a huge model" diffkit sample $W/huge.safetensors -n 2
run "dopri5 --rtol nan" diffkit sample $R --solver dopri5 --rtol nan
run "dopri5 --rtol 1e-30" diffkit sample $R --solver dopri5 --rtol 1e-30
run "--seed 2**70" diffkit sample $R --seed 1180591620717411303424
err=$(diffkit train ddpm --preset tiny --config $W/bomb.json --max-steps 1 --sample-every 0 --batch-size 2 --name bomb 2>&1 >/dev/null); rc=$?
printf '%s\t%s\t%s\n' "folder: with a 30000x30000 header (3 good files)" "$rc" "$(printf '%s\n' "$err" | grep skipped)"
run "resume tampered train_state" diffkit train ddpm --resume $W/tampered --max-steps 5
run "--inception-weights malicious pickle" diffkit eval $S --features inception --inception-weights $W/evil.pth
run "eval samples --dataset nope" diffkit eval $S --dataset nope
run "sample --steps 0" diffkit sample $R --steps 0
run "eval --steps 0" diffkit eval $R --steps 0 -n 10
run "--eta nan" diffkit sample $R --eta nan
run "--eta inf" diffkit sample $R --eta inf
run "--guidance nan" diffkit sample $R --guidance nan
run "config {train: 5}" diffkit train ddpm --preset tiny --config $W/t5.json
run "DIFFKIT_TRAIN=5" env DIFFKIT_TRAIN=5 diffkit train ddpm --preset tiny
run "--epochs abc" diffkit train ddpm --epochs abc
run "--lr abc" diffkit train ddpm --lr abc
run "--device tpu" diffkit train ddpm --device tpu
run "unknown option" diffkit train ddpm --foo
run "missing argument" diffkit sample
run "--cache-interval abc" diffkit sample $R --cache-interval abc
run "--sampler foo" diffkit sample $R --sampler foo
run "sample --out existing" diffkit sample $R -n 2 --steps 1 --out $S
run "resume with --lr" diffkit train ddpm --resume $R --lr 1
echo "--- runs with one malformed config.json"
mkdir -p $W/runs/ddpm/20990101-000000-broken && echo "{oops" > $W/runs/ddpm/20990101-000000-broken/config.json
diffkit runs 2>&1 | grep -E "broken|base|status" | cut -c1-150; echo "rc=${PIPESTATUS[0]}"
echo "--- two concurrent --resume of one run, with a stale temp file from a SIGKILL"
touch $R/checkpoints/.epoch-0001.safetensors.dead.tmp
python -m diffkit.cli.entry train ddpm --resume $R --epochs 400 --max-steps 100000 >/dev/null 2>$W/first.err & P=$!
sleep 8
run "second --resume while the first runs" diffkit train ddpm --resume $R --epochs 400 --max-steps 100000
echo "stale temp after the first resume started: $(ls $R/checkpoints/*.tmp $R/checkpoints/.*.tmp 2>/dev/null | wc -l) left"
kill -TERM $P; wait $P; echo "first resume after SIGTERM: rc=$? ($(tail -1 $W/first.err))"
echo "lock file after both: $(ls -a $R | grep -c '^.lock$') left"
echo "--- PWNED marker: $(ls $W/PWNED 2>/dev/null || echo absent)"
