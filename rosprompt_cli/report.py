"""`eval --report`: one self-contained HTML page a person reads at a glance.

The charts are drawn with matplotlib as SVG and written into the page, so it opens offline in
any browser: no script, no font, no image is fetched. Every number shown comes from the eval's
`Report` (the one `--output` writes); the page also carries that JSON, for tools.
"""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources

from rosprompt_cli.metrics import Report
from rosprompt_cli.version import __version__

UNKNOWN_FAMILY = "unknown"


def language_families() -> dict[str, str]:
    """Language code (SIB-200/FLORES style, e.g. swh_Latn) -> family, as the SIB-200 paper
    assigns them (rosprompt_cli/data/language_families.tsv)."""
    text = resources.files("rosprompt_cli").joinpath("data/language_families.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines()[1:] if line.strip()]
    return {code: family for code, family in rows}


def family_of(code: str, families: dict[str, str]) -> str:
    """The family of a code; a code without its script (swh) takes the family its scripts share."""
    if code in families:
        return families[code]
    found = {family for known, family in families.items() if known.split("_")[0] == code}
    return found.pop() if len(found) == 1 else UNKNOWN_FAMILY


@dataclass(frozen=True)
class ReportContext:
    """What the headline says besides the metrics."""

    source: str
    model: str
    prompt: str
    command: str


def _svg(draw: Callable, width: float, height: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"svg.fonttype": "none", "font.size": 9, "svg.hashsalt": "rosprompt"}):
        fig, ax = plt.subplots(figsize=(width, height))
        try:
            draw(fig, ax)
            fig.tight_layout()
            buffer = io.StringIO()
            fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
        finally:
            plt.close(fig)
    svg = buffer.getvalue()
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)  # RDF boilerplate
    return svg[svg.index("<svg"):]  # no XML prolog or DOCTYPE inside HTML


def _language_chart(report: Report) -> str:
    families = language_families()
    rows = sorted(report.per_language.items(), key=lambda item: (item[1]["accuracy"], item[0]))
    codes = [code for code, _ in rows]
    family = [family_of(code, families) for code in codes]
    known = sorted({f for f in family if f != UNKNOWN_FAMILY})
    chance = 1 / len(report.labels)

    def draw(fig, ax) -> None:
        import matplotlib.pyplot as plt

        palette = [*plt.get_cmap("tab20").colors, *plt.get_cmap("tab20b").colors]
        colour = {name: palette[i % len(palette)] for i, name in enumerate(known)}
        colours = [colour.get(f, "#bdbdbd") for f in family]
        accuracies = [m["accuracy"] for _, m in rows]
        ax.barh(range(len(codes)), accuracies, color=colours, height=0.8)
        small = 6 if len(codes) > 40 else 8
        for i, value in enumerate(accuracies):
            ax.text(value + 0.005, i, f"{value:.2f}", va="center", fontsize=small)
        ax.set_yticks(range(len(codes)), codes, fontsize=7 if len(codes) > 40 else 9)
        ax.tick_params(axis="x", labeltop=len(codes) > 40, top=len(codes) > 40)  # a long chart: an axis on top too
        ax.set_ylim(len(codes) - 0.4, -0.6)  # the worst language on top
        ax.set_xlim(0, 1.07)  # room for the value after a full bar
        ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax.axvline(chance, color="black", linestyle="--", linewidth=1)
        ax.text(chance, -0.6, f" chance {chance:.2f}", va="bottom", fontsize=8)
        ax.set_xlabel("accuracy")
        handles = [plt.Rectangle((0, 0), 1, 1, color=colour[f]) for f in known]
        names = list(known)
        if UNKNOWN_FAMILY in family:
            handles.append(plt.Rectangle((0, 0), 1, 1, color="#bdbdbd"))
            names.append("family not known")
        ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, title="language family",
                  title_fontsize=8)

    return _svg(draw, 9, max(2.5, 0.16 * len(codes) + 1.2))


def _label_chart(report: Report) -> str:
    metrics = report.per_label

    def draw(fig, ax) -> None:
        y = range(len(metrics))
        for offset, (name, colour) in enumerate([("precision", "#4c78a8"), ("recall", "#f58518"), ("f1", "#54a24b")]):
            ax.barh([i + (offset - 1) * 0.27 for i in y], [getattr(m, name) for m in metrics], height=0.27,
                    color=colour, label=name)
        ax.set_yticks(list(y), [m.label for m in metrics])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)

    return _svg(draw, 8, max(2.0, 0.4 * len(metrics) + 1.0))


def _confusion_chart(report: Report) -> str:
    labels = report.labels
    counts = [[report.confusion[g][p] for p in labels] for g in labels]

    def draw(fig, ax) -> None:
        shares = [[c / max(sum(row), 1) for c in row] for row in counts]
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        for i, row in enumerate(counts):
            for j, count in enumerate(row):
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                        color="white" if shares[i][j] > 0.6 else "black")
        fig.colorbar(image, ax=ax, label="share of the gold label's rows")

    size = max(3.5, 0.4 * len(labels) + 2.2)
    return _svg(draw, size + 1.5, size)


