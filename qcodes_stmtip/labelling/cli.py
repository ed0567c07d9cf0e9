"""``stmtip label``: serve the labelling page on 127.0.0.1 for one labeller.

Light at import: the session, the frame readers and (with ``--model``)
TensorFlow are imported inside the handler.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``label`` subcommand."""
    from qcodes_stmtip.taxonomy import SURFACES

    p = subparsers.add_parser(
        "label",
        help="label frames in a local web page (votes merged into labels.csv for stmtip train)",
        description="Serve a labelling page on http://127.0.0.1:PORT/ and print its address. "
        "Keys 1-9 toggle categories, Enter/Space submit, S skip, U/Backspace undo. Each "
        "labeller's votes go to OUT/votes/<labeller>.csv and are merged into OUT/labels.csv "
        "(mean votes and 'No. Responses', readable by 'stmtip train').",
    )
    p.add_argument("--surface", required=True, choices=SURFACES, help="surface (class scheme)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--folder", help="folder of frame files (.sxm, .gwy, *_mtrx, .dat, .sm4, "
                     ".png, .npy), searched recursively")
    src.add_argument("--db", help="QCoDeS database holding scan_image frames (with --run-id)")
    p.add_argument("--run-id", type=int, nargs="+", metavar="N",
                   help="captured run id(s) of the frames in --db")
    p.add_argument("--parameter", help="frame parameter in --db (default: the one ending in "
                   "scan_image or last_frame)")
    p.add_argument("--channel", help="channel to read from frame files (default: topography)")
    p.add_argument("--direction", default="forward", choices=("forward", "backward"),
                   help="trace of frame files to show (default forward)")
    p.add_argument("--labeller", required=True, help="your name (letters, digits, _.-)")
    p.add_argument("--out", required=True, help="labels folder (votes/, images/, labels.csv)")
    p.add_argument("--model", help="classifier bundle whose guess is shown (loads TensorFlow)")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: a free one)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.add_argument("--merge-only", action="store_true",
                   help="only re-merge OUT/votes/*.csv into OUT/labels.csv and exit")
    p.add_argument("--take-over", action="store_true",
                   help="write this labeller's votes even though another session holds them "
                        "(one that is hung or crashed); that session's votes are refused from then on")
    p.set_defaults(func=run_label)


def run_label(args: argparse.Namespace) -> int:
    """Handler of ``stmtip label``: serve until Ctrl-C; returns the exit code."""
    from pathlib import Path

    from qcodes_stmtip.labelling.merge import merge_votes

    out = Path(args.out)
    if args.merge_only:
        result = merge_votes(out, args.surface)
        _report_problems(result.problems)
        print(f"merged {len(result.labellers)} labeller(s): {result.labelled} frame(s) in "
              f"{result.labels_path}" + (f", {result.ambiguous} ambiguous in "
                                         f"{result.ambiguous_path}" if result.ambiguous_path else ""))
        return 0

    import signal
    import threading

    from qcodes_stmtip.labelling.lock import LogInUseError, describe_owner
    from qcodes_stmtip.labelling.server import LabellingServer, LabellingSession
    from qcodes_stmtip.labelling.sources import dataset_frames, folder_frames

    if args.folder is None and args.db is None:
        raise ValueError("give the frames to label: --folder DIR or --db PATH --run-id N")

    if args.folder is not None:
        if args.run_id:
            raise ValueError("--run-id goes with --db, not --folder")
        frames = folder_frames(args.folder, exclude=[out], channel=args.channel,
                               direction=args.direction)
    else:
        if not args.run_id:
            raise ValueError("--db needs --run-id N [N ...]")
        frames = dataset_frames(args.db, args.run_id, parameter=args.parameter)
    try:
        session = LabellingSession(frames, surface=args.surface, labeller=args.labeller,
                                   out_dir=out, model=args.model, take_over=args.take_over)
    except LogInUseError as exc:
        print(f"stmtip label: error: {exc}", file=sys.stderr)
        return 1
    try:
        server = LabellingServer(session, port=args.port)
    except BaseException:
        session.close()
        raise
    writer = session.store.writer
    if writer.took_over:
        print(f"took over {session.store.path} from the session on "
              f"{describe_owner(writer.previous or {})}; its votes are refused from now on",
              file=sys.stderr, flush=True)
    elif writer.previous:
        print(f"the previous session on {session.store.path} ({describe_owner(writer.previous)}) "
              "did not stop cleanly; its votes are kept", file=sys.stderr, flush=True)
    _report_problems(session.store.problems + session.merged.problems)

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # a plain `kill` stops cleanly too, like Ctrl-C

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:  # from here on, Ctrl-C at any moment stops the server and merges the votes
        progress = session.progress()
        print(f"labelling {progress['total']} frame(s) of {args.surface} as {args.labeller!r} "
              f"({progress['remaining']} left); votes in {session.store.path}", flush=True)
        print(f"open {server.url}  (Ctrl-C to stop)", flush=True)
        if args.open:
            import webbrowser

            webbrowser.open(server.url)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        session.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    result = merge_votes(out, args.surface)
    print(f"labels: {result.labelled} frame(s) in {result.labels_path}", file=sys.stderr)
    return 0


def _report_problems(problems: tuple[str, ...] | list[str], limit: int = 10) -> None:
    """Print the damaged log lines that were skipped (every other vote is kept)."""
    seen = list(dict.fromkeys(problems))
    for line in seen[:limit]:
        print(f"warning: skipped a damaged line: {line}", file=sys.stderr)
    if len(seen) > limit:
        print(f"warning: … and {len(seen) - limit} more damaged line(s)", file=sys.stderr)
