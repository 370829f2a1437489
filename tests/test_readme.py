"""The README and docs/ as a user reads them: result tables say what the committed JSON under
docs/results/ says, links resolve, no development-log wording, a first screen that gets a newcomer
going, and examples that fit together."""

import re
import shlex
from pathlib import Path

from conftest import benchmark

ROOT = Path(__file__).resolve().parents[1]


def test_the_documents_show_every_committed_result_as_it_is():
    assert benchmark("readme_tables").main(["--check"]) == 0


def test_a_number_typed_into_a_table_by_hand_is_caught(tmp_path, monkeypatch, capsys):
    tables = benchmark("readme_tables")
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- results: ladd-run -->\n(.*?)<!-- /results -->", text, re.S)
    assert block and "93.97" in block[1]  # the block is filled from ladd_run_ipc10.json
    copy = tmp_path / "README.md"
    copy.write_text(text.replace("93.97 ± 0.29", "95.97 ± 0.29", 1))
    monkeypatch.setattr(tables, "DOCUMENTS", (copy, ROOT / "docs" / "results.md"))
    assert tables.main(["--check"]) == 1
    assert "out of date with docs/results" in capsys.readouterr().err
    assert "93.97" not in copy.read_text().split("<!-- results: ladd-run -->")[1].split("<!-- /results -->")[0]  # --check writes nothing


DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_relative_link_of_the_documents_exists():
    broken = [
        f"{doc.relative_to(ROOT)} → {target}"
        for doc in DOCUMENTS
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text())
        if "://" not in target and not (doc.parent / target).exists()
    ]
    assert not broken, f"links to files a user does not have: {broken}"


def test_the_documents_speak_to_users_not_to_the_development_log():
    phrases = re.compile(r"\bthe issue\b|since this version|this round|\bsession \d|\.\./shared|_PROSE\b|[A-Z]+_DEFAULT\b")
    found = [f"{doc.relative_to(ROOT)}: {m[0]!r}" for doc in DOCUMENTS for m in phrases.finditer(doc.read_text())]
    assert not found, found


def test_the_readme_first_screen_installs_activates_and_starts_the_walkthrough():
    head = (ROOT / "README.md").read_text().splitlines()[:60]
    text = "\n".join(head)
    for needed in ("make run", "make test", "source .venv/bin/activate", ".venv/bin/ladd", "<!-- walkthrough -->"):
        assert needed in text, f"the README's first screen lacks {needed!r}"


def _parsed(line: str) -> dict:
    """The options of a README `ladd COMMAND …` line as the CLI reads them, defaults included."""
    from typer.main import get_command

    from ladd.cli import app

    name, *args = shlex.split(line, comments=True)[1:]
    return get_command(app).commands[name].make_context(name, args).params


def test_the_readme_experts_example_makes_the_buffer_its_mtt_example_looks_for():
    from ladd.images.recipes import load_recipe

    text = (ROOT / "README.md").read_text()
    experts = _parsed(re.search(r"^ladd experts .*$", text, re.M)[0])
    mtt = _parsed(re.search(r"^ladd distill .*--images mtt.*$", text, re.M)[0])
    recipe = load_recipe("mtt", mtt["dataset"], mtt["ipc"], mtt["recipe"])["params"]
    assert (experts["dataset"], experts["model"]) == (mtt["dataset"], mtt["model"])
    assert (experts["num_experts"], experts["epochs"]) == (recipe["num_experts"], recipe["expert_train_epochs"])
