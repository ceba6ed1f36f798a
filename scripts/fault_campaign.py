"""Fault campaign: every fault of tests/faults.py, end to end through the real CLI (a fresh
`deploytool validate` process each, plus `bench` for the bundle-level faults), on copies of real
bundles, with a canary directory beside each copy watched by inotify.

Prints, per fault, the exit code against the documented one, and totals: faults tried, expected
outcomes, false passes (exit 0 where a failure was due), escapes (anything outside the bundle read
or written), tracebacks, hangs (over --hang-limit seconds). Target: 0 / 0 / 0 / 0.

    python scripts/fault_campaign.py [--bundles DIR] [--hang-limit 120] [--markdown FILE]

Without --bundles, digits_cnn and multi_io are exported first into a temporary directory.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from _common import add_markdown_option, write_markdown  # noqa: E402
from faults import FAULTS  # noqa: E402  (tests/faults.py)
from inotify import Watch  # noqa: E402


def _cli(*args, timeout: float) -> tuple[int | None, str, str, float]:
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-m", "deploytool", *map(str, args)], capture_output=True, text=True,
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr, time.monotonic() - t0
    except subprocess.TimeoutExpired:
        return None, "", "", time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", type=Path, help="a directory holding digits_cnn/ and multi_io/ bundles")
    ap.add_argument("--hang-limit", type=float, default=120.0)
    add_markdown_option(ap)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="deploytool-faults-"))
    bundles = args.bundles
    if bundles is None:
        bundles = tmp / "bundles"
        for model in ("digits_cnn", "multi_io"):
            code, _, err, _ = _cli("export", "--model", model, "--out", bundles, timeout=1800)
            if code != 0:
                print(f"export of {model} failed: {err}")
                return 1
    totals = {"tried": 0, "expected": 0, "false_pass": 0, "escapes": 0, "tracebacks": 0, "hangs": 0}
    seconds: list[float] = []
    print(f"{'fault':<32} {'class':<20} {'command':<9} {'want':>4} {'got':>4}  {'s':>5}  verdict")
    try:
        for fault in FAULTS:
            commands = ["validate"] + (["bench"] if fault.expect == 8 else [])
            for command in commands:
                work = tmp / "runs" / f"{fault.name}-{command}"
                bundle, canary = work / "bundles" / fault.base, work / "canary"
                shutil.copytree(bundles / fault.base, bundle, symlinks=True)
                (canary / "sub").mkdir(parents=True)
                (canary / "f.bin").write_bytes(b"canary")
                fault.edit(bundle, canary)
                extra = fault.args if command == "validate" else ["--min-time", "0", "--min-runs", "1"]
                with Watch(canary) as watch:
                    code, out, err, secs = _cli(command, bundle, *extra, timeout=args.hang_limit)
                totals["tried"] += 1
                seconds.append(secs)
                problems = []
                if code is None:
                    totals["hangs"] += 1
                    problems.append("HANG")
                elif code == 0 and fault.expect != 0:
                    totals["false_pass"] += 1
                    problems.append("FALSE PASS")
                if "Traceback" in out + err:
                    totals["tracebacks"] += 1
                    problems.append("TRACEBACK")
                if watch.events:
                    totals["escapes"] += 1
                    problems.append(f"ESCAPE {watch.events[:2]}")
                ok = code == fault.expect and not problems
                totals["expected"] += ok
                verdict = "ok" if ok else ("; ".join(problems) or "unexpected exit code")
                print(f"{fault.name:<32} {fault.klass:<20} {command:<9} {fault.expect:>4} "
                      f"{'-' if code is None else code:>4}  {secs:5.1f}  {verdict}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"faults tried {totals['tried']}, expected outcome {totals['expected']}, false passes "
          f"{totals['false_pass']}, escapes {totals['escapes']}, tracebacks {totals['tracebacks']}, "
          f"hangs {totals['hangs']}")
    write_markdown(ap, args, f"**{totals['tried']} faults tried, {totals['expected']} with the documented exit code, "
                             f"{totals['false_pass']} false passes, {totals['escapes']} escapes (nothing outside the "
                             f"bundle opened, read or written), {totals['tracebacks']} tracebacks, {totals['hangs']} "
                             f"hangs**; median time to the verdict {sorted(seconds)[len(seconds) // 2]:.1f} s, the "
                             f"longest {max(seconds):.1f} s." if seconds else "no fault was run")
    return 0 if totals["expected"] == totals["tried"] else 1


if __name__ == "__main__":
    sys.exit(main())
