"""`nanoemox inspect PATH... [--json]` and `nanoemox data {formats,convert}`."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

_CONVERT_HELP = """\
Media paths: an absolute path from the authors' disk is cut after the last folder named like the
dataset (e.g. .../MIntRec/video/x.mp4 -> video/x.mp4) and joined onto --media-root; a clip name
is joined onto --media-root with the usual extensions. Files not found there are looked up by
name anywhere below --media-root. --media-root defaults to the annotation file's folder. Missing
files are reported (count and first names); the records are still written.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="decode media files (or folders of them) and report what the model would see",
        description="Decode each file with the media pipeline and report duration, video, audio, faces and warnings. "
        "Folders are expanded to the media files inside (recursively). Exit status 0 when every file decodes, 2 otherwise.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="media files or folders")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p.add_argument("--no-faces", action="store_true", help="skip face detection")
    p.add_argument("--detector", default="haar", choices=["haar", "mtcnn"], help="face detector (default haar)")
    p.add_argument("--max-seconds", type=float, default=120.0, help="decode at most this many seconds (default 120)")
    p.set_defaults(func=inspect_command)

    d = sub.add_parser("data", help="dataset adapters: list formats, convert annotations to manifests")
    dsub = d.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    f = dsub.add_parser("formats", help="list the dataset formats convert understands")
    f.add_argument("--json", action="store_true", help="one JSON object per line")
    f.set_defaults(func=formats_command)
    c = dsub.add_parser(
        "convert",
        help="convert a dataset's annotation file to a nanoemox JSONL manifest",
        description="Convert a public benchmark's annotation file (or folder) to a nanoemox manifest.\n\n" + _CONVERT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("format", metavar="FORMAT", help="dataset format (see `nanoemox data formats`)")
    c.add_argument("src", metavar="SRC", help="annotation file or folder")
    c.add_argument("--media-root", default=None, metavar="DIR", help="folder holding the dataset's media")
    c.add_argument("--out", required=True, metavar="MANIFEST", help="output JSONL manifest")
    c.add_argument("--split", default=None, help="keep only this split where the format records one (e.g. MMSA mode)")
    c.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    c.set_defaults(func=convert_command)
    d.set_defaults(func=lambda args: (d.print_help(), 2)[1])


# --- inspect -------------------------------------------------------------------------------------
def expand_paths(paths: list[str]) -> list[tuple[str, str | None]]:
    """(path, error) per input: folders become the media files inside (sorted, hidden skipped);
    a folder without media files is reported as an error entry."""
    from .media import MEDIA_EXTS

    out: list[tuple[str, str | None]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = []
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(x for x in dirnames if not x.startswith("."))
                for fn in sorted(filenames):
                    if not fn.startswith(".") and os.path.splitext(fn)[1].lower() in MEDIA_EXTS:
                        found.append(os.path.join(dirpath, fn))
            if found:
                out.extend((f, None) for f in found)
            else:
                out.append((str(p), "folder holds no media files"))
        else:
            out.append((str(p), None))
    return out


def inspect_one(path: str, cfg) -> dict:
    from ..errors import NanoEmoXError
    from .media import load_media

    try:
        m = load_media(path, cfg)
    except NanoEmoXError as e:
        reason = getattr(e, "reason", None) or str(e)
        return {"path": path, "ok": False, "error": reason, "duration_s": None, "video": None, "audio": None, "faces": None, "warnings": []}
    return m.summary()


def inspect_command(args) -> int:
    from .media import MediaConfig

    cfg = MediaConfig(detect_faces=not args.no_faces, detector=args.detector, max_seconds=args.max_seconds)
    items = expand_paths(args.paths)
    results = []
    table = None if args.json else _InspectTable()
    for path, err in items:
        r = inspect_one(path, cfg) if err is None else {"path": path, "ok": False, "error": err, "duration_s": None, "video": None, "audio": None, "faces": None, "warnings": []}
        results.append(r)
        if args.json:
            print(json.dumps(r, ensure_ascii=False), flush=True)
        else:
            table.add(r)
    if table is not None:
        table.print()
    return 0 if all(r["ok"] for r in results) else 2


class _InspectTable:
    """A rich table; paths are shown relative to the inputs' common folder (named in the caption)."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, r: dict) -> None:
        self.rows.append(r)

    def print(self) -> None:
        from rich.console import Console
        from rich.table import Table

        paths = [os.path.abspath(r["path"]) for r in self.rows]
        try:
            common = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
        except ValueError:
            common = ""
        table = Table(title="nanoemox inspect", caption=f"paths relative to {common}" if common else None)
        for col, kw in (("file", {"overflow": "fold"}), ("ok", {}), ("dur s", {"justify": "right"}), ("video", {}), ("audio", {}),
                        ("faces", {"justify": "right"}), ("notes", {})):
            table.add_column(col, **kw)
        n_ok = 0
        for r, p in zip(self.rows, paths):
            n_ok += bool(r["ok"])
            v, a, f = r.get("video"), r.get("audio"), r.get("faces")
            video = f"{v['width']}x{v['height']} {v.get('codec') or ''} {v['fps'] or '-'} fps" if v else "-"
            audio = f"{a.get('codec') or ''} {a['seconds']:.2f} s" if a else "-"
            faces = f"{f['frames_with_face']}/{f['frames']}" if f else "-"
            notes = r["error"] if not r["ok"] else "; ".join(r["warnings"])
            dur = f"{r['duration_s']:.2f}" if r.get("duration_s") is not None else "-"
            name = os.path.relpath(p, common) if common else r["path"]
            table.add_row(name, "[green]yes[/green]" if r["ok"] else "[red]NO[/red]", dur, video, audio, faces, notes)
        console = Console()
        console.print(table)
        n = len(self.rows)
        console.print(f"{n_ok} of {n} files decoded" + ("" if n_ok == n else f", {n - n_ok} failed"))


# --- data ----------------------------------------------------------------------------------------
def formats_command(args) -> int:
    from .datasets import formats

    specs = formats()
    if args.json:
        for s in specs:
            print(json.dumps({"name": s.name, "task": s.task, "media": s.media, "aliases": list(s.aliases), "description": s.description}))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title="dataset formats (nanoemox data convert FORMAT SRC)")
    t.add_column("format")
    t.add_column("task")
    t.add_column("reads")
    for s in specs:
        t.add_row(s.name, s.task or "several", s.description)
    Console().print(t)
    return 0


def convert_command(args) -> int:
    from ..errors import DataError
    from .datasets import convert
    from .schema import write_manifest

    options = {"split": args.split} if args.split else {}
    result = convert(args.format, args.src, media_root=args.media_root, **options)
    if not result.samples:
        raise DataError(f"{args.src}: no usable records in format {result.format!r}" + (f" (skipped {len(result.skipped)}: {result.skipped[0][0]}: {result.skipped[0][1]})" if result.skipped else ""))
    n = write_manifest(args.out, result.samples)
    summary = {**result.summary(), "out": str(args.out), "written": n}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    tasks = ", ".join(f"{k} {v}" for k, v in summary["tasks"].items())
    print(f"wrote {n} records to {args.out} (format {result.format}; tasks: {tasks})")
    if result.missing_media:
        shown = ", ".join(os.path.basename(m) for m in result.missing_media[:5])
        more = f" and {len(result.missing_media) - 5} more" if len(result.missing_media) > 5 else ""
        print(f"missing media: {len(result.missing_media)} of {n} files not found ({shown}{more})", file=sys.stderr)
    else:
        print("all media files found")
    if result.skipped:
        print(f"skipped {len(result.skipped)} records:", file=sys.stderr)
        for w, r in result.skipped[:5]:
            print(f"  {w}: {r}", file=sys.stderr)
        if len(result.skipped) > 5:
            print(f"  ... and {len(result.skipped) - 5} more", file=sys.stderr)
    return 0
