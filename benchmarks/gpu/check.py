"""One call that checks RelForge on a GPU machine, in minutes (issue #20).

    make gpu-check                       # = python benchmarks/gpu/check.py
    python benchmarks/gpu/check.py --out DIR [--budget 480] [--dry-run]

On a machine with CUDA it runs, each step with a time limit taken from one
budget (8 minutes by default) and its output kept in the results folder:

1. ``env``: the device, driver, torch/CUDA versions (``env.json``, ``nvidia-smi.txt``);
2. ``install``: CuPy for the Trie-masking kernel (``pip install -e .[gpu]``) when it is missing;
3. ``tests``: ``pytest -m gpu`` (the CUDA/CuPy tests; ``pytest-gpu.txt``);
4. ``decoding``: part 3 of ``benchmarks/perf/decoding.py`` (the CuPy kernel
   against the torch path and transformers' processor, achieved bandwidth
   against the device's peak; ``decoding-gpu.jsonl``/``.md``);
5. ``train``: one short mixed-precision (bf16) run of every method on the
   quickstart data (``benchmarks/gpu/gpu-quickstart.yaml``; ``train/``).

``summary.json`` and ``summary.md`` say what each step did, how long it took
and whether it passed. The exit code is 0 only when every step passed.

``--dry-run`` runs the same steps on a machine without a GPU so that the
script cannot rot unnoticed (a test runs it): nothing is installed (the
command is recorded), the GPU tests and part 3 record that they skip, and
the training step runs every method for one step on a tiny quickstart in
full precision.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "benchmarks" / "gpu" / "gpu-quickstart.yaml"
#: overrides that shrink the training step to a smoke run (dry mode)
DRY_TRAIN = ["data.dataset.train_size=16", "data.dataset.dev_size=8", "data.dataset.test_size=8",
             "train.max_steps=1", "train.mixed_precision=no", "train.batch_size=8", "train.eval_batch_size=16"]
STEPS = ("env", "install", "tests", "decoding", "train")


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def cupy_available() -> bool:
    try:
        from relforge.decoding import cupy_backend

        return cupy_backend.available()
    except ImportError:
        return False


class Check:
    def __init__(self, out: Path, budget: float, dry_run: bool) -> None:
        self.out, self.budget, self.dry_run = out, budget, dry_run
        self.t0 = time.perf_counter()
        self.results: list[dict] = []
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def record(self, step: str, status: str, seconds: float, **info) -> None:
        row = {"step": step, "status": status, "seconds": round(seconds, 1), **info}
        self.results.append(row)
        print(f"gpu-check: {step}: {status} ({seconds:.0f} s){': ' + info['note'] if info.get('note') else ''}",
              flush=True)

    def command(self, step: str, cmd: list[str], log: str, *, share: float, ok_codes=(0,), env=None,
                note: str = "") -> int | None:
        """Run ``cmd`` with at most ``share`` of the budget left, its output in ``log``."""
        limit = max(10.0, self.left() * share)
        t = time.perf_counter()
        with (self.out / log).open("w", encoding="utf-8") as fh:
            fh.write(f"$ {shlex.join(cmd)}\n")
            fh.flush()
            try:
                rc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, timeout=limit,
                                    env={**os.environ, **(env or {})}).returncode
            except subprocess.TimeoutExpired:
                self.record(step, "timed out", time.perf_counter() - t, limit_s=round(limit), log=log,
                            command=shlex.join(cmd), note=f"stopped after {limit:.0f} s")
                return None
        self.record(step, "passed" if rc in ok_codes else "failed", time.perf_counter() - t, returncode=rc,
                    log=log, command=shlex.join(cmd), note=note)
        return rc

    # ---- steps -----------------------------------------------------------

    def env(self) -> None:
        t = time.perf_counter()
        info = {"python": platform.python_version(), "platform": platform.platform(), "dry_run": self.dry_run,
                "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
        try:
            import torch
        except ImportError:
            torch = None
            info["torch"] = None
        try:
            if torch is not None:
                info.update(torch=torch.__version__, cuda_build=torch.version.cuda, cuda=torch.cuda.is_available())
            if torch is not None and torch.cuda.is_available():
                p = torch.cuda.get_device_properties(0)
                info.update(device=p.name, memory_gib=round(p.total_memory / 2**30, 1),
                            devices=torch.cuda.device_count(), capability=f"{p.major}.{p.minor}",
                            bf16=torch.cuda.is_bf16_supported())
        except RuntimeError as exc:  # a driver that torch cannot talk to
            info["cuda_error"] = f"{type(exc).__name__}: {exc}"
        info["cupy"] = cupy_available()
        smi = shutil.which("nvidia-smi")
        if smi:
            try:
                res = subprocess.run([smi], capture_output=True, text=True, timeout=60)
                (self.out / "nvidia-smi.txt").write_text(res.stdout + res.stderr, encoding="utf-8")
            except (subprocess.TimeoutExpired, OSError) as exc:
                info["nvidia_smi_error"] = f"{type(exc).__name__}: {exc}"
        (self.out / "env.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        status = "passed" if info.get("cuda") or self.dry_run else "failed"
        self.record("env", status, time.perf_counter() - t,
                    note=info.get("device") or ("no CUDA device (dry run)" if self.dry_run else "no CUDA device"))

    def install(self) -> None:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "-e", f"{ROOT}[gpu]"]
        if cupy_available():
            self.record("install", "passed", 0.0, note="CuPy already installed")
        elif self.dry_run or not cuda_available():
            self.record("install", "skipped", 0.0, command=shlex.join(cmd),
                        note="would run the command (no CUDA device here)")
        else:
            self.command("install", cmd, "install.txt", share=0.3)

    def tests(self) -> None:
        # the GPU tests are collected on any machine and skip without a device (exit code 0); none collected
        # (exit code 5) is a failure
        self.command("tests", [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
                               "tests/decoding"], "pytest-gpu.txt", share=0.35, ok_codes=(0,),
                     note="" if cuda_available() else "no CUDA device: the GPU tests skip")

    def decoding(self) -> None:
        self.command("decoding", [sys.executable, "benchmarks/perf/decoding.py", "--parts", "3", "--quick",
                                  "--json-out", str(self.out / "decoding-gpu.jsonl"),
                                  "--md-out", str(self.out / "decoding-gpu.md")], "decoding-gpu.txt", share=0.4,
                     env={"PYTHONPATH": f"{ROOT / 'platform'}{os.pathsep}{ROOT / 'plugins'}"})

    def train(self) -> None:
        overrides = DRY_TRAIN if self.dry_run or not cuda_available() else []
        (self.out / "train").mkdir(parents=True, exist_ok=True)
        # --rerun: a second check into the same folder trains again instead of reporting the earlier cells;
        # the suite's parent run and its cells log to the results folder's own store
        self.command("train", [sys.executable, "-m", "relforge", "--quiet", "bench", str(SUITE), *overrides,
                               "--rerun", "--output-dir", str(self.out / "train" / "runs")], "train.txt", share=0.95,
                     env={"MLFLOW_TRACKING_URI": f"sqlite:///{self.out / 'train' / 'mlflow.db'}"},
                     note="every method, bf16" if cuda_available() and not self.dry_run
                     else "every method, 1 step, full precision (dry run)")

    def write_summary(self) -> bool:
        ok = all(r["status"] in ("passed", "skipped") for r in self.results)
        total = time.perf_counter() - self.t0
        (self.out / "summary.json").write_text(json.dumps({"ok": ok, "seconds": round(total, 1),
                                                           "budget_s": self.budget, "dry_run": self.dry_run,
                                                           "steps": self.results}, indent=2), encoding="utf-8")
        lines = [f"# GPU check{' (dry run)' if self.dry_run else ''}", "",
                 f"{'all steps passed' if ok else 'some steps did not pass'} in {total:.0f} s "
                 f"(budget {self.budget:.0f} s); machine in `env.json`.", "",
                 "| step | status | seconds | note | log |", "|---|---|---|---|---|"]
        lines += [f"| {r['step']} | {r['status']} | {r['seconds']} | {r.get('note', '')} | {r.get('log', '')} |"
                  for r in self.results]
        (self.out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="results folder (default: "
                    "benchmarks/results/gpu-check-<date>)")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for all steps together (default 480)")
    ap.add_argument("--dry-run", action="store_true", help="run the steps without a GPU at toy size")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {', '.join(STEPS)}")
    args = ap.parse_args(argv)
    steps = [s for s in args.steps.split(",") if s]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        print(f"error: --steps {','.join(unknown)}: use {', '.join(STEPS)}", file=sys.stderr)
        return 2
    if not args.dry_run and not cuda_available():
        print("error: no CUDA device here; run with --dry-run to check the script on a CPU", file=sys.stderr)
        return 2
    out = args.out or ROOT / "benchmarks" / "results" / f"gpu-check-{dt.date.today().isoformat()}"
    check = Check(out, args.budget, args.dry_run)
    for step in steps:
        if check.left() <= 0:
            check.record(step, "not run", 0.0, note="the budget was spent")
            continue
        getattr(check, step)()
    ok = check.write_summary()
    print(f"gpu-check: {'passed' if ok else 'FAILED'}; results in {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
