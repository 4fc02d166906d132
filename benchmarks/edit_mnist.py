"""Image editing on a class-conditional MNIST DDPM, scored by the MNIST feature classifier.

Measures, with a fixed seed, DDIM and classifier-free guidance (``--guidance``, the CLI's 3):

1. Visual anagrams (``anagram`` with views identity and rot180 / flip) for all 10 x 10
   digit pairs (p1, p2): the rate the classifier reads the image as p1 and its view as p2;
   next to it, how the classifier reads views of real test digits (a real 6 turned is a 9)
   and plain guided samples of each class.
2. Hybrid images (``factorized`` with lowpass / highpass): the image read as the
   high-frequency prompt, its blur as the low-frequency one, for the 90 off-diagonal pairs.
3. Inpainting of the top or bottom half of test digits by replacement (``inpaint``, DDIM)
   and RePaint (``repaint``, ancestral): accuracy on the true class, unprompted and
   prompted, and FID of the completions against the test split (classifier features).
4. SDEdit (``sdedit``) of test digits of class a towards the prompt b = (a + 1) % 10 from
   several start points of a DDIM grid: the rate the output reads as a and as b.

Run from the repository root (about 10 minutes on 2 CPU cores at the defaults)::

    DIFFKIT_DATA_DIR=../shared/data python benchmarks/edit_mnist.py \\
        --run runs/ddpm/RUN --classifier runs/classifier/RUN \\
        --data-dir ../shared/data --out edit_tables.md --device cpu

``--sections`` picks a subset (anagram,hybrid,inpaint,sdedit) and the ``--n-*`` options the
sample sizes, e.g. for a quick check on a tiny model.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from torch import Tensor

from diffkit.config.run import DataConfig
from diffkit.data.loader import to_uint8
from diffkit.data.registry import load_dataset
from diffkit.edit.compose import anagram, factorized, with_guidance
from diffkit.edit.filters import highpass, lowpass
from diffkit.edit.loops import inpaint, repaint, sdedit
from diffkit.edit.repaint import jump_schedule
from diffkit.edit.views import VIEWS, View
from diffkit.eval.features import ClassifierFeatures, extract, load_classifier
from diffkit.eval.metrics import GaussianStats, frechet_distance
from diffkit.methods.load import load_pipeline
from diffkit.methods.pipeline import Net, Pipeline
from diffkit.models.conditioning import Cond

DIGITS = 10
SECTIONS = ("anagram", "hybrid", "inpaint", "sdedit")
MASKS = ("top", "bottom")
NOTABLE = {  # (a, b) cells worth a line: digits that read as themselves or another
    "rot180": ((6, 9), (9, 6), (0, 0), (1, 1), (8, 8), (5, 5)),
    "flip": ((0, 0), (1, 1), (3, 3), (8, 8), (5, 2), (2, 5)),
}
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f} s] {msg}", flush=True)


@dataclass
class Bench:
    """What every section needs: the model, the classifier, the test split, the settings."""

    pipe: Pipeline
    clf: ClassifierFeatures
    images: Tensor  # (N, 1, 28, 28) float in [-1, 1], the MNIST test split
    labels: Tensor  # (N,)
    reference: GaussianStats  # classifier features of the whole test split
    args: argparse.Namespace

    def cond(self, labels: Tensor) -> Cond:
        return Cond(labels=labels.long()).to(self.pipe.device)

    def guided(self) -> Net:
        """The raw network guided towards whatever condition a combinator passes it."""
        model = self.pipe.model
        return with_guidance(model.raw, model.unconditional, self.args.guidance)


# --- classifier -----------------------------------------------------------------------


def features(clf: ClassifierFeatures, images: Tensor) -> tuple[Tensor, Tensor]:
    """Features and logits of float images in [-1, 1]."""
    return extract(clf, to_uint8(images))


def predict(clf: ClassifierFeatures, images: Tensor) -> Tensor:
    return features(clf, images)[1].argmax(1)


def fid(bench: Bench, images: Tensor) -> float:
    return frechet_distance(GaussianStats.of(features(bench.clf, images)[0]), bench.reference)


def per_class(labels: Tensor, k: int, skip: int = 0) -> Tensor:
    """Indices of ``k`` test digits of each class (after the first ``skip`` of each)."""
    return torch.cat([(labels == c).nonzero()[skip : skip + k, 0] for c in range(DIGITS)])


# --- sampling -----------------------------------------------------------------------------


def integrate(bench: Bench, make_net: Callable[[slice], Net], n: int, seed: int) -> Tensor:
    """``n`` images from seeded noise, as the CLI's ``_integrate`` but in batches;
    ``make_net(rows)`` is the combined network for rows ``rows`` of the request."""
    pipe, args = bench.pipe, bench.args
    noise = torch.randn(n, *pipe.model.sample_shape, generator=torch.Generator().manual_seed(seed))
    gen = torch.Generator(pipe.device).manual_seed(seed + 1)
    opts = pipe.options("ddim", {})
    out = []
    for start in range(0, n, args.batch):
        rows = slice(start, min(start + args.batch, n))
        x, _ = pipe.integrate(make_net(rows), noise[rows].to(pipe.device), "ddim", args.steps,
                              opts, gen, None)  # fmt: skip
        out.append(x.float().cpu().clamp(-1, 1))
        log(f"  {rows.stop}/{n} images")
    return torch.cat(out)


def pairs(n: int, off_diagonal: bool = False) -> tuple[Tensor, Tensor]:
    """Prompt pairs (p1, p2), ``n`` rows each: all 10 x 10, or the 90 with p1 != p2."""
    grid = [(a, b) for a in range(DIGITS) for b in range(DIGITS) if not off_diagonal or a != b]
    p = torch.tensor(grid).repeat_interleave(n, dim=0)
    return p[:, 0], p[:, 1]


# --- markdown -------------------------------------------------------------------------------


def pct(x: float | Tensor) -> str:
    return f"{100 * float(x):.0f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def grid_table(corner: str, cells: Tensor) -> list[str]:
    """A 10 x 10 table of rates in percent, rows the first index, columns the second;
    NaN cells (not measured) as a dash."""
    rows = [[f"**{a}**", *("-" if v != v else pct(v) for v in cells[a].tolist())]
            for a in range(DIGITS)]  # fmt: skip
    return table([corner, *map(str, range(DIGITS))], rows)


def pair_grid(p1: Tensor, p2: Tensor, hit: Tensor) -> Tensor:
    """Mean of ``hit`` per (p1, p2) cell, NaN where there is no row."""
    total = torch.zeros(DIGITS, DIGITS).index_put_((p1, p2), hit.float(), accumulate=True)
    count = torch.zeros(DIGITS, DIGITS).index_put_((p1, p2), torch.ones(len(p1)), accumulate=True)
    return total / count


# --- 1. anagrams ----------------------------------------------------------------------------


def confusion(truth: Tensor, pred: Tensor) -> Tensor:
    """(10, 10) row-normalised: the share of rows of class a predicted as b."""
    m = torch.zeros(DIGITS, DIGITS).index_put_((truth, pred), torch.ones(len(pred)),
                                               accumulate=True)  # fmt: skip
    return m / m.sum(1, keepdim=True).clamp(min=1)


def plain_samples(bench: Bench) -> tuple[Tensor, Tensor]:
    """Guided samples, ``--n-plain`` per class, and their labels."""
    y = torch.arange(DIGITS).repeat_interleave(bench.args.n_plain)
    raw = bench.guided()

    def make(rows: slice) -> Net:
        return lambda x, t, _=None: raw(x, t, bench.cond(y[rows]))

    return integrate(bench, make, len(y), bench.args.seed), y


def anagram_rates(bench: Bench, view: View) -> tuple[Tensor, Tensor, Tensor, Tensor, float]:
    """p1, p2 and whether the image / its view read as p1 / p2; also the seconds taken."""
    p1, p2 = pairs(bench.args.n_anagram)
    raw, views = bench.guided(), [VIEWS["identity"], view]
    began = time.perf_counter()

    def make(rows: slice) -> Net:
        return anagram(raw, [bench.cond(p1[rows]), bench.cond(p2[rows])], views)

    images = integrate(bench, make, len(p1), bench.args.seed)
    ok1 = predict(bench.clf, images) == p1
    ok2 = predict(bench.clf, view.apply(images)) == p2
    return p1, p2, ok1, ok2, time.perf_counter() - began


def anagram_section(bench: Bench) -> list[str]:
    args = bench.args
    out = ["## 1. Visual anagrams", ""]
    log(f"plain guided samples, {args.n_plain} per class")
    plain, y = plain_samples(bench)
    plain_acc = pct((predict(bench.clf, plain) == y).float().mean())
    out += [f"Plain guided samples ({args.n_plain} per class, DDIM {args.steps}, w = "
            f"{args.guidance:g}) read as their class: **{plain_acc} %**.", ""]  # fmt: skip
    summary: list[list[str]] = []
    notable: list[list[str]] = []
    grids: list[str] = []
    for name in args.views.split(","):
        view = VIEWS[name]
        log(f"anagrams identity + {name}: 100 pairs x {args.n_anagram}")
        p1, p2, ok1, ok2, secs = anagram_rates(bench, view)
        both = ok1 & ok2
        off = p1 != p2
        real = confusion(bench.labels, predict(bench.clf, view.apply(bench.images)))
        fake = confusion(y, predict(bench.clf, view.apply(plain)))
        cells = pair_grid(p1, p2, both)
        summary.append([name, pct(both.float().mean()), pct(both[off].float().mean()),
                        pct(ok1.float().mean()), pct(ok2.float().mean()),
                        f"{secs:.0f}"])  # fmt: skip
        notable += [[name, f"{a} -> {b}", pct(real[a, b]), pct(fake[a, b]), pct(cells[a, b])]
                    for a, b in NOTABLE.get(name, ((0, 0), (1, 1), (8, 8)))]  # fmt: skip
        grids += [f"**{name}**: anagrams read as p1 (identity) and p2 ({name}), % of "
                  f"{args.n_anagram} per cell (rows p1, columns p2):", "",
                  *grid_table("p1 \\ p2", cells), "",
                  f"**{name}**: real test digits of class a read as b under {name}, % "
                  "(rows a, columns b):", "", *grid_table("a \\ b", real), "",
                  f"**{name}**: plain samples of class a read as b under {name}, % of "
                  f"{args.n_plain} (rows a, columns b):", "",
                  *grid_table("a \\ b", fake), ""]  # fmt: skip
    header = ["view", "both, all pairs", "both, p1 != p2", "identity as p1", "view as p2",
              "seconds"]  # fmt: skip
    cell_header = ["view", "a -> b", "real test digits a read as b under the view",
                   f"plain samples of a ({args.n_plain}) read as b",
                   f"anagrams (a, b) both correct ({args.n_anagram})"]  # fmt: skip
    out += [f"{args.n_anagram} anagrams per (p1, p2), all 100 pairs; rates in %:", "",
            *table(header, summary), "", "Notable cells, %:", "",
            *table(cell_header, notable), "", *grids]  # fmt: skip
    return out


# --- 2. hybrids -----------------------------------------------------------------------------


def hybrid_section(bench: Bench) -> list[str]:
    args = bench.args
    lo, hi = lowpass(args.sigma, args.kernel), highpass(args.sigma, args.kernel)
    low, high = pairs(args.n_hybrid, off_diagonal=True)
    raw = bench.guided()
    log(f"hybrids: 90 pairs x {args.n_hybrid}")
    began = time.perf_counter()

    def make(rows: slice) -> Net:
        return factorized(raw, [bench.cond(low[rows]), bench.cond(high[rows])], [lo, hi])

    images = integrate(bench, make, len(low), args.seed)
    secs = time.perf_counter() - began
    near, far = predict(bench.clf, images), predict(bench.clf, lo(images))
    ok_hi, ok_lo = near == high, far == low
    both = ok_hi & ok_lo
    real_blur = (predict(bench.clf, lo(bench.images)) == bench.labels).float().mean()
    rows = [[pct(ok_hi.float().mean()), pct(ok_lo.float().mean()), pct(both.float().mean()),
             pct((near == low).float().mean()), pct((far == high).float().mean()),
             pct(real_blur), f"{secs:.0f}"]]  # fmt: skip
    header = [
        "image as high",
        "lowpass(image) as low",
        "both",
        "image as low",
        "lowpass(image) as high",
        "real test digits: lowpass(x) as class",
        "seconds",
    ]
    return ["## 2. Hybrid images", "",
            f"factorized(lowpass, highpass), sigma {args.sigma:g}, kernel {args.kernel}; "
            f"{args.n_hybrid} images per (low, high) pair, the 90 pairs low != high; rates in %:",
            "", *table(header, rows), "",
            f"Both read correctly, % of {args.n_hybrid} per cell (rows low, columns high):", "",
            *grid_table("low \\ high", pair_grid(low, high, both)), ""]  # fmt: skip


# --- 3. inpainting --------------------------------------------------------------------------


def half_mask(which: str) -> Tensor:
    """(1, 1, 28, 28), 1 (regenerate) on the top or bottom 14 rows."""
    m = torch.zeros(1, 1, 28, 28)
    rows = slice(0, 14) if which == "top" else slice(14, 28)
    m[..., rows, :] = 1
    return m


def repaint_settings(spec: str) -> tuple[int, int, int]:
    steps, jump, resample = (int(v) for v in spec.split(","))
    return steps, jump, resample


def inpaint_methods(bench: Bench) -> dict[str, Callable[[Tensor, Tensor, Cond | None], Tensor]]:
    """name -> fill(images, mask, cond) for replacement and RePaint."""
    args, pipe = bench.args, bench.pipe
    steps, jump, resample = repaint_settings(args.repaint)
    w, seed = args.guidance, args.seed

    def replace(x: Tensor, m: Tensor, c: Cond | None) -> Tensor:
        return inpaint(pipe, x, m, sampler="ddim", steps=args.steps, cond=c,
                       guidance=w if c else 1.0, seed=seed)  # fmt: skip

    def resampled(x: Tensor, m: Tensor, c: Cond | None) -> Tensor:
        return repaint(pipe, x, m, steps=steps, jump=jump, resample=resample, cond=c,
                       guidance=w if c else 1.0, seed=seed)  # fmt: skip

    return {f"replace (ddim {args.steps})": replace,
            f"RePaint (ddpm {steps}, jump {jump}, resample {resample})": resampled}  # fmt: skip


def inpaint_row(bench: Bench, name: str, x: Tensor, y: Tensor, secs: float) -> list[str]:
    acc = (predict(bench.clf, x) == y).float().mean()
    return [name, pct(acc), f"{fid(bench, x):.1f}", f"{secs:.0f}"]


def inpaint_section(bench: Bench) -> list[str]:
    args = bench.args
    idx = per_class(bench.labels, args.n_inpaint // DIGITS)
    x, y = bench.images[idx], bench.labels[idx]
    prompts = [p for p in args.inpaint_prompts.split(",") if p]
    rows = [["originals (no mask)", *inpaint_row(bench, "", x, y, 0)[1:3], "-"]]
    steps, jump, resample = repaint_settings(args.repaint)
    for which in MASKS:
        m = half_mask(which)
        blank = x * (1 - m) - m
        rows.append([f"{which} half blanked (black), no fill",
                     *inpaint_row(bench, "", blank, y, 0)[1:3], "-"])  # fmt: skip
        for method, fill in inpaint_methods(bench).items():
            for prompt in prompts:
                label = f"{which}: {method}, " + (
                    "no prompt" if prompt == "none" else f"true class, w {args.guidance:g}"
                )
                log(f"inpaint {label}, {len(x)} digits")
                c = bench.cond(y) if prompt == "class" else None
                began = time.perf_counter()
                out = fill(x, m, c).clamp(-1, 1)
                rows.append(inpaint_row(bench, label, out, y, time.perf_counter() - began))
    moves = len(jump_schedule(steps, jump, resample))
    evals = moves - (moves - steps) // 2
    return ["## 3. Inpainting", "",
            f"{len(x)} test digits ({len(x) // DIGITS} per class, the first of each), mask = "
            "the top or bottom 14 rows (1 = regenerate). Accuracy: the completed digit read "
            "as its true class. FID: classifier features of the completions against all "
            f"10 000 test digits; at n = {len(x)} FID is biased upwards and noisy, compare "
            f"with the originals' row (the floor at this n). RePaint takes {evals} network "
            f"evaluations per image ({moves} moves) against {args.steps} for replacement "
            "(twice that with guidance).", "",
            *table(["case", "accuracy %", f"FID (n = {len(x)})", "seconds"], rows), ""]  # fmt: skip


# --- 4. SDEdit ------------------------------------------------------------------------------


def sdedit_section(bench: Bench) -> list[str]:
    args = bench.args
    starts = [int(s) for s in args.starts.split(",")]
    idx = per_class(bench.labels, args.n_sdedit // DIGITS, skip=args.n_inpaint // DIGITS)
    x, a = bench.images[idx], bench.labels[idx]
    b = (a + 1) % DIGITS
    rows = []
    for w in (float(v) for v in args.sdedit_guidance.split(",")):
        for k in starts:
            log(f"sdedit w {w:g} from grid point {k} of {args.sdedit_steps}, {len(x)} digits")
            began = time.perf_counter()
            out = sdedit(bench.pipe, x, k, sampler="ddim", steps=args.sdedit_steps,
                         cond=bench.cond(b), guidance=w, seed=args.seed).clamp(-1, 1)  # fmt: skip
            secs = time.perf_counter() - began
            pred = predict(bench.clf, out)
            rows.append([f"{w:g}", str(k), f"{args.sdedit_steps - k}",
                         pct((pred == a).float().mean()), pct((pred == b).float().mean()),
                         f"{(out - x).pow(2).mean():.3f}", f"{secs:.0f}"])  # fmt: skip
    header = [
        "guidance",
        "start",
        "steps run",
        "reads as source a %",
        "reads as prompt b %",
        "MSE to source",
        "seconds",
    ]
    return ["## 4. SDEdit", "",
            f"{len(x)} test digits ({len(x) // DIGITS} per class) of class a, prompt b = "
            f"(a + 1) % 10, DDIM {args.sdedit_steps}-step grid started at grid point `start` "
            "(0 = pure noise; larger keeps more of the source):", "",
            *table(header, rows), ""]  # fmt: skip


# --- cost --------------------------------------------------------------------------------


def planned_evals(args: argparse.Namespace) -> dict[str, int]:
    """Network evaluations (images through the network) each section will take; a guided
    call counts twice, as it runs the conditional and unconditional halves."""
    pair = 2 * args.steps  # one guided step
    views = len(args.views.split(","))
    anagram = DIGITS * args.n_plain * pair + views * 100 * args.n_anagram * 2 * pair
    steps, jump, resample = repaint_settings(args.repaint)
    moves = len(jump_schedule(steps, jump, resample))
    per_prompt = {"none": 1, "class": 2}
    prompts = sum(per_prompt[p] for p in args.inpaint_prompts.split(",") if p)
    inpaint = len(MASKS) * args.n_inpaint * prompts * (args.steps + moves - (moves - steps) // 2)
    scales = [float(v) for v in args.sdedit_guidance.split(",")]
    run = sum(args.sdedit_steps - int(k) for k in args.starts.split(","))
    sde = args.n_sdedit * run * sum(1 if w == 1 else 2 for w in scales)
    return {"anagram": anagram, "hybrid": 90 * args.n_hybrid * 2 * pair, "inpaint": inpaint,
            "sdedit": sde}  # fmt: skip


# --- main -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="class-conditional MNIST DDPM run")
    ap.add_argument("--classifier", type=Path, required=True, help="MNIST classifier run")
    ap.add_argument("--data-dir", type=Path, required=True, help="holds mnist/")
    ap.add_argument("--out", type=Path, required=True, help="markdown file to write")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=50, help="DDIM steps")
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--batch", type=int, default=125, help="images per sampling call")
    ap.add_argument("--views", default="rot180,flip")
    ap.add_argument("--n-plain", type=int, default=10, help="plain samples per class")
    ap.add_argument("--n-anagram", type=int, default=5, help="anagrams per digit pair")
    ap.add_argument("--n-hybrid", type=int, default=4, help="hybrids per digit pair")
    ap.add_argument("--sigma", type=float, default=2.0)
    ap.add_argument("--kernel", type=int, default=33)
    ap.add_argument("--n-inpaint", type=int, default=200, help="test digits (10 classes)")
    ap.add_argument("--inpaint-prompts", default="none,class", help="none and/or class")
    ap.add_argument("--repaint", default="50,5,5", help="RePaint steps,jump,resample")
    ap.add_argument("--n-sdedit", type=int, default=100, help="test digits (10 classes)")
    ap.add_argument("--starts", default="1,3,5,7,10,20")
    ap.add_argument("--sdedit-steps", type=int, default=30)
    ap.add_argument("--sdedit-guidance", default="3", help="comma-separated scales")
    return ap.parse_args(argv)


def setup(args: argparse.Namespace) -> Bench:
    pipe = load_pipeline(args.run, args.device)
    clf = load_classifier(args.classifier, args.device)
    test = load_dataset(DataConfig(dataset="mnist"), args.data_dir, "test", download=False)
    assert test.labels is not None
    images = test.images.float() / 127.5 - 1
    reference = GaussianStats.of(extract(clf, test.images)[0])
    log(f"loaded {args.run} ({pipe.model.name}), classifier test accuracy "
        f"{clf.test_accuracy}, {len(images)} test digits")  # fmt: skip
    return Bench(pipe, clf, images, test.labels, reference, args)


def header(args: argparse.Namespace, seconds: dict[str, float], plan: dict[str, int]
           ) -> list[str]:  # fmt: skip
    command = shlex.join([sys.executable if sys.argv[0].endswith(".py") else "", *sys.argv])
    timing = ", ".join(f"{k} {v:.0f} s ({plan[k] / 1000:.0f} k network evaluations)"
                       for k, v in seconds.items())  # fmt: skip
    return ["# Image editing on MNIST (class-conditional DDPM)", "",
            f"Date: {datetime.now():%Y-%m-%d %H:%M}. Command:", "", "```", command.strip(), "```",
            "", f"Model: `{args.run}`; classifier: `{args.classifier}`; device {args.device}, "
            f"{torch.get_num_threads()} torch threads, torch {torch.__version__}. Seed "
            f"{args.seed}, DDIM {args.steps} steps (eta 0), guidance w = {args.guidance:g} "
            f"unless stated. Wall time: {timing}, total {sum(seconds.values()):.0f} s.",
            ""]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    bench = setup(args)
    plan = planned_evals(args)
    log("planned network evaluations: " + ", ".join(f"{k} {v}" for k, v in plan.items()))
    sections = {"anagram": anagram_section, "hybrid": hybrid_section,
                "inpaint": inpaint_section, "sdedit": sdedit_section}  # fmt: skip
    body: list[str] = []
    seconds: dict[str, float] = {}
    for name in args.sections.split(","):
        began = time.perf_counter()
        body += sections[name](bench)
        seconds[name] = time.perf_counter() - began
        log(f"{name} done in {seconds[name]:.0f} s")
    args.out.write_text("\n".join(header(args, seconds, plan) + body))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
