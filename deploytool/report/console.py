"""Plain-text tables for the terminal."""
from __future__ import annotations


def human_size(n: int | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_err(x: float | None) -> str:
    return "-" if x is None else f"{x:.2e}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def export_table(manifest: dict, checks: dict) -> str:
    rows = []
    for name, rec in manifest["artifacts"].items():
        chk = checks.get(name)
        status = chk.status.upper() if rec["status"] == "ok" and chk else rec["status"].upper()
        note = (chk.reason if chk and chk.reason else "") or (rec.get("error") or "")
        rows.append([name, rec["runtime"], status, fmt_err(chk.max_abs if chk else None), rec["tier"],
                     human_size(rec["size_bytes"]),
                     f"{rec['export_seconds']:.1f}" if rec.get("export_seconds") is not None else "-", note])
    return table(["format", "runtime", "status", "max_abs_err", "tier", "size", "export_s", "note"], rows)
