"""RUN_DIR/report.html: one self-contained page (plots and GIFs inlined), rebuilt from the run directory alone."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

from worldmodels import rundir
from worldmodels.config import Config, load_config
from worldmodels.data.storage import list_episodes
from worldmodels.rundir import Round, RunDir
from worldmodels.stages import NAMES
from worldmodels.utils import atomic_write_text, read_metrics

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ddd;padding:.3em .7em;text-align:left}
th{background:#f5f5f5} .num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start} figure{margin:0}
figcaption{font-size:.9em;color:#555} img{max-width:100%;image-rendering:pixelated}
.muted{color:#666;font-size:.9em}
"""


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _figure(title: str, xlabel: str, ylabel: str, draw) -> str:
    """Draw on fresh axes with `draw(ax)`; return the figure as an inline PNG <img>."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.2), dpi=100)
    draw(ax)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return f'<img alt="{html.escape(title)}" src="{_data_uri(buf.getvalue(), "image/png")}">'


def _plot(
    series: list[tuple[str, list[float], list[float]]], title: str, xlabel: str, ylabel: str
) -> str | None:
    """A line plot, or None when there is nothing to draw."""
    series = [s for s in series if s[1]]
    if not series:
        return None

    def draw(ax) -> None:
        for label, xs, ys in series:
            ax.plot(xs, ys, label=label, marker="o" if len(xs) < 30 else None, markersize=3)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    return _figure(title, xlabel, ylabel, draw)


def _bars(values: list[float], title: str, xlabel: str, ylabel: str) -> str | None:
    if not values:
        return None
    labels = [str(i + 1) for i in range(len(values))]
    return _figure(title, xlabel, ylabel, lambda ax: ax.bar(labels, values, color="#4c72b0"))


def _series(rows: list[dict[str, Any]], stage: str, key: str) -> tuple[list[float], list[float]]:
    pts = [(r["step"], r[key]) for r in rows if r.get("stage") == stage and key in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def _fmt(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def _cell(x: Any) -> str:
    if x is None or isinstance(x, str):
        return "n/a" if x is None else x
    return f"{x:,}" if isinstance(x, int) else f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"


def _eval_rows(run_dir: Path) -> tuple[str, dict[str, dict]]:
    evals = {}
    labels = {("controller", "real"): "controller, real env", ("random", "real"): "random policy, real env",
              ("controller", "dream"): "controller, in the dream"}  # fmt: skip
    for key, name in rundir.EVALUATIONS.items():
        label = labels[key]
        p = run_dir / name
        if p.exists():
            evals[name] = {"label": label, **json.loads(p.read_text())}
    if not evals:
        return "<p>No evaluation yet: run <code>worldmodels evaluate</code>.</p>", evals
    rows = []
    for name, e in evals.items():
        rows.append(
            f'<tr data-file="{name}"><td>{e["label"]}</td><td class="num mean">{_fmt(e["mean"])}</td>'
            f'<td class="num std">{_fmt(e["std"])}</td><td class="num">{_fmt(e.get("stderr"))}</td>'
            f'<td class="num episodes">{e["episodes"]}</td><td class="num">{e["seed"]}</td></tr>'
        )
    table = ("<table><tr><th>policy, where</th><th>mean</th><th>std</th><th>std. error</th><th>n</th>"
             "<th>seed</th></tr>" + "".join(rows) + "</table>")  # fmt: skip
    agent, random = (
        rundir.EVALUATIONS[("controller", "real")],
        rundir.EVALUATIONS[("random", "real")],
    )
    if agent in evals and random in evals:
        a, b = evals[agent], evals[random]
        diff = a["mean"] - b["mean"]
        se = math.sqrt((a.get("stderr") or 0) ** 2 + (b.get("stderr") or 0) ** 2)
        verdict = "beats" if diff > 2 * se else "does not clearly beat"
        table += (f"<p>Controller minus random: <b>{diff:.1f}</b> (standard error of the difference "
                  f"{se:.1f}): the controller {verdict} the random policy (threshold: 2 standard errors). "
                  "Both were scored on the same fixed seed list.</p>")  # fmt: skip
    return table, evals


def _last(rows: list[dict[str, Any]], stage: str, key: str) -> Any:
    vals = _series(rows, stage, key)[1]
    return vals[-1] if vals else None


def _rounds_table(run_dir: Path, cfg: Config, rows: list[dict[str, Any]]) -> str:
    """One row per round: what the previous C scored while collecting, M's validation NLL and death
    recall (or, with a reward head, how its predicted returns of held-out episodes follow the real ones)
    after the round, the new C's dream evaluation, and its real-env record (if measured)."""
    reward = cfg.mdnrnn.reward_head
    m_cols = ("<th>M val. NLL</th><th>M return corr.</th><th>M return bias</th>" if reward
              else "<th>M val. NLL</th><th>M death recall</th>")  # fmt: skip
    head = ("<table><tr><th>round</th><th>episodes collected with C</th><th>their mean return</th>"
            f"{m_cols}<th>C in the dream</th><th>C in the real env</th></tr>")  # fmt: skip

    def m_stats(stage: str) -> tuple[Any, ...]:
        keys = (
            ("val_nll", "val_return_corr", "val_return_bias")
            if reward
            else ("val_nll", "val_done_recall")
        )
        return tuple(_last(rows, stage, f"mdnrnn/{k}") for k in keys)

    def read(path: Path) -> dict[str, Any]:
        return json.loads(path.read_text()) if path.exists() else {}

    def c_eval(this: Round) -> Any:
        """The periodic evaluation that chose C: the dream's, or real episodes' (controller.select_real);
        with iterate.searches or final_searches, the chosen search's."""
        searches = read(this.searches)
        if searches:
            this = this.searching(int(searches["search"]))
        stage = this.stage("train-controller")
        best = _last(rows, stage, "es/best_eval_return")
        chose_real = _last(rows, stage, "es/eval_real_return") is not None
        why = []
        if chose_real:
            why.append("real episodes chose C")
        if searches.get("committee"):
            picked = ", ".join(str(j) for j in searches["committee"])
            why.append(f"the best search's; C is the median of searches {picked} of "
                       f"{searches['searches']}, chosen on real episodes")  # fmt: skip
        elif searches:
            why.append(f"search {this.search}, the best of {searches['searches']} on real episodes")
        return f"{best:.1f} ({'; '.join(why)})" if best is not None and why else best

    run = RunDir(run_dir)

    def real(r: int) -> str | None:
        ev = read(run.round(r).eval)
        return f"{ev['mean']:.1f} +- {ev['std']:.1f} (n={ev['episodes']})" if ev else None

    chosen = run.chosen_round(cfg) if cfg.iterate.choose == "best" else None
    body, base = [], []
    for r in range(cfg.iterate.rounds + 1):  # round 0: the first M and C, on random play
        this, col = run.round(r), read(run.round(r).collect_record)
        name = "0 (random play)" if r == 0 else str(r)
        collected = (
            (cfg.collect.episodes, None)
            if r == 0
            else (col.get("episodes"), col.get("mean_return"))
        )
        base.append((f"{name} (chosen: the agent)" if r == chosen else name, *collected,
                     *m_stats(this.stage("train-mdnrnn")),
                     c_eval(this), real(r)))  # fmt: skip
    for row in base:
        body.append(
            "<tr>" + "".join(f'<td class="num">{html.escape(_cell(x))}</td>' for x in row) + "</tr>"
        )
    return head + "".join(body) + "</table>"


