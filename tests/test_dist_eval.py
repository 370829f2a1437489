"""`ladd eval` under torchrun: independent students spread over the ranks give one process's rows
exactly; a single student is trained by all ranks under DDP."""

from __future__ import annotations

import json

import pytest
import torch

from distributed import spawn, torchrun
from ladd import pipeline
from ladd.artifact import load_artifact, save_artifact
from ladd.core.runtime import Runtime
from ladd.eval import protocol
from ladd.eval.protocol import EvalConfig, evaluate
from ladd.experts import ExpertConfig
from ladd.pipeline import ImagesConfig, LabelConfig, SourceConfig
from ladd.report.results import eval_notes

# which rank trained a student and how long it took are the only fields that may differ from one process
RUN_FIELDS = ("seconds", "trained_by")
SPREAD = EvalConfig(methods=("baseline", "soft"), seeds=3, epochs=2, select_lr=(0.01, 0.03), val_per_class=5)  # 12 students
SINGLE = EvalConfig(methods=("soft",), seeds=1, epochs=3, lr=0.03)  # 1 student


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """digits, IPC 2, soft labels from a 1-epoch labeler."""
    root = tmp_path_factory.mktemp("dist_eval")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LADD_CACHE", str(root / "cache"))
        source = SourceConfig(dataset="digits")
        data = pipeline.load_source(source)
        art = pipeline.distill(data, source, ImagesConfig(ipc=2))
        art = pipeline.label(art, data, LabelConfig(method="soft", labeler=ExpertConfig(epochs=1)), Runtime())
        save_artifact(root / "A", art)
    return root / "A"


def _same(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in RUN_FIELDS} for r in rows]


def _evaluate_recording(path, configs: list[EvalConfig]) -> list[tuple[list[dict], list[tuple[str, bool]]]]:
    """`evaluate` for each config, with every student training this process ran: (description, under DDP)."""
    from ladd.core import dist

    art = load_artifact(path)
    data = pipeline.load_source(pipeline.source_of(art))
    real_train, calls = protocol.train, []

    def recording(*args, description, **kw):
        calls.append((description, dist.active()))
        return real_train(*args, description=description, **kw)

    protocol.train = recording
    try:
        out = []
        for cfg in configs:
            rows = evaluate(art, data, cfg, Runtime())
            out.append((rows, calls[:]))
            calls.clear()
        return out
    finally:
        protocol.train = real_train


def test_students_go_round_robin_to_the_ranks_and_give_one_process_rows_a_single_student_trains_under_ddp(artifact):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank
    try:
        (one, one_calls), (single, _) = _evaluate_recording(artifact, [SPREAD, SINGLE])
    finally:
        torch.set_num_threads(threads)
    ranks = spawn(_evaluate_recording, artifact, [SPREAD, SINGLE])

    # assignment: 2 methods × 2 lr candidates × 3 seeds, unit u on rank u % 2, each trained alone
    assert len(one_calls) == 12 and one[0]["trained_by"] == {"layout": "one process", "ranks": 1, "students": 12}
    for r, [(rows, calls), _] in enumerate(ranks):
        assert calls == [(d, False) for d, _ in one_calls[r::2]]
        assert _same(rows) == _same(one)  # the lr choices, accuracies and FLOPs exactly
        for row in rows:
            chosen = SPREAD.select_lr.index(row["lr"])
            first = (SPREAD.methods.index(row["method"]) * 2 + chosen) * 3  # the chosen candidate's first unit
            assert row["trained_by"] == {
                "layout": "assignment",
                "ranks": 2,
                "students": 12,
                "seed_ranks": [(first + s) % 2 for s in range(3)],
            }

    # DDP: both ranks train the one student together; float summation order differs, so within one test image
    test_images = len(pipeline.load_source(SourceConfig(dataset="digits")).test)
    for _, (rows, calls) in ranks:
        assert calls == [("soft · convnet · seed 0", True)]
        assert rows[0]["trained_by"] == {"layout": "ddp", "ranks": 2, "students": 1, "why": "fewer students than ranks"}
        assert abs(rows[0]["acc_mean"] - single[0]["acc_mean"]) <= 1 / test_images + 1e-9
        assert rows[0]["flops_deploy"] == single[0]["flops_deploy"]


