"""A cell in a process of its own: ``python -m relforge.bench.worker JOB.json``
(what the ``local`` executor starts). Runs the job
(:func:`relforge.bench.sweep.run_job`), which writes the cell's result record;
exits 0 when the cell finished, 1 when it failed."""
from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from relforge.bench.sweep import CellJob, run_job

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m relforge.bench.worker JOB.json", file=sys.stderr)
        return 2
    job = CellJob.from_json(Path(args[0]).read_text(encoding="utf-8"))
    record = run_job(job)
    print(f"cell {job.cell_id}: {record['status']}" + (f" ({record['error']})" if record.get("error") else ""),
          flush=True)
    return 0 if record["status"] == "FINISHED" else 1


if __name__ == "__main__":
    sys.exit(main())
