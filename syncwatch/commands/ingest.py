"""`syncwatch ingest PATH…`: import files once (format from --format or from their content),
with progress on stderr and a summary of what was stored, re-delivered and quarantined; or, with
--dry-run, what a file would give and which key rules it lacks, with no database at all."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from collectors.access_log import COMBINED, JSON_ACCESS, LineFormat
from collectors.formats import FORMATS, FileSpec, detect, field_map, spec_from_tailer
from collectors.preview import Preview, preview_file, preview_webhook
from collectors.sink import Committed, Sink
from collectors.tailer import commit_chunks, first_line_identity, parsed_chunks
from collectors.workers import ParsePool, workers_for
from syncwatch.commands.common import Command, add_common_options, config_from, open_store
from syncwatch.config import Config
from syncwatch.model import count


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files to import")
    parser.add_argument("--format", choices=FORMATS, help="file format (default: detected from the content)")
    parser.add_argument("--system", default="gateway", help="system of access-log lines (default: gateway)")
    parser.add_argument("--field-map", help="json_access field map (default: kong); implies --format json_access")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="store nothing (no database needed): show the identity keys found, the endpoints whose "
        "observations link to nothing, and what would be rejected, to check key rules on a partner's sample",
    )
    parser.add_argument(
        "--webhook",
        metavar="NAME",
        help="with --dry-run: each file is one body a partner posts to /v1/webhooks/NAME, read with [webhooks.NAME]",
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="with --webhook: a header the partner sends along (its id, topic or time), as many as needed",
    )
    parser.add_argument(
        "--parse-workers",
        type=int,
        help="processes that parse ahead while the store writes (default: one per core beyond the first, "
        f"for imports of {POOL_FROM_BYTES >> 20} MB or more; 0 parses in this process)",
    )


EXIT_USAGE = 2
EXIT_NOT_UNDERSTOOD = 1  # a file of which nothing was understood: a script must not take it as imported
DEFAULT_FIELD_MAP = "kong"
COMPRESSED = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}
POOL_FROM_BYTES = 16 << 20  # smaller imports finish before worker processes would have started


def spec_for(path: str, args: argparse.Namespace, config: Config) -> FileSpec:
    """A configured tailer's settings when the path is one and no flag names a format, else the
    flags and detection."""
    resolved = Path(path).resolve()
    for tailer in config.file.tailers:
        if Path(tailer.path).resolve() == resolved and not (args.format or args.field_map):
            return spec_from_tailer(tailer, config.file)
    with open(path, "rb") as handle:
        fmt = args.format or (JSON_ACCESS if args.field_map else detect(handle.read(64 * 1024)))
    kind = fmt if fmt in (COMBINED, JSON_ACCESS) else COMBINED
    fields = field_map(args.field_map or DEFAULT_FIELD_MAP, config.file)
    # The file's absolute path names its source (and so its lines' ids): the same file imported
    # as m/a.log, ./m/a.log or /srv/m/a.log is one file, whose lines are stored once.
    return FileSpec(path, fmt, str(resolved), LineFormat(kind=kind, system=args.system, fields=fields))


def import_file(
    spec: FileSpec, sink: Sink, progress: Callable[[int], None], pool: ParsePool | None = None
) -> Committed:
    """Store every item of one file, a sink's largest group per transaction; with a ``pool``, the
    next chunks are parsed in its workers while this one is stored."""
    with open(spec.path, "rb") as handle:
        identity = f"{first_line_identity(handle) or ''}:0"
        chunks = parsed_chunks(handle, spec, sink.context, (0, identity), True, pool)
        done = commit_chunks(sink, spec.source, chunks, lambda _end: None, progress)
    progress(os.path.getsize(spec.path))
    return done


def _progress(path: str) -> Callable[[int], None]:
    size = max(1, os.path.getsize(path))
    interactive = sys.stderr.isatty()

    def show(done: int) -> None:
        if interactive:
            print(f"\r{path}: {min(100, done * 100 // size):3d}%", end="", file=sys.stderr, flush=True)

    return show


def _run(args: argparse.Namespace) -> int:
    config = config_from(args)
    unreadable = [_unreadable(path) for path in args.paths]
    if any(unreadable):
        print("\n".join(f"syncwatch ingest: {reason}" for reason in unreadable if reason), file=sys.stderr)
        return EXIT_USAGE
    if args.webhook or args.header:
        return _preview_webhooks(args, config)
    if args.dry_run:
        previews = {path: preview_file(spec_for(path, args, config), config) for path in args.paths}
        _print_previews(previews, args.json)
        # As an import would: a file nothing of which was understood fails, so a check before go-live can gate on it.
        return EXIT_NOT_UNDERSTOOD if any(p.rejected and not p.observations for p in previews.values()) else 0
    store = open_store(config)
    sink = Sink(store, config)
    per_file: dict[str, dict[str, object]] = {}
    total = Committed()
    pool = _parse_pool(sink, args)
    try:
        for path in args.paths:
            if not os.path.getsize(path):  # a quiet hour's file: nothing to read, and no format to guess
                per_file[path] = {"format": None, **_figures(Committed())}
                continue
            spec = spec_for(path, args, config)
            done = import_file(spec, sink, _progress(path), pool)
            total += done
            per_file[path] = {"format": spec.format, **_figures(done)}
            if sys.stderr.isatty():
                print(file=sys.stderr)
    finally:
        if pool is not None:
            pool.close()
        store.close()
    _print_summary(per_file, total, args.json)
    return EXIT_NOT_UNDERSTOOD if any(map(_not_understood, per_file.values())) else 0


def _not_understood(figures: dict[str, object]) -> bool:
    return bool(figures["quarantined"]) and not figures["stored"] and not figures["duplicates"]


def _pattern_for(folder: Path) -> str | None:
    """A shell pattern naming the files of a directory, in it or one level down, by their ending."""
    for depth in ("*", "*/*"):
        endings = {f.suffix for f in folder.glob(depth) if f.is_file() and not f.name.startswith(".")}
        if endings:
            ending = next(iter(endings)) if len(endings) == 1 else ""
            return f"{folder / depth}{ending}"
    return None


def _unreadable(path: str) -> str | None:
    """Why ``path`` cannot be imported, checked before anything is stored."""
    if os.path.isdir(path):
        pattern = _pattern_for(Path(path))
        return f"{path} is a directory; " + (f"name the files in it, as {pattern}" if pattern else "it holds no files")
    if not os.path.isfile(path):
        return f"{path}: no such file"
    if not os.access(path, os.R_OK):
        return f"{path}: not readable (permission denied)"
    with open(path, "rb") as handle:
        head = handle.read(8)
    compression = next((name for magic, name in COMPRESSED.items() if head.startswith(magic)), None)
    if compression:
        return f"{path} is {compression}-compressed; decompress it first and import the result"
    return None


def _parse_pool(sink: Sink, args: argparse.Namespace) -> ParsePool | None:
    workers = workers_for(args.parse_workers)
    size = sum(os.path.getsize(path) for path in args.paths)  # every path was checked to be a readable file
    if not workers or (args.parse_workers is None and size < POOL_FROM_BYTES):
        return None
    return ParsePool(sink, workers)


def _figures(done: Committed) -> dict[str, int]:
    return {"stored": done.stored, "duplicates": done.duplicates, "quarantined": done.quarantined}


def _print_summary(per_file: dict[str, dict[str, object]], total: Committed, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"files": per_file, **_figures(total)}))
        return
    for path, figures in per_file.items():
        if figures["format"] is None:
            print(f"{path}: empty, nothing to import")
            continue
        print(
            f"{path} ({figures['format']}): {figures['stored']:,} stored, "
            f"{count(int(figures['duplicates']), 'duplicate')}, {figures['quarantined']:,} quarantined"
        )
        if _not_understood(figures):
            print(
                f"  nothing in {path} was understood as {figures['format']}: if that is not its format, "
                f"name it with --format ({', '.join(FORMATS)})",
                file=sys.stderr,
            )
    print(f"total: {total.stored:,} stored, {count(total.duplicates, 'duplicate')}, {total.quarantined:,} quarantined")


def _preview_webhooks(args: argparse.Namespace, config: Config) -> int:
    """A partner's sample bodies read as its webhook would read them; nothing is stored."""
    webhooks = config.file.webhooks
    problem = None
    if not args.dry_run:
        problem = "--webhook and --header check samples with --dry-run; serve stores what partners post"
    elif args.webhook is None:
        problem = "--header goes with --webhook NAME: the headers a partner sends with its webhook's body"
    elif args.webhook not in webhooks:
        known = ", ".join(sorted(webhooks)) or "none"
        problem = f"--webhook {args.webhook!r} names no [webhooks.NAME] in the config (configured: {known})"
    elif bad := [h for h in args.header if ":" not in h]:  # its value may be a token: named, not shown
        problem = f"--header {bad[0].split('=', 1)[0].split(' ', 1)[0]!r}… is not 'NAME: VALUE'"
    if problem:
        print(f"syncwatch ingest: {problem}", file=sys.stderr)
        return EXIT_USAGE
    headers = {name.strip().lower(): value.strip() for name, value in (h.split(":", 1) for h in args.header)}
    previews = {path: preview_webhook(path, args.webhook, headers, config) for path in args.paths}
    _print_previews(previews, args.json)
    return EXIT_NOT_UNDERSTOOD if any(p.rejected and not p.observations for p in previews.values()) else 0


