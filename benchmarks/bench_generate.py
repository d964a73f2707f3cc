"""Chip generation at scale: time and Verilog size of ``neurophase generate --blocks chip``.

Each tile count is generated in a fresh Python process (so no run profits from another's
caches), from the default configuration with ``tile.count`` replaced. The figures are the
process CPU time (the Python process and its children, Yosys included) and the wall time of
the generation call alone (imports excluded), the sizes of ``chip.v`` and
``neurophase_chip_tile.v``, and how often the tile module is defined and instantiated; with
``--lint`` also the wall and CPU time of ``verilator --lint-only -Wall`` over both files.

Run::

    python -m neurophase.benchmarks.bench_generate --tiles 1 16 144 --lint 144 --out out/bench_generate
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["measure", "count_tile_modules", "main"]


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and its waited-for children so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def count_tile_modules(chip_verilog: str, tile_verilog: str, tile_module: str) -> dict:
    """How often ``tile_module`` is defined in each text and instantiated in ``chip_verilog``."""
    definition = re.compile(rf"^module {re.escape(tile_module)}\s*\(", re.MULTILINE)
    instance = re.compile(rf"^\s*{re.escape(tile_module)}\s+\S+\s*\(", re.MULTILINE)
    return {"defined_in_chip": len(definition.findall(chip_verilog)),
            "defined_in_tile_file": len(definition.findall(tile_verilog)),
            "instances": len(instance.findall(chip_verilog))}


def measure(tiles: int, out_dir: str | Path, lint: bool = False) -> dict:
    """Generate the default chip with ``tiles`` tiles into ``out_dir`` and return its figures
    (see the module docstring); call it in a fresh process for clean timings."""
    from neurophase.config import ChipConfig
    from neurophase.generate import generate
    from neurophase.rtl.chip import TILE_MODULE

    cfg = ChipConfig().replace(tile={"count": tiles})
    out_dir = Path(out_dir)
    cpu, wall = _cpu_s(), time.perf_counter()
    generate(cfg, out_dir, ["chip"])
    figures = {"tiles": tiles, "rows": cfg.tile.rows, "cols": cfg.tile.cols,
               "generate_cpu_s": _cpu_s() - cpu, "generate_wall_s": time.perf_counter() - wall}
    chip_path, tile_path = out_dir / "chip.v", out_dir / f"{TILE_MODULE}.v"
    chip_text, tile_text = chip_path.read_text(), tile_path.read_text()
    figures.update(chip_v_bytes=chip_path.stat().st_size, tile_v_bytes=tile_path.stat().st_size,
                   chip_v_lines=chip_text.count("\n"), **count_tile_modules(chip_text, tile_text, TILE_MODULE))
    if lint:
        from neurophase.cosim.runner import lint_verilog

        cpu, wall = _cpu_s(), time.perf_counter()
        clean, output = lint_verilog([chip_path, tile_path], "chip")
        figures.update(lint_clean=clean, lint_cpu_s=_cpu_s() - cpu, lint_wall_s=time.perf_counter() - wall)
        if not clean:
            figures["lint_output"] = output[-4000:]
    return figures


def _table(rows: list[dict]) -> str:
    lines = ["| tiles | generate CPU (s) | generate wall (s) | chip.v | neurophase_chip_tile.v | tile instances | lint wall / CPU (s) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lint = f"{r['lint_wall_s']:.0f} / {r['lint_cpu_s']:.0f}" if "lint_wall_s" in r else "-"
        lines.append(f"| {r['tiles']} | {r['generate_cpu_s']:.0f} | {r['generate_wall_s']:.0f} | "
                     f"{r['chip_v_bytes'] / 1e6:.1f} MB, {r['chip_v_lines']:,} lines | {r['tile_v_bytes'] / 1e3:.0f} kB | "
                     f"{r['instances']} | {lint} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiles", type=int, nargs="+", default=[1, 16, 144], help="tile counts to generate")
    parser.add_argument("--lint", type=int, nargs="*", default=[], help="tile counts whose Verilog is also linted")
    parser.add_argument("--out", type=Path, default=Path("out/bench_generate"), help="folder for the Verilog")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child process: one count
    args = parser.parse_args(argv)
    for tiles in args.tiles:
        if tiles < 1:
            parser.error(f"--tiles must be at least 1, not {tiles}")
    if args.one is not None:
        print(json.dumps(measure(args.one, args.out / f"tiles_{args.one}", lint=args.one in args.lint)))
        return 0
    rows = []
    for tiles in args.tiles:
        cmd = [sys.executable, "-m", "neurophase.benchmarks.bench_generate", "--one", str(tiles),
               "--out", str(args.out), "--lint", *map(str, args.lint)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{tiles} tile(s): {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    print(_table(rows))
    return 0 if all(r.get("lint_clean", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