def test_ladd_eval_under_torchrun_writes_the_results_of_one_process_and_names_the_layout(artifact, tmp_path):
    done = torchrun("eval", artifact, "--seeds", "3", "--epochs", "2", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    written = json.loads((tmp_path / "results.json").read_text())
    cfg = EvalConfig(**written["config"]["eval"])
    art = load_artifact(artifact)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ((one, _),) = _evaluate_recording(artifact, [cfg])  # the same command as one process
    finally:
        torch.set_num_threads(threads)
    cli_rows = [{k: v for k, v in r.items() if k not in ("artifact", "artifact_sha256")} for r in written["rows"]]  # added by the CLI
    assert cfg.methods == ("baseline", "soft") and _same(cli_rows) == _same(json.loads(json.dumps(one)))
    assert [r["trained_by"]["seed_ranks"] for r in written["rows"]] == [[0, 1, 0], [1, 0, 1]]  # baseline, soft
    layout = (
        "students: 6 spread over 2 ranks (assignment), each trained whole by one rank; "
        "rank 0 gathered the rows: baseline · convnet-w64, soft · convnet-w64"
    )
    assert [n for n in written["notes"] if n != layout] == eval_notes(art, cfg, one) and layout in written["notes"]


def test_layout_assignment_needs_a_student_per_rank_and_an_in_memory_training_set(monkeypatch):
    from ladd.report.results import layout_notes

    assert protocol._layout(3, False) == {"layout": "one process", "ranks": 1, "students": 3}
    monkeypatch.setattr(protocol.dist, "world", lambda: 4)
    assert protocol._layout(4, False)["layout"] == "assignment"
    assert protocol._layout(3, False) == {"layout": "ddp", "ranks": 4, "students": 3, "why": "fewer students than ranks"}
    stored = protocol._layout(40, True)
    assert stored["layout"] == "ddp" and "dataset store" in stored["why"]
    row = {"method": "baseline", "model": "convnet", "trained_by": stored}
    assert layout_notes([row]) == [
        "students: 40, each trained by all 4 ranks (DDP, the training set is read from a dataset store): baseline · convnet"
    ]
    one_process = {"layout": "one process", "ranks": 1, "students": 1}
    assert layout_notes([{**row, "trained_by": one_process}, {"method": "made before", "model": "convnet"}]) == []


def _evaluate_together(path) -> list[list[dict]]:
    """Two evaluations in one `evaluate_all`: 3 students of 2 epochs, then 3 of 4."""
    art = load_artifact(path)
    data = pipeline.load_source(pipeline.source_of(art))
    short = EvalConfig(methods=("soft",), seeds=3, epochs=2, lr=0.03)
    return protocol.evaluate_all([(art, short), (art, short.model_copy(update={"epochs": 4}))], data, Runtime())


def test_students_of_unequal_length_are_shared_longest_first_and_give_one_process_rows(artifact):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank
    try:
        one = _evaluate_together(artifact)
    finally:
        torch.set_num_threads(threads)
    ranks = spawn(_evaluate_together, artifact)
    # epochs stand in for seconds (too little work to time): 4, 4, 4 go to ranks 0, 1, 0; then the
    # 2s to the lighter rank: 1, 1, 0 (8 | 8 epochs; round-robin would give 10 | 6)
    owners = protocol.assign([2.0, 2.0, 2.0, 4.0, 4.0, 4.0], 2)
    assert owners == [1, 1, 0, 0, 1, 0]
    for rows in ranks:
        assert [_same(r) for r in rows] == [_same(r) for r in one]
        assert [r[0]["trained_by"]["seed_ranks"] for r in rows] == [owners[:3], owners[3:]]


def _estimate_fails_on_rank_zero() -> str:
    """`train_plans` whose estimate (rank 0's alone) fails, as on a corrupt student state: what each rank raises."""
    import types

    from ladd.core.errors import ArtifactError

    def corrupt(*a, **k):
        raise ArtifactError("students/x/trainer_state.safetensors is not a readable safetensors file")

    protocol.expected_seconds = corrupt
    plans = [types.SimpleNamespace(seeds=2, data=types.SimpleNamespace(images=torch.zeros(1)))]
    try:
        protocol.train_plans(plans, None, None)
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return "no error"


def test_a_failed_estimate_on_rank_zero_stops_every_rank_with_its_message():
    r0, r1 = spawn(_estimate_fails_on_rank_zero)
    assert r0 == "ArtifactError: students/x/trainer_state.safetensors is not a readable safetensors file"
    assert r1.startswith("RunError: rank 0 failed (ArtifactError: students/x/trainer_state.safetensors is not") and "stops too" in r1
