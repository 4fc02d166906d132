"""``diffkit reflow make-pairs`` and ``straightness``: pairs from a flow's ODE, and how
straight its paths are. Both refuse a source that is not a rectified flow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffkit.app.report import QUIET, Reporter
from diffkit.errors import UsageError

if TYPE_CHECKING:
    from diffkit.config.run import PairsConfig
    from diffkit.config.settings import Settings


def load_flow(source: Path, settings: Settings, use_ema: bool = True) -> Any:
    """The flow pipeline of ``source`` on the settings' device; a DDPM or anything else is
    a usage error."""
    from diffkit.methods.flow import FlowPipeline
    from diffkit.methods.load import load_pipeline
    from diffkit.training.hardware import resolve_device

    pipe = load_pipeline(source, resolve_device(settings.device), use_ema=use_ema)
    if not isinstance(pipe, FlowPipeline):
        raise UsageError(f"{source} is a {pipe.model.name} model; reflow needs a "
                         "rectified flow (`diffkit train rf`)")  # fmt: skip
    return pipe


@dataclass(frozen=True)
class PairsRequest:
    """``n`` (noise, sample[, label]) pairs from the flow ``source``, ``steps`` of
    ``solver`` each, ``shard_size`` per file; or, with ``resume``, the rest of that
    interrupted pair set as it was planned (then no ``source``)."""

    source: Path | None = None
    n: int = 60_000
    steps: int = 100
    solver: str | None = None  # default: the flows' default solver
    shard_size: int = 5000
    batch_size: int = 500
    guidance: float = 1.0
    seed: int = 0
    name: str | None = None
    resume: Path | None = None


@dataclass(frozen=True)
class PairsPlan:
    """A pair set about to be written: its config, folder and flow."""

    cfg: PairsConfig
    folder: Path
    pipe: Any
    resume: bool


def plan_pairs(req: PairsRequest, settings: Settings) -> PairsPlan:
    """Check ``req``, load its flow and make (or find) the pair set's folder."""
    from diffkit.methods.reflow import file_sha256
    from diffkit.runs.checkpoint import resolve_checkpoint
    from diffkit.runs.layout import RunDir, check_writable

    cfg, folder, source = _pairs_config(req)
    check_writable(folder or settings.runs_dir)  # before any sampling, not after
    pipe = load_flow(source, settings, cfg.use_ema)
    if req.resume is not None and file_sha256(resolve_checkpoint(source)) != cfg.source_sha256:
        raise UsageError(f"{source} changed since {req.resume} was started (sha256 differs)")
    if req.guidance != 1.0 and pipe.num_classes is None:
        raise UsageError("--guidance needs a class-conditional flow")
    _check_pairs_room(cfg, pipe, folder or settings.runs_dir / "pairs")
    folder = folder or RunDir.create(settings.runs_dir, "pairs", cfg.name, subfolders=False).path
    return PairsPlan(cfg, folder, pipe, req.resume is not None)


def _check_pairs_room(cfg: PairsConfig, pipe: Any, folder: Path) -> None:
    """Refuse a pair set whose shards cannot fit on disk (noise and sample in float32 per
    pair, a label each for a class-conditional flow, and the manifest; a resumed set needs
    only what its shards on disk lack), or whose shard and one batch cannot fit in memory."""
    import math

    from diffkit.app.room import LABEL, image_bytes
    from diffkit.resources import FLOAT, check_disk, check_memory, human_bytes

    labelled = pipe.num_classes is not None
    shape = pipe.model.sample_shape
    per = 2 * FLOAT * math.prod(shape) + (LABEL if labelled else 0)
    shards = -(-cfg.n // cfg.shard_size)
    have = sum(p.stat().st_size for p in folder.glob("shard-*.safetensors"))  # resumed
    need = cfg.n * per + shards * 512 + 64 * 1024 - have  # and a manifest entry per shard
    check_disk(need, folder, f"-n {cfg.n} pairs ({per} bytes per pair)")
    # A shard's noise, its samples, their concatenation and its serialised bytes stay in
    # memory until it is written; one batch is solved at a time.
    shard, batch = min(cfg.n, cfg.shard_size), min(cfg.n, cfg.batch_size)
    rows = 2 if cfg.guidance != 1.0 and labelled else 1
    solve = image_bytes(pipe, rows=rows)
    check_memory(shard * 5 * per // 2 + batch * solve,
                 f"--shard-size {cfg.shard_size} and --batch-size {cfg.batch_size} "
                 f"({human_bytes(per)} per pair)")  # fmt: skip


def _pairs_config(req: PairsRequest) -> tuple[PairsConfig, Path | None, Path]:
    """The pair set's config, its folder (None: a new one) and the flow's path."""
    import json

    from diffkit.config.resolve import validate
    from diffkit.config.run import PairsConfig
    from diffkit.methods.reflow import file_sha256
    from diffkit.runs.checkpoint import resolve_checkpoint

    if req.resume is not None:
        if req.source is not None:
            raise UsageError("--resume continues a pair set as made; give no SOURCE")
        try:
            cfg = validate(PairsConfig, json.loads((req.resume / "config.json").read_text()))
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"cannot resume {req.resume}: no pair-set config.json ({exc})"
            ) from None
        return cfg, req.resume, Path(cfg.source)
    if req.source is None:
        raise UsageError("give the flow to integrate (SOURCE) or --resume PAIRS")
    from diffkit.samplers import registry

    ckpt = resolve_checkpoint(req.source)
    cfg = validate(PairsConfig, {
        "source": str(req.source), "source_sha256": file_sha256(ckpt), "n": req.n,
        "steps": req.steps, "solver": req.solver or registry.default("flow"),
        "shard_size": req.shard_size,
        "batch_size": req.batch_size, "seed": req.seed, "guidance": req.guidance,
        **({"name": req.name} if req.name else {}),
    })  # fmt: skip
    return cfg, None, req.source


