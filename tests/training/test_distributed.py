"""Two CPU processes under torchrun (gloo) end with identical weights."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from safetensors.torch import load_file

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from safetensors.torch import save_file
    from diffkit.config import PRESETS, TrainConfig, UNetConfig
    from diffkit.data import ImageData, TensorBatches
    from diffkit.nn import build_model
    from diffkit.objectives.ddpm import DDPMObjective
    from diffkit.schedules import make_schedule
    from diffkit.training import train
    from diffkit.training.distributed import destroy, dist_from_env, init_process_group

    out = sys.argv[1]
    dist = dist_from_env()
    cpu = torch.device("cpu")
    init_process_group(dist, cpu)
    torch.manual_seed(0)
    model = build_model(UNetConfig(**PRESETS["tiny"]["model"]))
    g = torch.Generator().manual_seed(1)
    data = ImageData(torch.randint(0, 256, (64, 1, 28, 28), generator=g, dtype=torch.uint8), None)
    batches = TensorBatches(data, 8, seed=0, device=cpu, rank=dist.rank, world=dist.world)
    cfg = TrainConfig(epochs=1, batch_size=8, warmup_steps=0, sample_every=0, log_every=2)
    result = train(model, DDPMObjective(make_schedule("linear")), batches, cfg, device=cpu,
                   autocast_dtype=None, run=None, run_config={}, dist=dist)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, f"{out}/rank{dist.rank}.safetensors")
    sys.stdout.write(f"steps {result.step}\\n")  # one write: atomic on a pipe, no interleaving
    destroy()
    """
)


def test_two_processes_end_with_identical_weights(tmp_path: Path):
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(script),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_file(str(tmp_path / "rank0.safetensors"))
    b = load_file(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # Sanity: training moved the weights (the zero-initialised output layer is non-zero now).
    assert a["conv_out.weight"].abs().sum() > 0
    assert proc.stdout.count("steps 4") == 2  # 64 images / 2 ranks / batch 8
