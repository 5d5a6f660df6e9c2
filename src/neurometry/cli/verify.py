"""`neurometry verify`: check every committed chunk of a store against its checksum; list (and on request
repair) the damage. Exit 0 when the store is sound, 1 when damage remains, 2 on a user error."""

from __future__ import annotations

import argparse

from neurometry.cli.output import finish
from neurometry.tables.text import print_table

DAMAGED = 1  # exit status when damage is found (2 stays a user error, as everywhere)


def cmd_verify(args: argparse.Namespace) -> int:
    from neurometry.store import open_store
    from neurometry.store.verify import verify_store

    def check():
        store = open_store(args.store, read_only=True)
        try:
            return verify_store(store, progress=not args.quiet and not args.json)
        finally:
            store.close()

    found = check()
    repaired: list[dict] = []
    failed: list[dict] = []
    if args.repair_by_rerecording and found.damage:
        from neurometry.errors import NeurometryError
        from neurometry.record.recorder import rerecord

        for run_id, first_row in found.first_damaged_rows().items():
            try:
                rerecord(args.store, run_id, first_row, model=args.model, progress=not args.quiet and not args.json)
            except NeurometryError as exc:  # say how, and go on with the other runs
                failed.append({"run": run_id, "reason": str(exc)})
                continue
            repaired.append({"run": run_id, "from_row": first_row})
        after = check()
    else:
        after = found

    document = {
        "store": str(args.store), "clean": after.clean, "catalog": after.catalog, "runs": after.runs,
        "points": after.points, "chunks": after.chunks, "chunks_without_checksum": after.unchecked,
        "damaged": [d.__dict__ for d in found.damage], "repaired": repaired, "not_repaired": failed,
        "still_damaged": [d.__dict__ for d in after.damage],
    }

    def show() -> None:
        if found.damage:
            print_table(["run", "point", "chunk", "rows", "problem"],
                        [[d.run_id, d.point, "metadata" if d.chunk is None else d.chunk,
                          f"{d.first_row}-{d.stop_row - 1}", d.problem] for d in found.damage])
            print()
        for r in repaired:
            print(f"recorded run {r['run']!r} again from row {r['from_row']}")
        for r in failed:
            print(f"cannot record run {r['run']!r} again: {r['reason']}")
        if after.catalog != "ok":
            print(f"the catalog is damaged ({after.catalog}): restore the store from a copy or record it again")
        unchecked = (f"; {after.unchecked} of them recorded before checksums (store format 3) were checked for "
                     "presence and size only") if after.unchecked else ""
        state = "sound" if after.clean else f"DAMAGED: {len(after.damage)} chunks"
        print(f"{args.store}: {after.chunks} committed chunks of {after.points} points in {after.runs} runs read"
              f"{unchecked}; {state}")
        if after.damage and not args.repair_by_rerecording:
            print(f"next: neurometry verify {args.store} --repair-by-rerecording   # records the damaged runs again")

    finish(args, document, show)
    return 0 if after.clean else DAMAGED


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify", help="check every stored chunk against its checksum; list or repair damage (exit 1 if damaged)"
    )
    p.add_argument("store")
    p.add_argument("--repair-by-rerecording", action="store_true",
                   help="record each damaged run again from its first damaged chunk, with its recorded settings")
    p.add_argument("--model", default=None,
                   help="with --repair-by-rerecording: the model to record with, when its recorded name does not load")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)
