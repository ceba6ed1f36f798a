"""The example command outputs the documentation quotes, run for real and written as Markdown fragments.

    python scripts/doc_examples.py [--figures docs/figures] [--only export,validate]

In a scratch directory (so paths read ``bundles/digits_cnn``), runs the default export and then validate, bench,
report, recommend, a hop failure localised to its first diverging op, a GitHub annotation, bench of one .onnx on
two runtimes and of mobilenet_v2 (exported first), doctor and config,
and writes each command with its output (stdout and stderr merged, as a CI log shows them) to
FIGURES/example_NAME.md under a header naming this command, the date and the machine. The timings in them are
this machine's, under the load the header gives.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import FIGURES, write_markdown

BUNDLE = "bundles/digits_cnn"
# (fragment name, the command as a user types it, the directory it runs in relative to the scratch directory)
EXAMPLES = [
    ("export", "deploytool export", "."),
    ("validate", f"deploytool validate {BUNDLE} --machine-name ci-runner", "."),
    ("bench", f"deploytool bench {BUNDLE} --machine-name ci-runner --threads 1 --min-time 1", "."),
    ("report", f"deploytool report {BUNDLE}", "."),
    ("recommend", f"deploytool recommend {BUNDLE} --max-size-mb 0.1 --max-accuracy-drop 0.5 --runtime litert", "."),
    # a zero tolerance on the SavedModel: the hop onnx -> savedmodel fails, and its first diverging op is named
    ("localise", f"deploytool validate {BUNDLE} -f onnx,savedmodel --samples 4 --atol savedmodel=0 --rtol savedmodel=0"
                 " --reports failing-reports", "."),
    ("github", f"deploytool validate {BUNDLE} -f onnx --runtime onnxruntime --atol onnx=1e-9 --rtol onnx=0 --github"
               " --reports failing-reports", "."),
    ("bench_openvino", f"deploytool bench {BUNDLE} -f onnx,openvino --threads 1 --no-source --min-time 2 --no-peak",
     "."),
    ("bench_mobilenet", "deploytool bench bundles/mobilenet_v2 --threads 1,2 --min-time 1", "."),
    ("doctor", "deploytool doctor", "."),
    ("config", "deploytool config --config ../../ci.toml export --seed 3", "proj/sub/deeper"),
]
# Run first, output not shown: the bundles an example needs besides the default export's.
PREPARE = {"bench_mobilenet": "deploytool export --model mobilenet_v2"}
PYPROJECT = ('[project]\nname = "mine"\n\n[tool.deploytool.export]\nformats = ["onnx", "tflite_fp16"]\n'
             'out = "build/bundles"\n')


def _project(work: Path) -> None:
    """The project the config example runs in: a pyproject.toml table and a --config file."""
    (work / "proj/sub/deeper").mkdir(parents=True)
    (work / "proj/pyproject.toml").write_text(PYPROJECT)
    (work / "proj/ci.toml").write_text("[export]\nsamples = 4\n")


def run(command: str, cwd: Path) -> tuple[str, int]:
    """The command's merged output and exit code, run with this interpreter's deploytool."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "100"}
    env.pop("GITHUB_ACTIONS", None)
    env.pop("GITHUB_STEP_SUMMARY", None)
    env.pop("DEPLOYTOOL_NO_PYPROJECT", None)  # the scratch directory has no pyproject.toml above it but the example's
    argv = [sys.executable, "-m", "deploytool", *shlex.split(command)[1:]]
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800)
    return proc.stdout.rstrip(), proc.returncode


def fragment(command: str, output: str, code: int) -> str:
    body = f"```console\n$ {command}\n{output}\n```"
    return body + (f"\n\nExit code {code}." if code else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figures", type=Path, default=FIGURES, help="where the example_NAME.md fragments go")
    ap.add_argument("--only", default="", help="comma-separated example names (default: all; the default export runs "
                                               "anyway, shown only when asked for)")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    work = Path(tempfile.mkdtemp(prefix="doc-examples-"))
    _project(work)
    for name, command, where in EXAMPLES:
        if only and name not in only:
            if name == "export":
                run(command, work / where)
            continue
        if name in PREPARE:
            run(PREPARE[name], work)
        output, code = run(command, work / where)
        print(f"{name}: exit {code}", flush=True)
        write_markdown(ap, args, fragment(command, output, code), args.figures / f"example_{name}.md")
        if name == "report":
            report = (work / BUNDLE / "reports/report.md").read_text()
            write_markdown(ap, args, report, args.figures / "example_report_md.md")


if __name__ == "__main__":
    main()
