"""The chaos benchmark on one cheap stage: DM on digits, killed (SIGKILL to its process group)
right after a checkpoint of the first attempt and again after a checkpoint of the resumed one,
must finish and write the bytes of an uninterrupted run."""

from __future__ import annotations

from conftest import benchmark


def test_killed_distill_resumes_to_the_same_bytes(tmp_path):
    chaos = benchmark("chaos")
    stage = chaos.distill_stage(ipc=1, iterations=40, every=5)
    bench = chaos.Bench(tmp_path, threads=1, log=lambda m: None, timeout=300)
    checkpoints = tmp_path / stage.name / "chaos" / "cache" / "distill"
    kills = [chaos.after_write(checkpoints, "*.safetensors"), chaos.after_write(checkpoints, "*.safetensors")]
    row = bench.chaos(stage, kills)
    assert row["kills"] == 2, row
    assert row["survived"], row
    assert row["identical"], row
    assert sum(a["resume"] for a in row["attempts"]) == 2, row  # both re-runs continued from a checkpoint
    assert row["lost_s"] is not None
