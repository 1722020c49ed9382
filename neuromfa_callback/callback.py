"""``NeuroMFACallback``: NeuroMFA snapshots while a Lightning ``Trainer`` trains, logged next to the loss.

Scheduling only: the numerics live in :mod:`neuromfa_callback.functional` and
:class:`~neuromfa_callback.NeuroMFA`; the snapshot pipeline in :mod:`neuromfa_callback.monitor`;
logging in :mod:`neuromfa_callback.loggers`.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.model_helpers import is_overridden

from neuromfa_callback._checks import check_int, check_positive_int
from neuromfa_callback._dist import distributed
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

    Snapshots: the baseline for E is taken just before the first optimizer step (the initial weights;
    the first training step's forward pass, observed with hooks that are then removed, shows which
    layers read the same neurons), then whenever ``every_n_train_steps`` optimizer steps have passed
    since the last snapshot, and once more for the final weights at the end of training. Gradient
    accumulation does not fire twice; sanity checks and ``fast_dev_run`` are skipped. A new ``fit``
    starts a new baseline and history; a fit resumed from a checkpoint continues both.

    Every logger in ``trainer.loggers`` receives ``neuromfa/alpha0``, ``neuromfa/width``,
    ``neuromfa/emergence``, their ``_std`` across samples, the scale-controlled ``neuromfa/*_rms``
    values, the weighted-degree baseline, the null-model values (``null > 0``), the ill-formed count and
    the error count, at the step the weights were snapshotted. W&B also gets incremental tables (the
    spectrum; per depth), an f(alpha) chart and images (spectra, trends, alpha(q) by step, alpha0 and E
    by depth); TensorBoard gets the figures.

    Args:
        every_n_train_steps: snapshot interval in optimizer steps (>= 1).
        figure_every_n_snapshots: log figures every this many snapshots (and at the end); 0: only at the end.
        log_tables: log the W&B tables.
        log_per_depth: also log one scalar per depth (``neuromfa/depth/<name>/alpha0``, ...).
        prefix: metric-name prefix.
        **kwargs: the snapshot options of :class:`~neuromfa_callback.monitor.SnapshotMonitor`
            (``scale_control=True``, ``history_path=None``, ``asynchronous="auto"``, ``on_error="warn"``,
            ``history_window=512``) and the analysis options of
            :class:`~neuromfa_callback.NeuroMFAOptions` (``samples=10``, ``neurons_per_layer=32``,
            ``full=False``, ``null=0``, ``architecture="auto"``, ``module=None`` (an attribute path of
            the LightningModule or a callable), ``backend="auto"``, ``threshold``, ...).

    Raises:
        ValueError, TypeError: invalid arguments (in ``__init__``).
        MisconfigurationException: in ``setup``: a model without weight operators, no logger and no
            ``history_path``, a backend that cannot run, or a sharded strategy whose weights it cannot
            gather (``FSDPStrategy``, ``DeepSpeedStrategy``, ``XLAFSDPStrategy``). ``ModelParallelStrategy``
            (FSDP2 ``fully_shard`` and/or tensor parallelism) is supported: at each snapshot every rank
            all-gathers the full parameters.

    Example:
        >>> from neuromfa_callback import NeuroMFACallback
        >>> cb = NeuroMFACallback(every_n_train_steps=50, samples=4, module="model")
        >>> cb.every_n_train_steps, cb.monitor.scale_control, cb.monitor.options.samples, cb.state_key
        (50, True, 4, "NeuroMFACallback{'module': 'model', 'prefix': 'neuromfa/'}")
    """

    def __init__(
        self,
        every_n_train_steps: int = 100,
        *,
        figure_every_n_snapshots: int = 10,
        log_tables: bool = True,
        log_per_depth: bool = False,
        prefix: str = "neuromfa/",
        **kwargs: Any,
    ) -> None:
        self.every_n_train_steps = check_positive_int("every_n_train_steps", every_n_train_steps)
        self.figure_every_n_snapshots = check_int("figure_every_n_snapshots", figure_every_n_snapshots, minimum=0)
        if not isinstance(prefix, str):
            raise TypeError(f"Expected `prefix` to be a str, got {prefix!r}")
        self.monitor = SnapshotMonitor(**kwargs)
        self.record_logger = RecordLogger(prefix=prefix, log_tables=log_tables, log_per_depth=bool(log_per_depth))
        self.prefix = prefix
        self._disabled = False
        self._check_deferred = False
        self._discovering = False
        self._resumed = False
        self._snapshots_since_figure = 0

    @property
    def state_key(self) -> str:
        """Unique per configuration, so several monitors (another ``module`` or ``prefix``) coexist in one Trainer."""
        module = self.monitor.options.module
        module = module if module is None or isinstance(module, str) else getattr(module, "__qualname__", repr(module))
        return self._generate_state_key(module=module, prefix=self.prefix)

    @property
    def history(self) -> list[dict[str, Any]]:
        """The finished snapshot records kept in RAM (thinned beyond ``history_window``; the file has all)."""
        return self.monitor.history

    # ------------------------------------------------------------------------------- helpers
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
        if distributed():  # finalise earlier snapshots at a point every rank reaches
            self._log(trainer, self.monitor.drain(block=True))
        # Sharded (DTensor) parameters: every rank gathers them here (collective; every rank snapshots at the
        # same steps) and the sampled submatrices are copied before the shards are put back.
        with gathered_parameters(pl_module):
            self.monitor.snapshot(pl_module, trainer.global_step, epoch=trainer.current_epoch)

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
        self.monitor.close()
        self.monitor.reset()  # a new fit: new baseline and history (a checkpoint's state is loaded after this)
        self._snapshots_since_figure = 0
        # A model built in `configure_model` does not exist yet: check it in `on_fit_start` (still before step 1).
        self._check_deferred = is_overridden("configure_model", pl_module)
        if not self._check_deferred:
            self._check_model(pl_module)

    def _check_model(self, pl_module: pl.LightningModule) -> None:
        try:
            with gathered_parameters(pl_module):  # collective when sharded: every rank runs this hook
                self.monitor.check_model(pl_module)
        except (ValueError, TypeError) as err:
            raise MisconfigurationException(f"NeuroMFACallback cannot analyse this model: {err}") from err
        except (ImportError, RuntimeError) as err:
            raise MisconfigurationException(f"NeuroMFACallback(backend={self.monitor.options.backend!r}): {err}") from err

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._check_deferred:
            self._check_deferred = False
            self._check_model(pl_module)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._disabled = bool(trainer.fast_dev_run)
        if self._disabled:
            return
        self._resumed = self.monitor.resumed  # from the checkpoint state: the same on every rank
        self.monitor.start_worker(pl_module)  # the analysis process starts while the first step runs
        self.monitor.start_history(trainer.global_step)
        self.monitor.begin_discovery(pl_module)  # removed after the first forward pass, before the first step
        self._discovering = True
        if self._resumed:
            for _ in self.monitor.steps_to_redo(trainer.global_step):
                self._snapshot(trainer, pl_module)  # the checkpoint's weights are that step's weights

    def _end_discovery(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._discovering:
            return
        self._discovering = False
        self.monitor.end_discovery()
        if not self._resumed:
            self._snapshot(trainer, pl_module)  # the baseline: the weights before the first optimizer step
            self._log(trainer, [] if distributed() else self.monitor.drain())

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        if not self._disabled:
            self._end_discovery(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._disabled:
            return
        self._end_discovery(trainer, pl_module)  # no optimizer step seen (a custom loop): structure from this batch
        if not distributed():
            self._log(trainer, self.monitor.drain())
        step = trainer.global_step
        if step - self.monitor.last_step >= self.every_n_train_steps:
            self._snapshot(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._disabled:
            return
        self._end_discovery(trainer, pl_module)
        if trainer.global_step > self.monitor.last_step:
            self._snapshot(trainer, pl_module)  # the final weights
        self._log(trainer, self.monitor.flush(), final=True)
        self.monitor.close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        try:
            if not distributed():  # collectives after a failure could hang other ranks
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
