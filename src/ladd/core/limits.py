"""Upper bounds of the numbers ladd accepts, shared by the CLI's option ranges and the configs'
pydantic fields: far above any real setting, but finite, so a typo (1e30 iterations, 10**12
epochs) is refused at once instead of running for ever or failing deep inside a run. NaN and
±inf are refused everywhere (typer ranges; `allow_inf_nan=False` on the configs)."""

MAX_COUNT = 100_000  # images per class, epochs, images or classes per class-wise quantity, top-k, indices of classes
MAX_STEPS = 1_000_000  # optimization iterations
MAX_UNROLL = 10_000  # inner loops: student steps per outer step (BPTT, MTT, DC)
MAX_BATCH = 2**20  # batch sizes and per-class samples drawn at once
MAX_SEED = 2**32 - 1
MAX_SEEDS = 1000  # students per configuration
MAX_ENSEMBLE = 100  # experts averaged
MAX_SAVES = 1000  # checkpoints per epoch
MAX_GRID = 64  # LADD's N (N × N sub-images)
MAX_VIEWS = MAX_GRID**2  # local views (or tiles) per image
MAX_PIXELS = 4096  # image side
MAX_EXPERTS = 10_000
MAX_WORKERS = 1024
MAX_QUANTILES = 1000
MAX_GRID_IMAGES = 64  # images per class shown in a report's image grid
MAX_INDEX = 10**9  # an index into a split
MAX_RHO = 1e6  # LPLD's pruning factor
MIN_LR, MAX_LR = 1e-8, 10.0  # network learning rates
MAX_PIXEL_LR = 1e6  # learning rates of pixels (MTT's lr_img is 1000 at IPC 1)
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-3, 1e3
