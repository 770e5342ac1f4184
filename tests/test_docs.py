"""Docs that cannot drift: measured facts come from their sources, every CLI option has help text."""

from __future__ import annotations

import argparse
import json

import pytest

from lrisc_sim import docfacts
from lrisc_sim.cli import build_parser


def _parsers(p: argparse.ArgumentParser, path: str = "lrisc-sim"):
    yield path, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from _parsers(sub, f"{path} {name}")


@pytest.mark.parametrize("path,parser", list(_parsers(build_parser())), ids=lambda v: v if isinstance(v, str) else "")
def test_every_option_has_help_and_no_literal_percent(path, parser):
    text = parser.format_help()
    assert "%%" not in text, f"{path}: a literal '%%' in its help"
    missing = [a.option_strings or [a.dest] for a in parser._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
               and not a.help and a.help != argparse.SUPPRESS]
    assert not missing, f"{path}: options without help: {missing}"


def test_docs_quote_their_sources():
    assert docfacts.stale() == [], "run python -m lrisc_sim.docfacts"


def test_facts_follow_their_sources(tmp_path, monkeypatch):
    from lrisc_sim.lrisc.codec import DEFAULT_STEPS

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    monkeypatch.setattr(docfacts, "ROOT", tmp_path)
    assert docfacts.value("lrisc_decode_s") == docfacts.NOT_MEASURED
    assert docfacts.value("fig_time:fig4_snr") == docfacts.NOT_MEASURED
    (tmp_path / "benchmarks" / "results" / "lrisc_decode_time.md").write_text(
        "| checkpoint | U-Net | steps | encode | total |\n|---|---|---:|---:|---:|\n"
        f"| shipped | patch 4 | {DEFAULT_STEPS + 1} | 0.2 | **0.66** |\n"
        f"| shipped | patch 4 | {DEFAULT_STEPS} | 0.2 | **1.234** |\n")
    (tmp_path / "benchmarks" / "results" / "figure_times.json").write_text(
        json.dumps({"fig4_snr": {"wall_s": 390.0, "threads": 2}}))
    assert docfacts.value("lrisc_steps") == str(DEFAULT_STEPS)
    assert docfacts.value("lrisc_decode_s") == "1.23 s"
    assert docfacts.value("fig_time:fig4_snr") == "6.5 min on 2 threads"
    doc = "LRISC takes <!-- fact lrisc_decode_s -->9 s<!-- /fact --> per point."
    assert docfacts.render(doc) == "LRISC takes <!-- fact lrisc_decode_s -->1.23 s<!-- /fact --> per point."
    (tmp_path / "README.md").write_text(doc)
    assert docfacts.stale(tmp_path) == ["README.md"]
    with pytest.raises(KeyError, match="unknown fact"):
        docfacts.render("<!-- fact nope -->x<!-- /fact -->")


def test_card_facts_read_the_model_card(tmp_path, monkeypatch):
    monkeypatch.setattr(docfacts, "ROOT", tmp_path)
    assert docfacts.value("card:lrisc/m:kodak.mean") == docfacts.NOT_MEASURED
    (tmp_path / "lrisc_sim" / "checkpoints" / "lrisc").mkdir(parents=True)
    (tmp_path / "lrisc_sim" / "checkpoints" / "lrisc" / "m.json").write_text(
        json.dumps({"cpu_hours": 1.7835, "kodak": {"red": {"mean": 41.2, "per_snr": [43.25, 41.0]}},
                    "stages": [{"name": "p", "steps": 1500}]}))
    assert docfacts.value("card:lrisc/m:cpu_hours") == "1.7835"
    assert docfacts.value("card:lrisc/m:kodak.red.mean") == "41.2"
    assert docfacts.value("card:lrisc/m:kodak.red.per_snr") == "43.25 / 41"
    assert docfacts.value("card:lrisc/m:kodak.red.nope") == docfacts.NOT_MEASURED
    assert docfacts.value("card:lrisc/m:stages.0.steps") == "1500"
    assert docfacts.value("card:lrisc/m:stages.1.steps") == docfacts.NOT_MEASURED
    doc = "<!-- fact card:lrisc/m:kodak.red.mean -->0<!-- /fact -->%"
    assert docfacts.render(doc) == "<!-- fact card:lrisc/m:kodak.red.mean -->41.2<!-- /fact -->%"
