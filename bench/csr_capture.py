"""Benchmark: from opening the port to a verified CSR, on the virtual board.

The virtual chip takes the ATECC608's typical times for key generation and signing, and counts
them; the rest is the kit, the serial transport and the virtual sketch. Prints a table.

    .venv/bin/python bench/csr_capture.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from kit import board
from kit.sim import board as vboard
from kit.sim.csr_sketch import SketchSettings
from kit.sim.eccx08 import ChipTiming


def measure(transport: str, runs: int, timing: ChipTiming) -> list[tuple[float, float]]:
    """(total seconds, chip seconds) for each capture."""
    device = vboard.VirtualBoard(f"bench-{transport}", SketchSettings(), timing)
    device.chip.write_configuration_and_lock()
    results = []
    with device:
        port = device.port.pty_path if transport == "pty" else device.info.url
        for _ in range(runs):
            chip_before = device.chip.busy_seconds
            start = time.perf_counter()
            capture = board.capture_csr(port, name="bench_01", slot=1)
            total = time.perf_counter() - start
            assert capture.csr.signature_valid
            results.append((total, device.chip.busy_seconds - chip_before))
            time.sleep(0.2)  # let the board notice the port closed before the next run
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    os.environ["KIT_HOME"] = tempfile.mkdtemp(prefix="kit-bench-")
    rows = []
    for transport in ("pty", "sim"):
        for label, timing in (
            ("ATECC608 times", ChipTiming()),
            ("instant chip", ChipTiming.instant()),
        ):
            results = measure(transport, args.runs, timing)
            totals = sorted(t for t, _ in results)
            chip = statistics.median(c for _, c in results)
            p50 = statistics.median(totals)
            p95 = totals[min(len(totals) - 1, int(0.95 * len(totals)))]
            rows.append(
                (
                    transport,
                    label,
                    args.runs,
                    p50 * 1000,
                    p95 * 1000,
                    chip * 1000,
                    100 * chip / p50,
                    (p50 - chip) * 1000,
                )
            )
    header = ("transport", "chip", "runs", "p50 ms", "p95 ms", "chip ms", "chip %", "kit+port ms")
    print("Open the port -> verified CSR (virtual board, locked chip, new key each run)")
    print(" | ".join(f"{h:>14}" for h in header))
    print("-" * (17 * len(header)))
    for row in rows:
        cells = [f"{row[0]:>14}", f"{row[1]:>14}", f"{row[2]:>14}"] + [
            f"{v:>14.1f}" for v in row[3:]
        ]
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