REPORT_INPUTS = (rundir.CONFIG, rundir.METRICS, *rundir.EVALUATIONS.values(), rundir.REAL_GIF,
                 rundir.DREAM_GIF, rundir.RECONSTRUCTIONS, rundir.CHOSEN)  # fmt: skip
"""What the report reads besides timings.json (which each stage, the report's own included, updates)."""


def report_done(run_dir: Path, cfg: Config | None = None) -> bool:
    """report.html exists and is newer than everything it shows: a report built while a run was going
    on (`worldmodels report` beside it) is rebuilt when the run reaches its report stage."""
    page = RunDir(run_dir).report
    if not page.exists():
        return False
    built = page.stat().st_mtime
    inputs = [Path(run_dir) / name for name in REPORT_INPUTS]
    return all(p.stat().st_mtime <= built for p in inputs if p.exists())


def build_report(run_dir: Path, cfg: Config | None = None, progress: bool = True) -> Path:
    """Write RUN_DIR/report.html from what the run directory holds (cfg defaults to its config.json)."""
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    cfg = cfg or load_config(run.config)
    rows = read_metrics(run_dir)
    timings = json.loads(run.timings.read_text()) if run.timings.exists() else {}
    # the pipeline's order; anything else (iterate's rounds) after it
    order = {name: i for i, name in enumerate(NAMES)}
    timings = dict(sorted(timings.items(), key=lambda kv: order.get(kv[0], len(order))))
    episodes = list_episodes(run.episodes)
    frames = sum(r.get("collect/steps", 0) for r in rows if r.get("stage") == "collect")
    parts: list[str] = []
    add = parts.append

    add(f"<h1>World Models run: {html.escape(cfg.preset)} on {html.escape(cfg.env.id)}</h1>")
    add(f'<p class="muted">Run directory <code>{html.escape(str(run_dir.resolve()))}</code>. '
        "Rebuild this page with <code>worldmodels report --run-dir DIR</code>.</p>")  # fmt: skip

    add("<h2>What was run</h2>")
    v, m, es = cfg.vae, cfg.mdnrnn, cfg.controller
    joint = " (one mixture over z)" if m.joint_mixture else ""
    summary = [
        ("environment", f"{cfg.env.id} (step limit {cfg.env.max_steps}, frame {cfg.env.frame})"),
        ("data", f"{len(episodes)} random-policy episodes, {int(frames):,} frames collected by this run"),
        ("V", f"ConvVAE, z = {v.z_dim}, {v.epochs} epoch(s), max {v.max_updates or 'all'} updates, "
              f"batch {v.batch_size}, lr {v.lr}, amp {v.amp} (bf16 where the hardware has it)"),
        ("M", f"MDN-RNN, {m.hidden} units, {m.n_mixtures} components{joint}, done head {m.done_head}, "
              f"reward head {m.reward_head}, max {m.max_updates or 'all'} updates, batch {m.batch_size}"),
        ("C", f"CMA-ES in the {es.where}, population {es.population}, {es.trials} trials, "
              f"{es.generations} generations, tau {es.temperature}, sigma0 {es.sigma0}"),
        ("seed", str(cfg.seed)),
    ]  # fmt: skip
    add(
        "<table>"
        + "".join(f"<tr><th>{k}</th><td>{html.escape(val)}</td></tr>" for k, val in summary)
        + "</table>"
    )
    if timings:
        total = sum(timings.values())
        add("<table><tr><th>stage</th><th>wall time</th></tr>" + "".join(
            f'<tr><td>{k}</td><td class="num">{t / 60:.1f} min</td></tr>' for k, t in timings.items())
            + f'<tr><th>total</th><th class="num">{total / 60:.1f} min</th></tr></table>')  # fmt: skip

    add("<h2>Evaluation</h2>")
    table, _ = _eval_rows(run_dir)
    add(table)

    add("<h2>V: the ConvVAE</h2><div class='grid'>")
    if run.reconstructions.exists():
        uri = _data_uri(run.reconstructions.read_bytes(), "image/png")
        add(f'<figure><img alt="reconstructions" src="{uri}"><figcaption>Held-out frames (top) and V\'s '
            "reconstructions (bottom).</figcaption></figure>")  # fmt: skip
    for img in (
        _plot([("loss", *_series(rows, "train-vae", "vae/loss")),
               ("validation loss", *_series(rows, "train-vae", "vae/val_loss"))], "V's loss", "update", "loss"),
        _plot([("reconstruction", *_series(rows, "train-vae", "vae/recon")),
               ("KL", *_series(rows, "train-vae", "vae/kl"))], "V's loss terms", "update", "nats / summed sq. err."),
    ):  # fmt: skip
        if img:
            add(f"<figure>{img}</figure>")
    add("</div>")

    add("<h2>M: the MDN-RNN</h2><div class='grid'>")
    nll = _plot([("train NLL", *_series(rows, "train-mdnrnn", "mdnrnn/nll")),
                 ("validation NLL", *_series(rows, "train-mdnrnn", "mdnrnn/val_nll"))],
                "M's NLL per latent dimension (negative is normal)", "update", "nats")  # fmt: skip
    done = _plot([("train", *_series(rows, "train-mdnrnn", "mdnrnn/done_loss")),
                  ("validation", *_series(rows, "train-mdnrnn", "mdnrnn/val_done_loss")),
                  ("val. recall of deaths", *_series(rows, "train-mdnrnn", "mdnrnn/val_done_recall"))],
                 "M's done head", "update", "loss / share")  # fmt: skip
    reward = _plot([("val. reward error per step", *_series(rows, "train-mdnrnn", "mdnrnn/val_reward_mae")),
                    ("val. return correlation", *_series(rows, "train-mdnrnn", "mdnrnn/val_return_corr"))],
                   "M's reward head (held-out sequences)", "update", "abs. error / corr.")  # fmt: skip
    mix = []
    usage_path = run.mixture_usage
    if usage_path.exists():
        usage = json.loads(usage_path.read_text())["usage"]
        ranked = [sorted(u, reverse=True) for u in usage]
        mix = (
            [sum(r[k] for r in ranked) / len(ranked) for k in range(len(ranked[0]))]
            if ranked
            else []
        )
    bars = _bars(mix, "Mixture usage (validation)", "component, most used first", "mean weight")
    bias = _last(rows, "train-mdnrnn", "mdnrnn/val_return_bias")
    reward_cap = (f"Last: predicted minus real return of a held-out sequence, {bias:+.1f} on average."
                  if bias is not None else "")  # fmt: skip
    for img, cap in ((nll, ""), (done, ""), (reward, reward_cap), (bars, "Each latent dimension's components sorted by weight, "
                     "averaged: a near-zero bar is a component that died out.")):  # fmt: skip
        if img:
            add(f"<figure>{img}<figcaption>{cap}</figcaption></figure>")
    add("</div>")

    add("<h2>C: CMA-ES</h2><div class='grid'>")
    es_plot = _plot([("best", *_series(rows, "train-controller", "es/return_best")),
                     ("mean", *_series(rows, "train-controller", "es/return_mean")),
                     ("worst", *_series(rows, "train-controller", "es/return_worst")),
                     ("evaluation of the mean", *_series(rows, "train-controller", "es/eval_return")),
                     ("the mean in real episodes (chose C)",
                      *_series(rows, "train-controller", "es/eval_real_return"))],
                    f"Return per generation ({es.where})", "generation", "return")  # fmt: skip
    if es_plot:
        add(f"<figure>{es_plot}</figure>")
    add("</div>")

    if cfg.iterate.rounds:
        add("<h2>Iterative training</h2>")
        add(_rounds_table(run_dir, cfg, rows))

    add("<h2>Episodes</h2><div class='grid'>")
    for name, cap in ((rundir.REAL_GIF, "A real episode (left) beside V's reconstruction (right)."),
                      (rundir.DREAM_GIF, "A dream episode: M's sampled z decoded by V.")):  # fmt: skip
        p = run_dir / name
        if p.exists():
            add(f'<figure><img alt="{name}" src="{_data_uri(p.read_bytes(), "image/gif")}">'
                f"<figcaption>{cap}</figcaption></figure>")  # fmt: skip
    add("</div>")

    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>World Models report: "
            f"{html.escape(cfg.preset)}</title><style>{CSS}</style></head><body>{''.join(parts)}</body></html>")  # fmt: skip
    out = run.report
    atomic_write_text(out, page)
    return out
