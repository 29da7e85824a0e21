"""The evaluation report: Markdown for the repository, one self-contained HTML file to share.

The report puts the numbers in tables, the words of ``build.analysis.findings`` under them and the
plots of ``build.analysis.plots`` below (linked from the Markdown, embedded in the HTML)::

    >>> plots = make_plots(metrics, y_true, probabilities, out_dir, training_log=run / "log.csv")
    >>> md_path, html_path = write_report(out_dir, metrics, plots, title="HAM10000 test split",
    ...                                   context={"model": "bundle v1.0 int8"})
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from build.atomic import write_text_atomic
from build.analysis.findings import format_interval, interpret, recommendations
from build.analysis.metrics import Metrics
from build.analysis.plots import PLOT_TITLES


REPORT_MD = "report.md"
REPORT_HTML = "report.html"


def write_report(
    out_dir: str | os.PathLike,
    metrics: Metrics,
    plots: Mapping[str, str | os.PathLike],
    *,
    title: str,
    context: Mapping[str, str] | None = None,
    card: Any = None,
) -> tuple[Path, Path]:
    """Writes report.md (plots linked) and report.html (plots embedded as base64) into ``out_dir``.

    Args:
        out_dir: Output folder (created). The Markdown links plots relative to it.
        metrics: The evaluation.
        plots: Plot name -> PNG path, e.g. from :func:`make_plots`.
        title: Report heading, e.g. ``"skinlesion int8 on HAM10000 test"``.
        context: What was evaluated, shown as a table (model, data, split, variant, TTA...).
        card: The evaluated bundle's model card, whose facts shape the recommendations.

    Returns:
        ``(md_path, html_path)``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = [str(p) for p in plots.values() if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"plots not found: {missing}; draw them first (build.analysis.plots.make_plots)"
        )
    sections = _sections(metrics, context or {}, card)
    md = _markdown(title, sections, plots, out_dir)
    page = _html(title, sections, plots)
    return write_text_atomic(out_dir / REPORT_MD, md), write_text_atomic(out_dir / REPORT_HTML, page)


def _sections(metrics: Metrics, context: Mapping[str, str], card: Any = None) -> dict[str, object]:
    headline = [
        ("Images", str(metrics.n)),
        ("Accuracy", _pct(metrics.accuracy)),
        (
            "Balanced accuracy",
            _pct(metrics.balanced_accuracy) + _interval(metrics.balanced_accuracy_interval),
        ),
        ("Macro F1", _pct(metrics.macro["f1"])),
        ("Macro AUC", _num(metrics.macro["auc"])),
        ("ECE (15 bins)", _num(metrics.ece)),
    ]
    if metrics.melanoma:
        headline += [
            ("Melanoma sensitivity", _pct(metrics.melanoma["sensitivity"])),
            ("Melanoma specificity", _pct(metrics.melanoma["specificity"])),
        ]
    if metrics.malignant:
        m = metrics.malignant
        headline += [
            ("Malignant AUC", _num(m["auc"])),
            (f"Malignant sensitivity @ {m['threshold']:.2f}", _pct(m["sensitivity"])),
            (f"Malignant specificity @ {m['threshold']:.2f}", _pct(m["specificity"])),
        ]
        if metrics.melanoma and metrics.melanoma.get("flagged") is not None:
            headline.append((f"Melanomas flagged @ {m['threshold']:.2f}", _pct(metrics.melanoma["flagged"])))
    if metrics.abstained is not None:
        headline.append(("Abstained", _pct(metrics.abstained)))
    per_class = [
        [
            c,
            str(metrics.n_per_class[c]),
            _pct(v["precision"]),
            _pct(v["recall"]),
            _pct(v["f1"]),
            _num(v["auc"]),
        ]
        for c, v in metrics.per_class.items()
    ]
    subgroups = [
        [r["attribute"], r["group"], str(r["n"]), _pct(r["accuracy"]), _pct(r["balanced_accuracy"])]
        for r in metrics.subgroups
    ]
    return {
        "context": [(str(k), str(v)) for k, v in context.items()],
        "headline": headline,
        "interpretation": interpret(metrics),
        "recommendations": recommendations(metrics, card),
        "per_class": per_class,
        "subgroups": subgroups,
    }


PER_CLASS_HEADER = ["class", "n", "precision", "recall", "F1", "AUC"]
SUBGROUP_HEADER = ["attribute", "group", "n", "accuracy", "balanced accuracy"]


def _markdown(title: str, s: dict, plots: Mapping[str, str | os.PathLike], out_dir: Path) -> str:
    def table(header: list[str], rows: list) -> str:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])

    parts = [f"# {title}", ""]
    if s["context"]:
        parts += [table(["", ""], s["context"]), ""]
    parts += [
        "## Summary",
        "",
        table(["metric", "value"], s["headline"]),
        "",
        "## What the numbers say",
        "",
        *[f"- {line}" for line in s["interpretation"]],
        "",
        "## Recommendations",
        "",
        *[f"- {line}" for line in s["recommendations"]],
        "",
        "## Per class",
        "",
        table(PER_CLASS_HEADER, s["per_class"]),
        "",
    ]
    parts += ["## Subgroups", ""]
    parts += [
        table(SUBGROUP_HEADER, s["subgroups"])
        if s["subgroups"]
        else "No sex, age or body-site metadata in this data set.",
        "",
    ]
    parts += ["## Plots", ""]
    for name, path in plots.items():
        relative = os.path.relpath(Path(path).resolve(), out_dir.resolve())
        parts += [
            f"### {PLOT_TITLES.get(name, name)}",
            "",
            f"![{PLOT_TITLES.get(name, name)}]({relative})",
            "",
        ]
    return "\n".join(parts)


def _html(title: str, s: dict, plots: Mapping[str, str | os.PathLike]) -> str:
    e = html.escape

    def table(header: list[str] | None, rows: list) -> str:
        head = "<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>" if header else ""
        body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table>{head}{body}</table>"

    def items(lines: list[str]) -> str:
        return "<ul>" + "".join(f"<li>{e(line)}</li>" for line in lines) + "</ul>"

    figures = "".join(
        f'<figure><img alt="{e(PLOT_TITLES.get(name, name))}" src="data:image/png;base64,'
        f'{base64.b64encode(Path(path).read_bytes()).decode("ascii")}"><figcaption>'
        f"{e(PLOT_TITLES.get(name, name))}</figcaption></figure>"
        for name, path in plots.items()
    )
    subgroups = (
        table(SUBGROUP_HEADER, s["subgroups"])
        if s["subgroups"]
        else "<p>No sex, age or body-site metadata in this data set.</p>"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }}
th {{ background: #f3f3f3; }}
figure {{ margin: 1rem 0; }} img {{ max-width: 100%; }} figcaption {{ color: #555; font-size: 0.9rem; }}
</style></head><body>
<h1>{e(title)}</h1>
{table(None, s["context"]) if s["context"] else ""}
<h2>Summary</h2>{table(["metric", "value"], s["headline"])}
<h2>What the numbers say</h2>{items(s["interpretation"])}
<h2>Recommendations</h2>{items(s["recommendations"])}
<h2>Per class</h2>{table(PER_CLASS_HEADER, s["per_class"])}
<h2>Subgroups</h2>{subgroups}
<h2>Plots</h2>{figures}
</body></html>
"""


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _interval(bounds: Sequence[float] | None) -> str:
    if bounds is None:
        return ""
    low, high = format_interval(*bounds, min_decimals=1)
    return f" ({low}–{high})"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