def _reliability_chart(report: Report) -> str:
    assert report.calibration is not None
    bins = report.calibration.bins

    def draw(fig, ax) -> None:
        centres = [(b.low + b.high) / 2 for b in bins]
        ax.bar(centres, [b.accuracy for b in bins], width=0.09, color="#4c78a8", label="accuracy of the rows")
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="perfect calibration")
        for centre, b in zip(centres, bins):
            ax.text(centre, b.accuracy + 0.01, f"{b.n:,}", ha="center", va="bottom", fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.08)
        ax.set_xlabel("score of the predicted label (10 bins; numbers: rows per bin)")
        ax.set_ylabel("accuracy")
        ax.legend(loc="upper left", fontsize=8)

    return _svg(draw, 7, 4.2)


def _coverage_chart(report: Report) -> str:
    assert report.coverage is not None
    rows = report.coverage

    def draw(fig, ax) -> None:
        thresholds = [r.threshold for r in rows]
        ax.plot(thresholds, [r.kept for r in rows], marker="o", color="#4c78a8", label="share of rows kept")
        kept = [(r.threshold, r.accuracy) for r in rows if r.accuracy is not None]
        ax.plot([t for t, _ in kept], [a for _, a in kept], marker="s", color="#e45756",
                label="accuracy of the kept rows")
        ax.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=1, label="accuracy = threshold")
        ax.set_xlim(0.05, 0.95)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("--min-score threshold on the calibrated score")
        ax.set_ylabel("share")
        ax.legend(loc="lower left", fontsize=8)

    return _svg(draw, 7, 4.2)


def _table(header: list[str] | None, rows: list[list[str]]) -> str:
    head = "" if header is None else "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _section(title: str, guide: str, content: str, name: str) -> str:
    return (f'<section id="{name}"><h2>{html.escape(title)}</h2><p class="guide">{html.escape(guide)}</p>'
            f"{content}</section>")


STYLE = """
body{font-family:sans-serif;margin:2em auto;max-width:60em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
p.guide{color:#555;font-style:italic;margin:.3em 0 .8em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
.headline td:first-child{font-weight:bold}.big{font-size:1.6em;font-weight:bold}
svg{max-width:100%;height:auto}code{font-size:.9em}
"""


def render_report(report: Report, metrics: dict, context: ReportContext) -> str:
    """The HTML page of one eval. `metrics` is what `--output` writes (embedded for tools)."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    headline = _table(None, [
        ["accuracy", f"{report.accuracy:.4f}"],
        ["macro-F1", f"{report.macro_f1:.4f}"],
        ["rows", f"{report.n:,}"],
        ["labels", f"{len(report.labels)}: {', '.join(report.labels)}"],
        ["model", context.model],
        ["prompt", context.prompt],
        ["input", context.source],
        ["command", context.command],
        ["rosprompt", __version__],
        ["date", when],
    ]).replace("<table>", '<table class="headline">', 1)
    sections = [
        _section("Headline", "Accuracy is the share of rows whose predicted label is the gold one; macro-F1 "
                 "averages F1 over the labels, so a label with few rows counts as much as a large one.",
                 f'<p><span class="big">{report.accuracy:.1%}</span> accuracy, macro-F1 {report.macro_f1:.3f} '
                 f"on {report.n:,} rows</p>{headline}", "headline"),
    ]
    if report.per_language:
        sections.append(_section(
            "Accuracy per language",
            f"Languages sorted from worst to best, coloured by family; the dashed line is chance "
            f"(1/{len(report.labels)} labels): bars near it are languages where the labels do not work yet.",
            _language_chart(report), "languages"))
    sections.append(_section(
        "Precision, recall and F1 per label",
        "Low precision: the label is given to rows of other labels; low recall: its own rows go elsewhere.",
        _label_chart(report) + _table(["label", "precision", "recall", "F1", "rows"], [
            [m.label, f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}", f"{m.support:,}"]
            for m in report.per_label]),
        "labels"))
    sections.append(_section(
        "Confusion matrix",
        "Each row is a gold label, each column a predicted one; the numbers are rows and the colour is the "
        "share of the gold label's rows, so the diagonal is recall and a dark cell off it is a confusion.",
        _confusion_chart(report), "confusion"))
    if report.calibration is not None:
        sections.append(_section(
            "Reliability of the score",
            f"Bars on the dashed diagonal mean a score of s is right a share s of the time; bars below it, that "
            f"scores are over-confident; above it, too modest. Expected calibration error: "
            f"{report.calibration.ece:.4f}. Use it to choose a --threshold for --multi-label, or a score under "
            f"which rows go to a person.",
            _reliability_chart(report), "reliability"))
    if report.coverage is not None:
        sections.append(_section(
            "What a threshold buys",
            "label --min-score T leaves a row without a label (for a person to look at) when its best score is "
            "below T. For each T: the share of rows that keep their label, and how many of those are right. Pick "
            "the T where the accuracy of the kept rows is what you can publish unchecked.",
            _coverage_chart(report) + _table(["--min-score", "rows kept", "accuracy of kept rows"], [
                [f"{r.threshold:.1f}", f"{r.kept:.1%}", "-" if r.accuracy is None else f"{r.accuracy:.3f}"]
                for r in report.coverage]),
            "coverage"))
    data = json.dumps(metrics, ensure_ascii=False).replace("</", "<\\/")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>rosprompt eval: {html.escape(context.source)}</title><style>{STYLE}</style></head><body>"
        f"<h1>rosprompt eval report: {html.escape(context.source)}</h1>{''.join(sections)}"
        f'<script type="application/json" id="rosprompt-metrics">{data}</script></body></html>\n'
    )
