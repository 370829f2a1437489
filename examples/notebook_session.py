"""A notebook-style ladd session on the embedded `digits` set, small enough for a laptop CPU
(well under a minute): distill → label → evaluate → save/load → report.

    python examples/notebook_session.py [OUT]     # OUT defaults to a new temporary folder
"""

import sys
import tempfile
from pathlib import Path

from ladd import api

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="ladd-session-"))
rt = api.runtime("cpu")

# 1. Data: the source config is recorded in the artifact, so later stages can reload the same data.
source = api.SourceConfig(dataset="digits")
data = api.load_dataset(source)
print(f"{data.name}: {len(data.train)} train / {len(data.test)} test images, {data.num_classes} classes")

# 2. Images: one real image per class (learned methods: method="dm", "mtt", … with a recipe).
art = api.distill(data, api.ImagesConfig(method="random", ipc=1, model="convnet-w32"), source, rt)

# 3. Labels: LADD's dense labels on a 4×4 grid of sub-images (8 px digits), from a labeler early-stopped after one epoch.
labels = api.LabelConfig(method="ladd", n=4, labeler=api.ExpertConfig(model="convnet-w32", epochs=1))
art = api.label(art, data, labels, rt)

# 4. Save and read back: evaluate exactly what is stored.
art = api.load_artifact(api.save_artifact(out / "run" / "artifact", art))
print("\n".join(api.describe(art)))

# 5. Students: hard labels (baseline) against LADD's labels, one seed, two epochs.
cfg = api.eval_config(methods=("baseline", "ladd"), models=("convnet-w32",), seeds=1, epochs=2, crops_per_step=3)
rows = api.evaluate(art, data, cfg, rt)
for row in rows:
    print(f"{row['method']:<9} {100 * row['acc_mean']:.1f}% · labels {row['label_bytes_zip']:,} B zip")

# 6. A run folder (results.json/.md/.png) and a report comparing run folders.
api.save_results(out / "run", rows, art, out / "run" / "artifact", cfg, title="notebook session")
written = api.report([out / "run"], out / "report", images=1)
print(f"wrote {len(written)} report files to {out / 'report'}")
