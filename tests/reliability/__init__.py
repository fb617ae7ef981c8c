"""Reliability: every promise of DESIGN.md ("What every part promises") as a tested mechanism.

Fault matrix (fault -> expected outcome -> test):

| fault | expected outcome | test |
|---|---|---|
| an actor dies mid-unit (``os._exit`` in the actor) | unit retried on a fresh actor (up to ``resources.max_retries``); sweep completes; each ``(run_id, step)`` exactly once; attempt count in the marker and ``doodl status`` | ``test_worker_and_driver_death.py::test_dead_worker_unit_is_retried_on_a_fresh_actor`` |
| Ctrl-C during a sweep | exit 130, finished units kept; the next run trains only the rest | ``test_worker_and_driver_death.py::test_ctrl_c_cancels_and_the_next_run_resumes`` |
| the driver is SIGKILLed mid-sweep | re-running trains only units without a commit marker; the store ends with the same rows and bit-identical parameters as an uninterrupted run | ``test_worker_and_driver_death.py::test_killed_driver_resumes_to_the_same_store`` |
| a shard without its commit marker | unit reported torn by ``doodl status``, not read by ``doodl reduce`` (its groups wait), retrained by the next ``doodl sweep`` | ``test_torn_writes.py::test_torn_unit_is_reported_skipped_by_reduce_and_retrained[no-marker]`` |
| a marker whose row count does not match its shard | same | ``test_torn_writes.py::...[row-count]`` |
| a marker whose checksum does not match its shard | same | ``test_torn_writes.py::...[checksum]`` |
| a truncated Parquet file | same | ``test_torn_writes.py::...[truncated]`` |
| a variant's loss turns NaN/inf | it stops updating (masked in its batched unit), is marked ``diverged`` and keeps its trajectory up to there; the other variants of its unit end bit-identical to a run without it | ``test_divergence.py::test_diverging_variant_is_frozen_and_does_not_disturb_the_others`` |
| MLflow unreachable (wrong URI, server down) | training and the store carry on; one warning says logging is deferred; ``doodl sync`` logs everything later, idempotently | ``test_mlflow_outages.py::test_unreachable_mlflow_defers_and_sync_catches_up`` |
| SQLite "database is locked" (another writer holds it) | the call is retried with backoff and succeeds once the lock is released; past the retries, logging is deferred | ``test_mlflow_outages.py::test_locked_database_is_retried_with_backoff``, ``::test_lock_held_past_the_retries_defers`` |
| store path is a file, or cannot be written | exit 2, one line, nothing written | ``test_bad_input.py::test_store_that_is_a_file_or_not_writable`` |
| unknown sweep id | exit 2, one line (status, reduce, sync) | ``test_bad_input.py::test_unknown_sweep_id`` |
| the spec changed since the sweep of that name began | refused (exit 2, one line) unless ``--new-sweep``, which starts sweep ``NAME-HASH`` and leaves the old one untouched | ``test_bad_input.py::test_changed_spec_is_refused_unless_new_sweep`` |
| corrupted ``variants.parquet`` | exit 2, one line naming the file, nothing written (sweep, status, reduce) | ``test_bad_input.py::test_corrupted_variants_file`` |
| YAML with Python object tags | refused by the safe loader, nothing executed | ``test_security.py::test_yaml_is_loaded_safely`` |
| pickles in the store | none: only JSON, Parquet and pictures | ``test_security.py::test_nothing_in_the_store_is_pickled`` |
| sweep or run ids with ``../`` or absolute paths | refused before any path is built (spec names, CLI ids, ids inside a tampered ``variants.parquet``) | ``test_security.py::test_ids_cannot_escape_the_store`` |
| credentials in the environment (MLflow token, Ray token, S3 keys) | used only from the environment; never in params, tags, logs or the store | ``test_security.py::test_planted_secrets_appear_nowhere`` |
| load: many variants | a sweep of hundreds of tiny variants completes, every child logged, driver memory bounded (1,000 variants: ``bench/load_sweep.py``, figures in BENCHMARKS.md) | ``test_load.py::test_many_variants_complete_with_bounded_driver_memory`` |
"""
