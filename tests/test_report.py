"""The decision report and recommend, on a real bundle after export, validate and bench."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from conftest import result_of

from deploytool.core import errors

FAST = ("--min-time", "0.2", "--min-runs", "40", "--no-source")


@pytest.fixture(scope="module")
def measured(zoo_bundles, run_cli, tmp_path_factory):
    bundle = tmp_path_factory.mktemp("report") / "digits_cnn"
    shutil.copytree(zoo_bundles["digits_cnn"][0], bundle)
    assert run_cli("validate", bundle, "--machine-name", "runner-a").returncode == 0
    assert run_cli("bench", bundle, "--machine-name", "runner-a", *FAST).returncode == 0
    return bundle


def _md_table(text: str) -> list[dict[str, str]]:
    """The first table of a Markdown page, as a dict per row."""
    lines = text.split("\n|", 1)[1].split("\n\n", 1)[0].split("\n")
    lines[0] = "|" + lines[0]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in ln.strip("|").split(" | ")))) for ln in lines[2:]]


def test_markdown_tables_parse_and_match_the_json(measured, run_cli):
    proc = run_cli("report", measured)
    assert proc.returncode == 0, proc.stderr
    md = (measured / "reports/report.md").read_text()
    assert md.splitlines()[2].startswith("**PASS**") and len(md.encode()) < 1 << 20
    rows = {(r["format"].strip("`"), r["runtime"]): r for r in _md_table(md)}  # a row per target
    bench = json.loads((measured / "reports/bench.json").read_text())
    validation = json.loads((measured / "reports/validation.json").read_text())
    assert set(rows) == {(a["format"], a["runtime"]) for a in validation["targets"].values()}
    assert ("onnx", "onnxruntime") in rows and ("onnx", "openvino") in rows
    for r in bench["rows"]:
        cell = rows[(r["format"], r["runtime"])]["p50 / p90 ms @ runner-a"]
        p50, p90 = (float(x) for x in cell.split(" (")[0].split(" / "))
        assert p50 == pytest.approx(r["p50_ms"], rel=0.01, abs=1e-3) and p90 == pytest.approx(r["p90_ms"], rel=0.01,
                                                                                                 abs=1e-3)
    acc = result_of(validation, "tflite_int8")["accuracy"]
    assert rows[("tflite_int8", "litert")]["accuracy (drop)"] == f"{acc['accuracy']:.2%} ({-acc['drop_points']:+.2f})"
    assert "<details><summary>Environment</summary>" in md
    matrix = {r["artifact"].strip("`"): r for r in _md_table(md.split("## Where it runs", 1)[1])}
    assert list(matrix) == list(json.loads((measured / "manifest.json").read_text())["artifacts"])
    for r in bench["rows"]:  # each target's cell: its verdict, and its p50 at 1 thread, batch 1
        if r["status"] == "ok" and r["threads"] == 1 and r["batch"] == 1:
            cell = matrix[r["format"]][r["runtime"]]
            verdict = result_of(validation, r["format"], r["runtime"])["status"].upper()
            assert cell.startswith(f"{verdict} · ") and cell.endswith(f" · p50 {r['p50_ms']:.3f} ms"), (r, cell)


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.urls = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v and not v.startswith("#")]


def test_html_is_self_contained_and_has_its_plots(measured, run_cli):
    assert run_cli("report", measured).returncode == 0
    page = (measured / "reports/report.html").read_text()
    parser = _Page()
    parser.feed(page)
    assert parser.tags.count("svg") >= 3  # latency distribution, latency vs size, per-hop error
    assert "script" not in parser.tags and "link" not in parser.tags and parser.urls == []
    assert "@import" not in page and re.findall(r"url\((?!#)", page) == []  # url(#clip) stays in the page


def test_results_of_two_machines_on_one_page_and_another_bundle_refused(measured, run_cli, zoo_bundles, tmp_path):
    other = json.loads((measured / "reports/bench.json").read_text())
    other["machine"] = {**other["machine"], "name": "pi-board", "cpu": "Cortex-A76"}
    (tmp_path / "bench-pi.json").write_text(json.dumps(other))
    proc = run_cli("report", measured, tmp_path / "bench-pi.json", "--out", tmp_path / "merged")
    assert proc.returncode == 0, proc.stderr
    assert "machines: runner-a, pi-board" in proc.stdout
    md = (tmp_path / "merged/report.md").read_text()
    assert "p50 / p90 ms @ runner-a" in md and "p50 / p90 ms @ pi-board" in md and "Cortex-A76" in md
    foreign = zoo_bundles["multi_io"][0] / "reports/validation.json"
    proc = run_cli("report", measured, foreign)
    assert proc.returncode == errors.USAGE and "from another bundle" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_recommend_picks_within_budget_explains_exclusions_and_has_a_no_match_code(measured, run_cli):
    rows = {(r["format"], r["runtime"]): r for r in json.loads((measured / "reports/bench.json").read_text())["rows"]}
    sizes = {n: a["size_bytes"] for n, a in json.loads((measured / "manifest.json").read_text())["artifacts"].items()}
    # a budget only the int8/dynamic TFLite artifacts fit: small, on LiteRT
    limit_mb = max(sizes[f] for f in ("tflite_int8", "tflite_dynamic")) / 2**20 * 1.01
    proc = run_cli("recommend", measured, "--max-size-mb", f"{limit_mb:.4f}", "--runtime", "litert", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {c["format"] for c in out["ranked"]} == {"tflite_int8", "tflite_dynamic"}
    assert out["ranked"][0]["machine"] == "runner-a"
    assert "size" in out["excluded"]["tflite_fp32"][0] and "runtime onnxruntime" in out["excluded"]["onnx"][0]
    assert "runtime openvino" in out["excluded"]["onnx@openvino"][0]  # a target off its default runtime
    assert out["confirm"].startswith(f"deploytool bench {measured} -f {out['ranked'][0]['format']}")
    proc = run_cli("recommend", measured, "--runtime", "openvino", "--runtime", "litert")  # targets on either
    assert proc.returncode == 0, proc.stderr
    ranked = [ln.split()[1] for ln in proc.stdout.splitlines() if re.match(r"\d+ ", ln)]
    assert "onnx@openvino" in ranked and "tflite_fp32" in ranked and "onnx" not in ranked
    assert f"recommended: {ranked[0]}; confirm on the device" in proc.stdout
    fastest = min(r["p90_ms"] for r in rows.values())
    proc = run_cli("recommend", measured, "--max-p90-ms", f"{fastest / 10:.6f}")
    assert proc.returncode == errors.NO_MATCH and "no artifact meets the budget" in proc.stderr
    assert proc.stdout.count("excluded") == len(rows)
    proc = run_cli("recommend", measured, "--machine", "elsewhere")
    assert proc.returncode == errors.USAGE and "no bench results measured on 'elsewhere'" in proc.stderr


def test_artifacts_a_partial_validation_left_out_keep_their_export_check(measured, run_cli, tmp_path):
    bundle = tmp_path / "digits_cnn"
    shutil.copytree(measured, bundle)
    assert run_cli("validate", bundle, "-f", "tflite_fp32", "--machine-name", "runner-a").returncode == 0
    proc = run_cli("recommend", bundle, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert "onnx" in {c["format"] for c in out["ranked"]}, out["excluded"]  # it passed at export, was benched
    assert not any("did not pass" in r for reasons in out["excluded"].values() for r in reasons), out["excluded"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it from Debian's packages)")
def test_html_renders_offline_in_a_real_browser(measured, run_cli, tmp_path):
    import numpy as np
    from matplotlib import image

    assert run_cli("report", measured).returncode == 0
    shot = tmp_path / "report.png"
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
                           f"--screenshot={shot}", "--window-size=1400,2000",
                           (measured / "reports/report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln or "Failed to load resource" in ln]
    assert console == [], console
    pixels = image.imread(str(shot))
    assert float(np.std(pixels)) > 0.01  # not a blank page
