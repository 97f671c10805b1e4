"""The training loop: data, sharded state and compiled step; restore, train, evaluate, checkpoint, export.

hyperparameters -> jax.distributed -> data -> model/optimizer state (sharded) -> restore the latest
checkpoint -> train (log, evaluate, checkpoint) -> export `model/` and the loss curves. On SIGTERM
the loop checkpoints at the current step and raises `Interrupted` (no export). With MLFLOW_TRACKING_URI
set, the first host also logs the run to MLflow (`tracking`).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from jax_llm.contract import distributed
from jax_llm.contract.hyperparameters import HyperparameterError, TrainConfig
from jax_llm.contract.metrics import format_eval_line, format_train_line
from jax_llm.contract.paths import LOSS_CURVES_JSON, LOSS_CURVES_PNG, METRICS_FILE, SageMakerPaths
from jax_llm.data.channels import load_training_data
from jax_llm.model.config import ModelConfig
from jax_llm.model.export import ParamsWriter, param_arrays, write_metrics, write_model_files
from jax_llm.training import sharding, tracking
from jax_llm.training.checkpointing import Checkpointer
from jax_llm.training.interruption import Interrupted, StopFlag
from jax_llm.training.loss_curves import write_loss_curves
from jax_llm.training.optimizer import learning_rate_schedule, make_optimizer
from jax_llm.training.peak_flops import device_peak
from jax_llm.training.train_step import abstract_state, create_train_state, make_eval_step, make_train_step


class Trainer:
    """One training run: the constructor sets up; then `train()` (or `step()`), `export()`, `close()`."""

    def __init__(self, config: TrainConfig, paths: SageMakerPaths, stop: StopFlag, work_dir: Path):
        """`work_dir`: local scratch for raw text tokenized at start; the caller removes it."""
        self.config, self.paths, self.stop = config, paths, stop
        distributed.join_cluster(resource_config=paths.resource_config)
        self.process_index, self.process_count = jax.process_index(), jax.process_count()
        self.n_devices = jax.device_count()
        _check_batch_layout(config, self.n_devices, self.process_count)
        try:
            mesh_shape = sharding.mesh_shape(config.mesh, self.process_count, jax.local_device_count())
        except ValueError as error:
            raise HyperparameterError("mesh", str(error)) from None

        self.data = load_training_data(
            paths, vocab_size=config.vocab_size, seq_len=config.seq_len, seed=config.seed, work_dir=work_dir
        )
        on_gpu = jax.default_backend() == "gpu"
        compute_dtype = (
            config.compute_dtype if config.compute_dtype != "auto" else ("bfloat16" if on_gpu else "float32")
        )
        self.model_config = ModelConfig.preset(
            config.preset,
            vocab_size=-(-self.data.vocab_size // 128) * 128,  # round up: tensor-core friendly
            max_seq_len=config.seq_len,
            compute_dtype=compute_dtype,
            remat=config.remat,
        )

        self.mesh = sharding.make_mesh(mesh_shape)
        self.batch_sharding = sharding.batch_sharding(self.mesh)
        self.schedule = learning_rate_schedule(config)
        self.train_state = create_train_state(
            self.model_config, make_optimizer(config), config.seed, self.mesh, config.fsdp
        )
        self.checkpointer = Checkpointer(paths.checkpoints, keep=config.keep_checkpoints)
        self.history: dict[str, list[list[float]]] = {"train_loss": [], "val_loss": []}
        try:
            self.start_step = self._restore()
        except BaseException:  # no usable checkpoint: release Orbax's threads before the job fails
            self.checkpointer.close()
            raise

        self.peak, peak_source = device_peak(compute_dtype)
        self.flops_per_token = self.model_config.flops_per_token(config.seq_len)
        peak_text = "n/a" if self.peak is None else f"{self.peak / 1e12:.3f} TFLOP/s"
        self._log(
            f"model {config.preset}: {self.model_config.num_params() / 1e6:.1f}M parameters, "
            f"vocab {self.model_config.vocab_size}, {compute_dtype}; {self.process_count} process(es), "
            f"{self.n_devices} device(s) ({jax.devices()[0].device_kind}) as a data x fsdp mesh of "
            f"{dict(self.mesh.shape)}; peak {peak_text} per device ({peak_source})"
        )
        started = time.perf_counter()
        example = self._batch(self.start_step)
        step_fn = make_train_step(self.train_state, config.grad_accum_steps, self.batch_sharding)
        self.train_step = step_fn.lower(self.train_state.state, example).compile()  # compiled once, here
        self.eval_step = make_eval_step(self.train_state, self.batch_sharding)
        self._log(f"train step compiled in {time.perf_counter() - started:.1f} s")
        self.tracker = tracking.start(first_host=self.process_index == 0)
        self.tracker.log_params(
            {
                **dataclasses.asdict(config),
                **{f"model.{k}": v for k, v in dataclasses.asdict(self.model_config).items()},
            }
        )

    def _log(self, line: str) -> None:
        if self.process_index == 0:
            print(line, flush=True)

    def _restore(self) -> int:
        """Continues from the latest checkpoint, if any; returns the first step to run."""
        restored = self.checkpointer.restore_latest(abstract_state(self.train_state))
        if restored is None:
            return 0
        saved = restored.meta.get("hyperparameters", {})
        now = dataclasses.asdict(self.config)
        changed = {k: (saved[k], v) for k, v in now.items() if k in saved and saved[k] != v}
        if changed:
            self._log(f"warning: hyperparameters differ from the checkpoint's (saved, now): {changed}")
        self.train_state.state = restored.state
        self.history = restored.meta["history"]
        self._log(f"restored checkpoint {restored.step} from {self.checkpointer.directory}")
        return restored.step

    def _batch(self, step: int):
        """Step `step`'s global batch [batch_size, seq_len + 1], each process supplying its own rows."""
        c = self.config
        rows = self.data.train.batch(step, c.batch_size, c.seq_len, self.process_index, self.process_count)
        return sharding.global_batch(rows, self.batch_sharding, c.batch_size)

    def _checkpoint(self, done: int) -> None:
        meta = {
            "seed": self.config.seed,
            "history": self.history,
            "hyperparameters": dataclasses.asdict(self.config),
        }
        self.checkpointer.save(done, self.train_state.state, meta)

    def _evaluate(self, done: int) -> float:
        c = self.config
        rows = c.micro_batch_size  # what fits in memory for a forward pass
        batches = self.data.validation.eval_batches(
            rows, c.seq_len, c.eval_batches, self.process_index, self.process_count
        )
        losses = [
            self.eval_step(self.train_state.state, sharding.global_batch(b, self.batch_sharding, rows))
            for b in batches
        ]
        val_loss = float(np.mean(jax.device_get(losses)))
        self.history["val_loss"].append([done, val_loss])
        self._log(format_eval_line(done, c.max_steps, val_loss=val_loss))
        self.tracker.log_metrics({"val_loss": val_loss}, done)
        return val_loss

    def step(self, step: int):
        """Step `step` of the loop: stop if SIGTERM came, else dispatch the update on this step's batch.

        Returns the loss as a device array without waiting for it: the next batch is read on the host
        while the device still computes this step.
        """
        if distributed.should_stop(step, self.stop.requested):
            self._log(f"SIGTERM: saving checkpoint {step} and stopping")
            self._checkpoint(step)
            self.checkpointer.wait()
            raise Interrupted(step, self.checkpointer.directory)
        self.train_state.state, loss = self.train_step(self.train_state.state, self._batch(step))
        return loss

    def log_interval(self, done: int, losses: list, interval_started: float, run_started: float) -> float:
        """Logs the mean loss of the last `len(losses)` steps and their throughput (after the device wait)."""
        c = self.config
        train_loss = float(np.mean(jax.device_get(losses)))  # waits for the device
        now = time.perf_counter()
        seconds_per_step = (now - interval_started) / len(losses)
        tokens_per_sec = c.batch_size * c.seq_len / seconds_per_step
        flops_per_sec = tokens_per_sec * self.flops_per_token
        mfu = None if self.peak is None else flops_per_sec / (self.peak * self.n_devices)
        self.history["train_loss"].append([done, train_loss])
        learning_rate = float(self.schedule(done - 1))
        self._log(
            format_train_line(
                done,
                c.max_steps,
                train_loss=train_loss,
                learning_rate=learning_rate,
                tokens_per_sec=tokens_per_sec,
                mfu=mfu,
                elapsed_s=now - run_started,
                eta_s=seconds_per_step * (c.max_steps - done),
            )
        )
        self.tracker.log_metrics(
            {
                "train_loss": train_loss,
                "learning_rate": learning_rate,
                "tokens_per_sec": tokens_per_sec,
                "mfu": mfu,
            },
            done,
        )
        return train_loss

    def train(self) -> dict:
        """Runs the remaining steps; returns the final metrics. Raises Interrupted on SIGTERM."""
        c = self.config
        run_started = interval_started = time.perf_counter()
        interval_losses = []
        for step in range(self.start_step, c.max_steps):
            interval_losses.append(self.step(step))
            done = step + 1
            if done % c.log_every == 0 or done == c.max_steps:
                self.log_interval(done, interval_losses, interval_started, run_started)
                interval_losses, interval_started = [], time.perf_counter()
            if c.eval_every and done % c.eval_every == 0 and done != c.max_steps:
                eval_started = time.perf_counter()
                self._evaluate(done)
                interval_started += time.perf_counter() - eval_started  # tokens/s counts training only
            if c.checkpoint_every and done % c.checkpoint_every == 0:
                self._checkpoint(done)
        # The final evaluation, unless the restored history has it already: a job restarted after its last
        # checkpoint (step max_steps, saved before that evaluation) evaluates the same weights again.
        if not self.history["val_loss"] or self.history["val_loss"][-1][0] != c.max_steps:
            val_loss = self._evaluate(c.max_steps)
        else:
            val_loss = self.history["val_loss"][-1][1]
        train_loss = self.history["train_loss"][-1][1] if self.history["train_loss"] else float("nan")
        self.checkpointer.wait()
        return {
            "train_loss": train_loss,
            "val_loss": val_loss,
            "steps": c.max_steps,
            "tokens": c.max_steps * c.batch_size * c.seq_len,
            "train_seconds": time.perf_counter() - run_started,
        }

    def export(self, metrics: dict) -> None:
        """Writes model/ one parameter at a time: each is gathered to host memory (the only whole array at any
        moment), cast to the compute dtype and appended by process 0; then process 0 writes the curves."""
        params_dtype = "bfloat16" if self.model_config.compute_dtype == "bfloat16" else "float32"
        writer = None
        if self.process_index == 0:
            write_model_files(
                self.paths.model,
                self.model_config,
                self.data.tokenizer_file,
                params_dtype,
                extra={"hyperparameters": dataclasses.asdict(self.config)},
            )
            writer = ParamsWriter(self.paths.model, params_dtype)
        try:
            for key, value in param_arrays(self.train_state.model()):
                whole = multihost_utils.process_allgather(value, tiled=True)  # every process takes part
                if writer is not None:
                    writer.add(key, whole)
                del whole
        finally:
            if writer is not None:
                writer.close()
        if self.process_index != 0:
            return
        write_metrics(self.paths.model, metrics)
        write_loss_curves(self.paths.output_data, self.history)
        self._log(f"exported model to {self.paths.model} ({params_dtype}): {json.dumps(metrics)}")
        self.tracker.save(self.paths.output_data / tracking.RECORD_FILE)
        self.tracker.log_artifacts(
            [
                self.paths.output_data / LOSS_CURVES_PNG,
                self.paths.output_data / LOSS_CURVES_JSON,
                self.paths.model / METRICS_FILE,
            ]
        )

    def close(self) -> None:
        """Releases the checkpointer (after its pending saves)."""
        self.checkpointer.close()


def _check_batch_layout(config: TrainConfig, n_devices: int, n_processes: int) -> None:
    """Each micro-batch must split evenly over the devices (and so over the hosts)."""
    if config.micro_batch_size % n_devices:
        raise HyperparameterError(
            "batch_size",
            f"batch_size / grad_accum_steps = {config.micro_batch_size} must be a multiple "
            f"of the {n_devices} devices over {n_processes} host(s)",
        )


def run(config: TrainConfig, paths: SageMakerPaths, stop: StopFlag) -> dict:
    """Trains (or resumes) and exports; returns the final metrics. The MLflow run ends FINISHED, KILLED
    (SIGTERM) or FAILED with it.

    The scratch directory for tokenized raw text is removed however the run ends: done, failed or
    stopped by SIGTERM (which ends it with the Interrupted exception, through here).
    """
    with tempfile.TemporaryDirectory(prefix="jax-llm-data-") as work_dir:
        training = Trainer(config, paths, stop, Path(work_dir))
        status = "FAILED"
        try:
            metrics = training.train()
            training.export(metrics)
            status = "FINISHED"
            return metrics
        except Interrupted:
            status = "KILLED"
            raise
        finally:
            training.tracker.close(status)
            training.close()
