"""The report's "Pipeline decisions" section (``validate --pipeline``): per machine and target, the decisions'
agreement with the source's on the raw samples, the flips near the operating point, the reference's margins, the
gate (VACUOUS where a trivial output passes it too) and the deployed preprocessing's finding; each row names its
pipeline file and raw data, since later runs with another file (on some targets) mix with earlier ones. Reads
``ArtifactCheck.pipeline`` as validation.json holds it."""
from __future__ import annotations

from deploytool.results import newest_per_machine


def _margins(m: dict | None) -> str:
    return "-" if not m else f"{m['min']:.3g} / {m['p5']:.3g} / {m['median']:.3g}"


def _gate(gate: dict, p: dict) -> str:
    if "count" not in gate and "fraction" not in gate:
        return "reported only"
    text = f"{'pass' if gate.get('passed') else 'FAIL'} (at most {gate.get('text', '-')})"
    if p.get("uninformative"):  # a decoy (all zeros, the mean output, another sample's) passes it too
        text += ", VACUOUS: a trivial output passes too (raw data whose decisions span the operating point needed)"
    return text


def _files(p: dict) -> str:
    """Which pipeline file and raw data a row's decisions come from: runs of other files mix in one report."""
    from pathlib import Path

    file = Path(str(p.get("file") or "-")).name
    return f"{file} ({Path(str(p['raw_data'])).name})" if p.get("raw_data") else file


def rows(results) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): one row per machine and target that ran a pipeline; no rows when none did."""
    from deploytool.results import target_label

    headers = ["target", "machine", "pipeline file (raw data)", "decisions", "differ", "near the operating point",
               "reference margin min / p5 / median", "gate", "preprocess_deployed"]
    out = []
    for data in newest_per_machine(results.validations):
        for key, t in (data.get("targets") or {}).items():
            p = t.get("pipeline")
            if not p:
                continue
            near = p.get("near")
            near_text = f"{near['flips']} of {near['samples']} (margin < {near['band']:g})" if near else "-"
            gate = p.get("gate") or {}
            dep = p.get("preprocess_deployed")
            if dep is None:
                dep_text = "-"
            elif dep.get("match"):
                dep_text = "matches"
            else:
                effect = dep.get("decisions")
                dep_text = f"DIFFERS: {dep.get('finding')}" + (
                    f" ({effect['flips']}/{effect['samples']} decisions differ)" if effect else "")
            det = p.get("detections")
            differ = f"{p['flips']}/{p['samples']} ({p['flip_rate']:.2%})" + (
                f", {det['missing']} missing, {det['extra']} extra, {det['moved']} moved" if det else "")
            out.append([target_label(t.get("format", key), t.get("runtime", ""), t.get("platform", "native")),
                        data["machine"]["name"], _files(p), f"{p.get('kind')} @ {p.get('operating_point')}", differ,
                        near_text,
                        _margins(p.get("margins")),
                        _gate(gate, p), dep_text])
    return headers, out


def lines(results) -> list[str]:
    """The Markdown section (a heading, one sentence, a table), or nothing."""
    headers, body = rows(results)
    if not body:
        return []
    table = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
             *("| " + " | ".join(c.replace("|", "\\|") for c in [f"`{r[0]}`", *r[1:]]) + " |" for r in body)]
    return ["", "## Pipeline decisions", "",
            "Each target ran the whole pipeline (preprocess, the model, postprocess) on the raw samples; a decision "
            "differs where the target's postprocessed output is not the source's.", "", *table]
