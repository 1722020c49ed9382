"""``NeuroMFACallback``: NeuroMFA snapshots while a Lightning ``Trainer`` trains, logged next to the loss.

Scheduling only: the numerics live in :mod:`neuromfa_callback.functional` and
:class:`~neuromfa_callback.NeuroMFA`; the snapshot pipeline in :mod:`neuromfa_callback.monitor`;
logging in :mod:`neuromfa_callback.loggers`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.model_helpers import is_overridden

from neuromfa_callback._checks import check_int, check_positive_int
from neuromfa_callback._sharded import gathered_parameters
from neuromfa_callback.loggers import RecordLogger
from neuromfa_callback.monitor import SnapshotMonitor

__all__ = ["NeuroMFACallback"]

# Sharded strategies whose parameters cannot be gathered here (FSDP2 / ModelParallelStrategy keeps DTensors: gathered).
_REFUSED = {
    "FSDPStrategy": "FSDP1 (`FullyShardedDataParallel` flat parameters)",
    "DeepSpeedStrategy": "DeepSpeed (ZeRO partitioned parameters)",
    "XLAFSDPStrategy": "XLA FSDP",
}


class NeuroMFACallback(Callback):
    r"""Log the multifractal spectrum and the degree of emergence while the model trains.

    A snapshot is taken at train start (the baseline for E, normally the initialisation) and every
    ``every_n_train_steps`` optimizer steps (gradient accumulation does not fire twice; sanity
    checks and ``fast_dev_run`` are skipped). Every logger in ``trainer.loggers`` receives
    ``neuromfa/alpha0``, ``neuromfa/width``, ``neuromfa/emergence``, their ``_std`` across samples,
    the scale-controlled ``neuromfa/*_rms`` values (``scale_control``), the weighted-degree
    baseline, the ill-formed-spectrum count and the error count, at the step the weights were
    snapshotted. W&B also gets an incremental spectrum table, an f(alpha) chart and images;
    TensorBoard gets the figures.

    Args:
        every_n_train_steps: snapshot interval in optimizer steps (>= 1).
        samples: sampled networks per snapshot (seeds ``0..samples-1``, the same neurons each time).
        neurons_per_layer: neurons sampled per layer (the reference uses 32).
        full: analyse every neuron (no sampling; computed synchronously on the weights' device).
        backend: ``"auto"``, ``"numpy"``, ``"torch"`` or ``"cupy"``.
        scale_control: also compute the scale-controlled spectrum (each matrix at RMS 0.02).
        history_path: append every finished snapshot to this JSON-lines file, flushed at once.
        asynchronous: analyse on a worker thread; the training thread only copies sampled weights.
        q, threshold, decimals, min_neighbours: engine parameters (see ``multifractal_spectrum``).
        on_error: ``"warn"`` (log NaN, count, warn once with the traceback, train on) or
            ``"raise"`` (stop training with the error at the next hook).
        figure_every_n_snapshots: log figures every this many snapshots (and at the end); 0 = only at the end.
        module: which part of the LightningModule to analyse: an attribute name or a callable
            ``pl_module -> nn.Module``; default: search the LightningModule for a supported model.
        log_tables: log the W&B spectrum table.
        prefix: metric-name prefix.

    Raises:
        ValueError: invalid arguments (in ``__init__``).
        MisconfigurationException: in ``setup``: a model with no supported layers, no logger and no
            ``history_path``, or a sharded strategy whose weights it cannot gather (``FSDPStrategy``,
            ``DeepSpeedStrategy``, ``XLAFSDPStrategy``). ``ModelParallelStrategy`` (FSDP2 ``fully_shard``
            and/or tensor parallelism: ``DTensor`` parameters) is supported: at each snapshot every rank
            all-gathers the full parameters (one full copy of the model per rank while the sampled
            weights are copied).

    Example:
        >>> import lightning.pytorch as pl
        >>> from neuromfa_callback import NeuroMFACallback
        >>> cb = NeuroMFACallback(every_n_train_steps=50, samples=4, history_path=None)
        >>> cb.every_n_train_steps, cb.monitor.scale_control
        (50, True)
    """

    def __init__(
        self,
        every_n_train_steps: int = 100,
        samples: int = 10,
        neurons_per_layer: int = 32,
        full: bool = False,
        backend: str = "auto",
        scale_control: bool = True,
        history_path: Any = None,
        asynchronous: bool = True,
        *,
        q: Any = None,
        threshold: float = 150.0,
        decimals: int = 0,
        min_neighbours: int = 10,
        on_error: str = "warn",
        figure_every_n_snapshots: int = 10,
        module: str | Callable[[pl.LightningModule], torch.nn.Module] | None = None,
        log_tables: bool = True,
        prefix: str = "neuromfa/",
    ) -> None:
        self.every_n_train_steps = check_positive_int("every_n_train_steps", every_n_train_steps)
        self.figure_every_n_snapshots = check_int("figure_every_n_snapshots", figure_every_n_snapshots, minimum=0)
        if module is not None and not (isinstance(module, str) or callable(module)):
            raise TypeError(f"Expected `module` to be an attribute name or a callable, got {module!r}")
        if not isinstance(prefix, str):
            raise TypeError(f"Expected `prefix` to be a str, got {prefix!r}")
        self.module = module
        self.monitor = SnapshotMonitor(
            samples=samples,
            neurons_per_layer=neurons_per_layer,
            full=full,
            backend=backend,
            scale_control=scale_control,
            history_path=history_path,
            asynchronous=asynchronous,
            q=q,
            threshold=threshold,
            decimals=decimals,
            min_neighbours=min_neighbours,
            on_error=on_error,
        )
        self.record_logger = RecordLogger(prefix=prefix, log_tables=log_tables)
        self._disabled = False
        self._check_deferred = False
        self._snapshots_since_figure = 0

    # ------------------------------------------------------------------------------- helpers
    def target(self, pl_module: pl.LightningModule) -> torch.nn.Module:
        """The module analysed."""
        if self.module is None:
            return pl_module
        if isinstance(self.module, str):
            try:
                return getattr(pl_module, self.module)
            except AttributeError as err:
                raise MisconfigurationException(
                    f"NeuroMFACallback(module={self.module!r}): {type(pl_module).__name__} has no attribute {self.module!r}"
                ) from err
        return self.module(pl_module)

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every finished snapshot record so far (also after a resume)."""
        return self.monitor.history

    def _log(self, trainer: pl.Trainer, records: list[dict[str, Any]], final: bool = False) -> None:
        if not records and not final:
            return
        for rec in records:
            self.record_logger.log(trainer.loggers, rec)
        self._snapshots_since_figure += len(records)
        every = self.figure_every_n_snapshots
        if trainer.is_global_zero and (final or (every and self._snapshots_since_figure >= every)):
            self._snapshots_since_figure = 0
            self.record_logger.log_figures(trainer.loggers, self.monitor.history)

    def _snapshot(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        target = self.target(pl_module)
        # Sharded (DTensor) parameters: every rank gathers them here (collective; every rank snapshots at the
        # same steps) and the sampled submatrices are copied before the shards are put back.
        with gathered_parameters(target):
            self.monitor.snapshot(target, trainer.global_step, epoch=trainer.current_epoch)

    # --------------------------------------------------------------------------------- hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        strategy = type(trainer.strategy).__name__
        if strategy in _REFUSED:
            raise MisconfigurationException(
                f"NeuroMFACallback does not support {strategy} ({_REFUSED[strategy]}): the analysis reads whole weight "
                "rows and columns, which this strategy splits across ranks in a form the callback cannot gather. "
                "Use DDP, or ModelParallelStrategy with FSDP2 `fully_shard` (gathered collectively at each snapshot), "
                "or save checkpoints and analyse them with `neuromfa analyze`."
            )
        if not trainer.loggers and self.monitor.history_file is None:
            raise MisconfigurationException(
                "NeuroMFACallback has nowhere to write: the Trainer has no logger and `history_path` is None. "
                "Pass a logger (e.g. WandbLogger, CSVLogger) or set `history_path`."
            )
        # A model built in `configure_model` does not exist yet: check it in `on_fit_start` (still before step 1).
        self._check_deferred = is_overridden("configure_model", pl_module)
        if not self._check_deferred:
            self._check_model(pl_module)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._check_deferred:
            self._check_deferred = False
            self._check_model(pl_module)

    def _check_model(self, pl_module: pl.LightningModule) -> None:
        try:
            target = self.target(pl_module)
            with gathered_parameters(target):  # collective when sharded: every rank runs this hook
                self.monitor.check_model(target)
        except (ValueError, TypeError) as err:
            raise MisconfigurationException(f"NeuroMFACallback cannot analyse this model: {err}") from err
        except (ImportError, RuntimeError) as err:
            raise MisconfigurationException(f"NeuroMFACallback(backend={self.monitor.metric_kwargs['backend']!r}): {err}") from err

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._disabled = bool(trainer.fast_dev_run)
        if self._disabled:
            return
        resumed = self.monitor.resumed  # from the checkpoint state: the same on every rank
        self.monitor.start_history(trainer.global_step)
        if not resumed:
            self._snapshot(trainer, pl_module)
            self._log(trainer, self.monitor.drain())

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._disabled:
            return
        self._log(trainer, self.monitor.drain())
        step = trainer.global_step
        if step > self.monitor.last_step and step % self.every_n_train_steps == 0:
            self._log(trainer, self.monitor.drain(block=True) if _needs_collective_drain() else [])
            self._snapshot(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._disabled:
            return
        self._log(trainer, self.monitor.flush(), final=True)
        self.monitor.close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        try:
            if not _needs_collective_drain():  # collectives after a failure could hang other ranks
                self._log(trainer, self.monitor.flush())
        except Exception as err:  # noqa: BLE001 - never mask the training exception
            import warnings

            warnings.warn(f"NeuroMFA could not flush pending snapshots after {exception!r}: {err!r}", RuntimeWarning, stacklevel=2)
        finally:
            self.monitor.close()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.monitor.close()

    def state_dict(self) -> dict[str, Any]:
        return self.monitor.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state_dict)


def _needs_collective_drain() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1
