"""How much memory an actor needs for a unit, before anything is allocated.

Counted from the engine's own allocations (:mod:`doodl.workers.engine`) with the unit's
shapes, on the meta device (no memory): ``V`` variants of ``P`` parameters, batch ``B``,
``A`` activation values per sample (:func:`doodl.workers.models.activation_count`), ``S``
snapshots of ``D`` recorded values, ``T`` steps, 4-byte floats:

- parameters: the stacked parameters and their gradients, ``2 V P``; the hand-batched MLP
  adds its per-layer weight-gradient buffers (``V P``), the vmapped families a second
  gradient while the last one is replaced and the flat copy a snapshot takes (``2 V P``);
- optimiser: its scratch and state, ``V P`` each: SGD 1 (2 with momentum), Adam(W) 5;
- activations: the hand-batched MLP's reused buffers, counted layer by layer (a training
  batch's outputs and backward gradients, and one set per sample count evaluation runs
  at); for the vmapped families :data:`AUTOGRAD_KEEPS` times the bytes autograd saves for a
  training batch (:func:`doodl.workers.models.saved_activation_bytes`), or an evaluation
  chunk's forward values (:data:`EVAL_KEEPS`) when more;
- snapshots: ``S V D`` in float32, and the per-step histories;
- writing: the copies the shard writer makes of the result (snapshots at the record dtype,
  final parameters): :data:`WRITE_COPIES`. Memory training freed stays with the process's
  allocator, so a unit's peak is its training plus its writing.

An actor trains one unit while it writes the one before (two in flight,
:data:`doodl.workers.actor.UNITS_IN_FLIGHT`), and holds the data set once:
:attr:`UnitMemory.actor_bytes`. Checked against the measured peak of MLP and CNN units in
``tests/workers/test_unit_memory.py`` (within 25%) and ``bench/unit_memory.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from doodl.workers.config import VariantConfig

FLOAT = 4  # bytes of a float32
# a vmapped family's training step takes this many times the bytes autograd saves for the
# backward pass (the saved tensors, vmap's batched copies, convolution workspaces, the
# gradients flowing back): fitted on the CNN units of bench/unit_memory.py
AUTOGRAD_KEEPS = 3.3
# what any unit adds on top: the allocators' slack and pools (glibc's, pyarrow's), measured
# on units of a few MB (bench/unit_memory.py: 15-50 MB)
OVERHEAD = 32_000_000
# evaluation without a backward pass, per forward value of a chunk: a layer's input and output
# at a time, and vmap's copies of inputs shared by every variant (fitted with bench/unit_memory.py)
EVAL_KEEPS = 4.0
# writing a unit's shards copies its result twice more: the snapshot rows picked for the
# Arrow column, and the Parquet bytes (parameters compress little), measured 1.4-2.4
WRITE_COPIES = 2


@dataclass(frozen=True)
class UnitMemory:
    """The bytes a unit takes, by what holds them (see the module docstring)."""

    config: VariantConfig  # a variant of the unit (its shape class)
    label: str  # the unit's model, for messages
    variants: int
    parameters: int
    optimiser: int
    activations: int
    evaluation: int
    snapshots: int
    result: int  # what train_unit returns: snapshots at the record dtype, final parameters
    writing: int  # the writer's copies of the result
    data: int  # the data set, held once per actor

    @property
    def training_bytes(self) -> int:
        """While the unit trains: its parameters, optimiser, recordings and the larger of a
        training batch's and an evaluation chunk's activations."""
        return self.parameters + self.optimiser + self.snapshots + max(self.activations, self.evaluation) + OVERHEAD

    @property
    def unit_bytes(self) -> int:
        """One unit trained, then written: the allocator keeps what training freed for
        reuse, and the writer's copies come on top of it."""
        return self.training_bytes + self.writing

    @property
    def actor_bytes(self) -> int:
        """An actor at work: a unit training while the last one's result is written, and
        the data set."""
        return self.training_bytes + self.result + self.writing + self.data

    def describe(self) -> str:
        """One line: the figure and what makes it up."""
        parts = {"parameters and gradients": self.parameters, "optimiser": self.optimiser,
                 "activations": max(self.activations, self.evaluation), "snapshots": self.snapshots,
                 "the previous unit's result, written": self.result + self.writing, "data": self.data,
                 "allocators": OVERHEAD}
        big = ", ".join(f"{k} {human_bytes(v)}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if v)
        return f"~{human_bytes(self.actor_bytes)} per actor for units of {self.variants} x {self.label} ({big})"


def estimate_unit_memory(configs: Sequence[VariantConfig]) -> UnitMemory:
    """The memory of training and writing the unit of ``configs`` (one shape class)."""
    return estimate_memory(configs[0], len(configs))


def estimate_memory(cfg: VariantConfig, variants: int) -> UnitMemory:
    """The memory of a unit of ``variants`` variants shaped like ``cfg``."""
    from doodl.workers.datasets import dataset_split
    from doodl.workers.engine import EVAL_POINTS, eval_chunk, snapshot_steps
    from doodl.workers.models import activation_count, param_count, saved_activation_bytes

    split = dataset_split(cfg)
    shape = split.shape
    V, P, A, B, T = variants, param_count(cfg, shape), activation_count(cfg, shape), cfg.batch_size, cfg.steps
    S, D = len(snapshot_steps(T, cfg.record_every)), cfg.projection_dim or param_count(cfg, shape)
    mlp = cfg.model == "mlp"
    parameters = (3 if mlp else 4) * V * P * FLOAT
    slots = {"sgd": 1 + (cfg.momentum != 0)}.get(cfg.optimizer, 5)
    # the sample counts evaluation runs at: held-out points, training sets and the test split in chunks
    pieces = {total: eval_chunk(V, max(split.n_features, A), total)
              for total in (min(EVAL_POINTS, len(split.y_test)), len(split.y_train), len(split.y_test))}
    held_out = pieces[min(EVAL_POINTS, len(split.y_test))]
    if mlp:  # its reused buffers (BatchedMLP._buffer): the training batch's, the held-out chunk's
        # and, at the end, the final evaluation's (measured: one chunk's worth stays resident)
        linear = _linear_layers(cfg, shape)
        outputs = sum(o for _, o in linear)
        backward = 2 * sum(i for i, _ in linear[1:])  # the gradient through each hidden layer and its ReLU
        activations = V * (B * (outputs + backward) + (held_out + max(pieces.values())) * outputs) * FLOAT
        evaluation = 0
    else:
        activations = int(AUTOGRAD_KEEPS * V * saved_activation_bytes(cfg, shape, B))
        evaluation = int(EVAL_KEEPS * V * max(pieces.values()) * A * FLOAT)
    evaluation += V * max(pieces.values()) * split.n_features * FLOAT  # a chunk's inputs
    record = 2 if cfg.record_dtype == "float16" else FLOAT
    projection = D * P * FLOAT if cfg.projection_dim else 0
    snapshots = S * V * D * FLOAT + projection + 4 * V * (T + 1) * FLOAT
    result = S * V * D * record + V * P * FLOAT
    writing = WRITE_COPIES * result
    data = split.x_train.nbytes + split.x_test.nbytes
    label = f"{cfg.model} width {cfg.width} depth {cfg.depth} ({P:,} parameters, batch {B})"
    return UnitMemory(cfg, label, V, parameters, slots * V * P * FLOAT, activations, evaluation, snapshots, result,
                      writing, data)


def human_bytes(n: float) -> str:
    """``n`` bytes as a short figure (``1.2 GB``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 999.5:  # else it would round to "1e+03"
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def _linear_layers(cfg: VariantConfig, shape) -> list[tuple[int, int]]:
    """(inputs, outputs) of each linear layer of an MLP, built on the meta device."""
    import torch

    from doodl.workers.models import build_model

    with torch.device("meta"):
        model = build_model(cfg, shape)
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]
