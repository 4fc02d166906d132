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


ACCUM_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys, torch
    from torch import nn
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.nn.parallel import DistributedDataParallel
    from diffkit.config import TrainConfig
    from diffkit.data import ImageData, TensorBatches
    from diffkit.training import train
    from diffkit.training.distributed import destroy, dist_from_env, init_process_group

    reductions = []  # one entry per gradient bucket DDP all-reduces
    ddp_init = DistributedDataParallel.__init__

    def counting_init(self, *args, **kwargs):
        ddp_init(self, *args, **kwargs)

        def hook(state, bucket):
            reductions.append(1)
            return allreduce_hook(state, bucket)

        self.register_comm_hook(None, hook)

    DistributedDataParallel.__init__ = counting_init

    def objective(net, x, y, generator):  # no random draws
        return (net(x) - x[:, :2].sum(1, keepdim=True)).pow(2).mean()

    out = sys.argv[1]
    dist = dist_from_env()
    cpu = torch.device("cpu")
    init_process_group(dist, cpu)
    data = ImageData(torch.randn(96, 4, generator=torch.Generator().manual_seed(1)), None)
    batches = TensorBatches(data, 4, seed=0, device=cpu, rank=dist.rank, world=dist.world)
    report = {}
    for k in (1, 2):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
        cfg = TrainConfig(epochs=1, batch_size=4, grad_accum=k, warmup_steps=0, grad_clip=None,
                          sample_every=0, log_every=4)
        reductions.clear()
        result = train(model, objective, batches, cfg, device=cpu, autocast_dtype=None,
                       run=None, run_config={}, dist=dist)
        report[k] = {"steps": result.step, "reductions": len(reductions)}
        grads = {f"grad.{i}": p.grad for i, p in enumerate(model.parameters())}
        torch.save(model.state_dict() | grads, f"{out}/k{k}-rank{dist.rank}.pt")

    def signal_on_rank_1(event):  # only rank 1 is interrupted, at step 4
        if event.kind == "log" and event.step == 4 and dist.rank == 1:
            os.kill(os.getpid(), signal.SIGINT)

    cfg = TrainConfig(epochs=2, batch_size=4, warmup_steps=0, sample_every=0, log_every=4)
    result = train(model, objective, batches, cfg, device=cpu, autocast_dtype=None, run=None,
                   run_config={}, dist=dist, on_event=signal_on_rank_1)
    report["stop"] = [result.reason, result.step]
    with open(f"{out}/rank{dist.rank}.json", "w") as f:
        json.dump(report, f)
    destroy()
    """
)


def test_accumulation_and_stop_votes_under_ddp(tmp_path: Path):
    """Two gloo processes: 2 micro-batches reduce gradients once a step (no_sync) and end
    with the weights of whole batches; a signal on one rank stops both at the next vote."""
    from diffkit.training.distributed import STOP_VOTE_EVERY

    script = tmp_path / "accum.py"
    script.write_text(ACCUM_SCRIPT)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(script), str(tmp_path)],
        capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for report in reports:
        # 96 rows / 2 ranks / batch 4: 12 steps, one bucket reduced per step whatever k
        assert report["1"] == report["2"] == {"steps": 12, "reductions": 12}
        # rank 1 was signalled at step 4; both vote at step 10 and stop there
        assert report["stop"] == ["interrupted", STOP_VOTE_EVERY]
    states = {(k, r): torch.load(tmp_path / f"k{k}-rank{r}.pt") for k in (1, 2) for r in (0, 1)}
    for key, value in states[1, 0].items():
        assert torch.equal(states[1, 1][key], value), key  # the ranks agree, bit for bit
        assert torch.equal(states[2, 1][key], states[2, 0][key]), key
        torch.testing.assert_close(states[2, 0][key], value, atol=1e-6, rtol=0, msg=key)


def test_one_process_stops_at_the_next_step_and_ranks_vote_on_a_schedule():
    """No collective off the vote steps (none is set up here: one would raise)."""
    from diffkit.training.distributed import STOP_VOTE_EVERY, DistInfo, stop_agreed

    cpu = torch.device("cpu")
    assert [stop_agreed(True, s, DistInfo(), cpu) for s in (1, 2, 3)] == [True] * 3
    assert not stop_agreed(False, STOP_VOTE_EVERY, DistInfo(), cpu)
    two = DistInfo(rank=1, world=2)
    assert not any(stop_agreed(True, s, two, cpu) for s in range(1, STOP_VOTE_EVERY))
