"""Measured facts quoted in README.md, ARCHITECTURE.md and the checkpoint READMEs, generated from their sources so
they cannot drift.

A measured number in the docs is written between markers, ``<!-- fact NAME -->TEXT<!-- /fact -->``, and ``TEXT``
is rewritten from the fact's source by ``python -m lrisc_sim.docfacts`` (``--check`` only reports drift; the
test suite runs it). Sources are files the project's own commands write: the shipped model cards
(``lrisc_sim/checkpoints/*/*.json``), benchmark outputs (``benchmarks/results/``) and figure run times
(``benchmarks/results/figure_times.json`` from ``benchmarks/figure_times.py``). A fact whose source is missing
renders as "not measured" rather than a stale number.

Facts (``NAME``): ``lrisc_steps`` (LRISC's default number of DDIM steps, the codec option),
``lrisc_decode_s`` (seconds per 768 x 512 point at those steps, one thread, from
``benchmarks/results/lrisc_decode_time.md``), ``fig_time:EXPERIMENT`` (wall time of ``lrisc-sim run
experiments/EXPERIMENT.toml`` from scratch, with its thread count), ``card:CODEC/NAME:KEY.KEY...`` (a value of a
shipped model card ``lrisc_sim/checkpoints/CODEC/NAME.json``, e.g.
``card:lrisc/lrisc_small:kodak.lpips_reduction_vs_deepjscc_pct.mean``; a number picks a list item,
``recipe_stages.0.cpu_hours``; a list renders as ``a / b / c``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "ARCHITECTURE.md", "lrisc_sim/checkpoints/lrisc/README.md",
        "lrisc_sim/checkpoints/deepjscc/README.md")
MARK = re.compile(r"<!-- fact (?P<name>[\w:./-]+) -->(?P<text>.*?)<!-- /fact -->", re.S)
NOT_MEASURED = "not measured"


def lrisc_steps(_: str = "") -> str:
    """LRISC's default number of DDIM steps (the codec option's default, a decode-time choice)."""
    from lrisc_sim.lrisc.codec import DEFAULT_STEPS

    return str(DEFAULT_STEPS)


def lrisc_decode_s(_: str = "") -> str:
    """Seconds per point of the shipped checkpoint at its default steps (``lrisc_decode_time.md``, row 'shipped')."""
    path = ROOT / "benchmarks" / "results" / "lrisc_decode_time.md"
    if not path.is_file():
        return NOT_MEASURED
    steps = lrisc_steps()
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0] == "shipped" and cells[2] == steps:
            return f"{float(cells[-1].strip('*')):.2f} s"
    return NOT_MEASURED


def fig_time(name: str) -> str:
    """Wall time of one experiment from scratch (``figure_times.json``)."""
    path = ROOT / "benchmarks" / "results" / "figure_times.json"
    rec = json.loads(path.read_text()).get(name) if path.is_file() else None
    if not rec:
        return NOT_MEASURED
    return f"{rec['wall_s'] / 60:.1f} min on {rec['threads']} thread{'s' if rec['threads'] != 1 else ''}"


def card(arg: str) -> str:
    """A value of a shipped model card: ``CODEC/NAME:KEY.KEY...`` (a number picks a list item; numbers as the card
    stores them, lists joined by `` / ``); "not measured" when the card or the key is missing."""
    stem, _, keys = arg.partition(":")
    path = ROOT / "lrisc_sim" / "checkpoints" / f"{stem}.json"
    if not keys or not path.is_file():
        return NOT_MEASURED
    v = json.loads(path.read_text())
    for k in keys.split("."):
        if isinstance(v, list) and k.isdigit() and int(k) < len(v):
            v = v[int(k)]
        elif isinstance(v, dict) and k in v:
            v = v[k]
        else:
            return NOT_MEASURED
    if isinstance(v, list):
        return " / ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


FACTS: dict[str, Callable[[str], str]] = {"lrisc_steps": lrisc_steps, "lrisc_decode_s": lrisc_decode_s,
                                          "fig_time": fig_time, "card": card}


def value(name: str) -> str:
    """The current text of fact ``NAME`` or ``NAME:ARG``; ``KeyError`` for an unknown fact."""
    head, _, arg = name.partition(":")
    if head not in FACTS:
        raise KeyError(f"unknown fact {name!r}: known facts are {', '.join(FACTS)}")
    return FACTS[head](arg)


def render(text: str) -> str:
    """``text`` with every fact marker's contents replaced by the fact's current value."""
    return MARK.sub(lambda m: f"<!-- fact {m['name']} -->{value(m['name'])}<!-- /fact -->", text)


def stale(root: Path = ROOT) -> list[str]:
    """The docs whose facts differ from their sources."""
    return [d for d in DOCS if (root / d).is_file() and render((root / d).read_text()) != (root / d).read_text()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lrisc_sim.docfacts",
                                description="Rewrite the measured facts in README.md, ARCHITECTURE.md and the "
                                            "checkpoint READMEs from their sources (model cards, benchmark "
                                            "outputs).")
    p.add_argument("--check", action="store_true", help="only report docs whose facts are out of date (exit 1)")
    a = p.parse_args(argv)
    if a.check:
        bad = stale()
        for d in bad:
            print(f"{d}: measured facts out of date; run python -m lrisc_sim.docfacts", file=sys.stderr)
        return 1 if bad else 0
    for d in DOCS:
        path = ROOT / d
        new = render(path.read_text())
        if new != path.read_text():
            path.write_text(new)
            print(f"rewrote the facts of {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