def write_pairs(plan: PairsPlan, report: Reporter = QUIET) -> dict[str, Any]:
    """Integrate the flow shard by shard into the plan's folder (a resumed shard whose file
    is intact is kept); the manifest. Interrupted, the finished shards stay."""
    from diffkit.methods.reflow import make_pairs

    cfg = plan.cfg
    with report.steps(f"{cfg.solver}-{cfg.steps}, pairs", cfg.n) as advance:

        def kept(p) -> None:  # a resumed shard whose file is intact counts as done
            if p.skipped:
                advance(min(cfg.shard_size, cfg.n - p.shard * cfg.shard_size))

        return make_pairs(cfg, plan.pipe, plan.folder, resume=plan.resume, on_shard=kept,
                          on_batch=advance)  # fmt: skip


def pairs_summary(cfg: PairsConfig, manifest: dict[str, Any]) -> str:
    """One line: pairs, shards, the time they took and the source's straightness."""
    made = sum(e.get("seconds", 0.0) for e in manifest["shards"].values())
    s = manifest.get("straightness")
    source = f"; straightness S of the source {s:.4g}" if s is not None else ""
    return (
        f"{cfg.n} pairs in {len(manifest['shards'])} shards ({made:.0f} s of sampling in all)"
        + source
    )


@dataclass(frozen=True)
class StraightnessRequest:
    """Straightness S of ``source``'s ODE paths: ``n`` paths of ``steps`` Euler steps."""

    source: Path
    n: int = 500
    steps: int = 100
    guidance: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 2 or self.steps < 1:
            raise UsageError("-n must be at least 2 and --steps at least 1")


def _check_paths_room(pipe: Any, req: StraightnessRequest) -> None:
    """Refuse ``req.n`` paths whose noise (drawn for all of them at once) and one batch of
    500 cannot fit in memory."""
    import math

    from diffkit.app.room import check_sampling_memory
    from diffkit.resources import FLOAT

    noise = FLOAT * math.prod(pipe.model.sample_shape)
    guided = req.guidance != 1.0 and pipe.num_classes is not None
    check_sampling_memory(pipe, req.n, 500, rows=2 if guided else 1, held=noise,
                          labelled=pipe.num_classes is not None, what=f"-n {req.n}")  # fmt: skip


def straightness(req: StraightnessRequest, settings: Settings) -> dict[str, Any]:
    """S = int E||(x1 - x0) - v(x_t, t)||^2 dt / d (0 = straight lines; Liu et al. 2022,
    Eq. 5) and its spread; written to the run's straightness.json when ``source`` is in a
    run folder."""
    from diffkit.methods.reflow import straightness as measure
    from diffkit.runs.layout import run_folder_of, write_json

    pipe = load_flow(req.source, settings)
    if req.guidance != 1.0 and pipe.num_classes is None:
        raise UsageError("--guidance needs a class-conditional flow")
    _check_paths_room(pipe, req)
    s = measure(pipe, n=req.n, steps=req.steps, seed=req.seed, guidance=req.guidance)
    folder = run_folder_of(req.source)
    if (folder / "config.json").is_file():
        write_json(folder / "straightness.json", s)
    return s
