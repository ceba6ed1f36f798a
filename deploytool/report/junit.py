"""JUnit XML: one test case per target (artifact on a runtime) x output, so CI systems show failures natively.
The class name is ``MODEL.FORMAT@RUNTIME``."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from deploytool.running.jobs import CheckStatus


def render(model: str, checks: dict) -> str:
    suite = ET.Element("testsuite", name=f"deploytool.validate.{model}")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for chk in checks.values():
        name = chk.key
        outputs = sorted({o for per_set in chk.sets.values() for o in per_set}) or ["(artifact)"]
        for out in outputs:
            counts["tests"] += 1
            case = ET.SubElement(suite, "testcase", classname=f"{model}.{name}", name=out)
            if chk.status in (CheckStatus.PASS, CheckStatus.FAIL, CheckStatus.VACUOUS, CheckStatus.CONSTANT_ACCEPTED):
                # an output judged on task accuracy instead (int8 with labels) fails only through the accuracy case
                bad = [f"[{s}] {per_set[out]['reason']}" for s, per_set in chk.sets.items()
                       if out in per_set and not per_set[out]["passed"] and per_set[out].get("gating", True)]
                # a reference that does not vary: the comparison proves nothing (a failure unless accepted)
                constant = [s for s, per_set in chk.sets.items()
                            if out in per_set and (per_set[out].get("reference") or {}).get("vacuous")]
                if constant and not bad and chk.status == CheckStatus.CONSTANT_ACCEPTED:
                    counts["skipped"] += 1
                    ET.SubElement(case, "skipped", message=f"a trivial artifact would pass the check on the "
                                                           f"{constant[0]} set; accepted with --accept-uninformative: "
                                                           "not a pass")
                elif constant and not bad and chk.status == CheckStatus.VACUOUS:
                    counts["failures"] += 1
                    el = ET.SubElement(case, "failure", message=chk.reason[:500], type="VacuousReference")
                    el.text = chk.reason
                elif bad:
                    counts["failures"] += 1
                    el = ET.SubElement(case, "failure", message=bad[0][:500], type="ParityFailure")
                    el.text = "\n".join(bad) + (f"\nerror appears at hop {chk.hop_blamed}" if chk.hop_blamed else "")
            elif chk.status == CheckStatus.SKIPPED:
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message=chk.reason[:500])
            else:
                counts["errors"] += 1
                el = ET.SubElement(case, "error", message=chk.reason[:500], type=chk.status)
                el.text = chk.reason
            if chk.basis:  # what the verdict was decided on, as the judge put it (after the outcome, as JUnit orders)
                ET.SubElement(case, "system-out").text = chk.basis
        if chk.accuracy:  # task accuracy on labelled data: a case of its own
            a = chk.accuracy
            counts["tests"] += 1
            case = ET.SubElement(suite, "testcase", classname=f"{model}.{name}", name=f"accuracy ({a['set']} set)")
            ET.SubElement(case, "system-out").text = (
                f"accuracy {a['accuracy']:.4f}, source {a['source_accuracy']:.4f}, drop {a['drop_points']:.2f} points, "
                f"top-1 agreement {a['top1_agreement']:.4f} over {a['samples']} samples")
            if not a["passed"]:
                counts["failures"] += 1
                ET.SubElement(case, "failure", type="AccuracyDrop",
                              message=f"accuracy dropped {a['drop_points']:.2f} points "
                                      f"(max {a['max_drop_points']:g})")
    for k, v in counts.items():
        suite.set(k, str(v))
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
