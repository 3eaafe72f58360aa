"""Training speed when another CPU-bound process shares the cores, by thread setting.

Each setting runs the demo's baseline training step (tiny preset: 2 layers, d = 128; batch 32 of
24 tokens; forward, backward, AdamW) in a fresh process, so the OpenMP settings apply before
torch starts. Each runs on a quiet machine and next to `--competitors` busy-looping processes; the
slowdown is the ratio of the two. Settings alternate in rounds, so drift hits them alike::

    python benchmarks/oversubscription.py --steps 150 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SETTINGS = {
    "2 threads (torch default here)": {"OMP_NUM_THREADS": "2"},
    "2 threads, OMP_WAIT_POLICY=PASSIVE": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}

STEP = """
import json, sys, time, torch
from autoprumux.models import MuxBertConfig, MuxBertForSequenceClassification
from autoprumux.models.presets import SCRATCH_PRESETS
torch.manual_seed(0)
model = MuxBertForSequenceClassification(MuxBertConfig(vocab_size=2000, num_labels=2, **SCRATCH_PRESETS["tiny"]))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
ids = torch.randint(5, 2000, (32, 24)); labels = torch.randint(0, 2, (32,))
batch = dict(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids), labels=labels)
for _ in range(10):
    model(**batch).loss.backward(); optimizer.step(); optimizer.zero_grad()
start = time.perf_counter()
for _ in range(int(sys.argv[1])):
    model(**batch).loss.backward(); optimizer.step(); optimizer.zero_grad()
print(json.dumps({"seconds": time.perf_counter() - start, "threads": torch.get_num_threads()}))
"""


def run_setting(env: dict[str, str], steps: int) -> float:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "GOMP_", "KMP_"))}
    out = subprocess.run([sys.executable, "-c", STEP, str(steps)], env={**clean, **env},
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"] / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--competitors", type=int, default=1, help="busy-looping processes for the loaded runs")
    args = parser.parse_args(argv)
    quiet: dict[str, list[float]] = {name: [] for name in SETTINGS}
    loaded: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, env in SETTINGS.items():
            quiet[name].append(run_setting(env, args.steps))
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.competitors)]
        try:
            time.sleep(1.0)
            for name, env in SETTINGS.items():
                loaded[name].append(run_setting(env, args.steps))
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
    print(f"training step of the demo's baseline, {args.steps} steps x {args.rounds} rounds; "
          f"{os.cpu_count()} CPU(s); loaded = next to {args.competitors} busy-looping process(es)")
    print(f"{'setting':<38} {'quiet ms/step':>14} {'loaded ms/step':>15} {'slowdown':>9}")
    for name in SETTINGS:
        q, lo = statistics.median(quiet[name]), statistics.median(loaded[name])
        print(f"{name:<38} {q * 1e3:>14.1f} {lo * 1e3:>15.1f} {lo / q:>8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