def _print_previews(previews: dict[str, Preview], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"dry_run": True, "files": {path: p.as_dict() for path, p in previews.items()}}))
        return
    for path, p in previews.items():
        repeated = f" ({p.repeated:,} more repeated inside it)" if p.repeated else ""
        print(f"{path} ({p.format}): {count(p.observations, 'observation')}{repeated}, {p.rejected.total():,} rejected")
        if p.keys:
            print("  identity keys: " + ", ".join(f"{key_type} on {n:,}" for key_type, n in p.keys.most_common()))
        for key_type, n in p.off_shape.most_common():
            print(
                f"  {key_type}: {n:,} value{'s' if n != 1 else ''} not of its [key_types] pattern, such as "
                f"{p.off_shape_example[key_type]!r}: kept as descriptive, linking nothing"
            )
        if p.unfollowed:
            print(
                f"  no process follows {', '.join(sorted(p.unfollowed))}: such a key links nothing until it is in a "
                "[processes.NAME] starts_with or keys list"
            )
        if p.observations:
            print(f"  {p.linked:,} link to a transaction by a key or a trace that has one", end="")
            unlinked = p.unlinked.total()
            print(f"; {unlinked:,} link to nothing (no identity key, no such trace in this file):" if unlinked else "")
            for endpoint, n in p.unlinked.most_common(TOP):
                print(f"  {n:>10,}  {endpoint}")
            if len(p.unlinked) > TOP:
                print(f"  {'':>10}  … and {len(p.unlinked) - TOP:,} more endpoints (--json lists them all)")
        if p.rejected:
            print("  rejected, most frequent first:")
            for reason, n in p.rejected.most_common(TOP):
                print(f"  {n:>10,}  {reason} (first at {p.first_at[reason]})")
    print("nothing was stored (--dry-run)")


TOP = 10  # endpoints and reasons listed per file; --json has them all


COMMAND = Command("ingest", "import telemetry files once", _add_arguments, _run)
