"""The report's "Pipeline decisions" section (``validate --pipeline``): per machine and target, the decisions'
agreement with the source's on the raw samples, the flips near the operating point, the reference's margins, the
gate and the deployed preprocessing's finding. Reads ``ArtifactCheck.pipeline`` as validation.json holds it."""
from __future__ import annotations


def _newest(files: list[dict]) -> list[dict]:
    newest: dict[str, dict] = {}
    for data in files:
        name = data["machine"]["name"]
        if name not in newest or str(data.get("created") or "") > str(newest[name].get("created") or ""):
            newest[name] = data
    return list(newest.values())


def _margins(m: dict | None) -> str:
    return "-" if not m else f"{m['min']:.3g} / {m['p5']:.3g} / {m['median']:.3g}"


def _gate(gate: dict) -> str:
    if "count" not in gate and "fraction" not in gate:
        return "reported only"
    return f"{'pass' if gate.get('passed') else 'FAIL'} (at most {gate.get('text', '-')})"


def rows(results) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): one row per machine and target that ran a pipeline; no rows when none did."""
    from deploytool.results import target_label

    headers = ["target", "machine", "decisions", "differ", "near the operating point", "reference margin "
               "min / p5 / median", "gate", "preprocess_deployed"]
    out = []
    for data in _newest(results.validations):
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
                        data["machine"]["name"], f"{p.get('kind')} @ {p.get('operating_point')}", differ, near_text,
                        _margins(p.get("margins")),
                        _gate(gate), dep_text])
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
