"""Jupyter-first recommender systems, from notebook prototype to scheduled production job

Modules:

- `recsys_lib.als`: Implicit-feedback matrix factorisation (Hu, Koren & Volinsky 2008), solved by the `implicit` library and adapted to the recsys_lib model interface.
- `recsys_lib.cli`: The `recsys` console script: thin subcommands over library functions, with one-line errors and exit status 2 on bad input.
- `recsys_lib.core`: Runtime settings from `settings.ini` (typed keys, one section per profile, environment overrides), the error classes, atomic writes of files and folders, and content fingerprints shared by every module.
- `recsys_lib.data`: The `Interactions` container: validation with errors that name the column, count and rows; dense id codes with saveable maps; CSR matrices and time-ordered sequences; loaders for Parquet, CSV, MovieLens and RecBole; filters.
- `recsys_lib.ease`: Embarrassingly Shallow Autoencoder (Steck, 2019): a closed-form item-item model, one regularised inverse of the Gram matrix, float32 by default.
- `recsys_lib.evaluation`: Evaluate a model on a frozen holdout, put bootstrap confidence intervals on its metrics, compare a challenger with the champion user by user, decide whether to promote it, and break the metrics down by segment.
- `recsys_lib.inference`: Top-K for every user over the whole catalogue, scored in blocks on numpy or torch, streamed to Parquet part files in bounded memory and published atomically with a checksummed manifest.
- `recsys_lib.itemknn`: Item-item collaborative filtering with shrunk cosine similarity and top-N neighbour pruning, computed in blocks and sparse throughout.
- `recsys_lib.metrics`: Top-K accuracy metrics (precision, recall, NDCG, MAP, MRR, hit rate) and beyond-accuracy metrics (coverage, novelty, ARP) of a recommendation table against ground truth, for every user in one vectorised pass.
- `recsys_lib.models`: One interface for every recommender (fit, recommend, score, save, load), top-K with deterministic ties, artifacts of plain arrays and JSON verified by SHA-256 on load, and the popularity baseline.
- `recsys_lib.monitor`: Compare a new window of interactions (and of model scores) with the training data: population stability of item popularity and user activity, the share of new items and users, score shift, and a retrain signal with reasons.
- `recsys_lib.params`: The typed parameter contract of a pipeline notebook: each parameter's name, type, default, help and whether it is required, read from the cell tagged `parameters`; values checked and converted to the declared type before anything runs; secrets kept out of the notebook.
- `recsys_lib.pipeline`: The library side of the `pipelines/` notebooks: data loading with a cached synthetic default, frozen splits shared by every run, registration after success, the promotion gate, and the checks a batch output passes before publishing.
- `recsys_lib.runner`: Run a pipeline notebook with papermill after checking its typed parameters, keep the executed notebook with its parameters, metrics and a manifest in a run folder, and report failed, timed-out, killed and interrupted runs as what they are.
- `recsys_lib.sagemaker.cloud`: `recsys run NOTEBOOK --profile sagemaker`: the notebook a scientist ran locally runs as a SageMaker training job (or a processing job for batch inference), through the SageMaker Python SDK v3, and comes back as a local run.
- `recsys_lib.sagemaker.entrypoint`: `python -m recsys_lib.sagemaker.entrypoint`: run a pipeline notebook inside a SageMaker training or processing container, following the container contract, and never let a failed notebook look like a completed job.
- `recsys_lib.sagemaker.local`: The `sagemaker-local` profile: lay out the SageMaker container contract in a temporary folder, run the real entrypoint in a subprocess with the environment SageMaker sets, and collect its outputs the way the cloud path does after downloading them.
- `recsys_lib.sagemaker.schedule`: `recsys schedule NOTEBOOK --cron "0 3 * * *"`: a SageMaker Pipeline that wraps the notebook's job, started by an EventBridge Scheduler schedule; on the local profile, the crontab line that runs `recsys run`.
- `recsys_lib.sasrec`: Self-attentive sequential recommendation (Kang & McAuley 2018) trained with full-catalogue cross-entropy (SASRec+, Klenitskiy & Vasilev 2023), as a PyTorch Lightning model behind the common `Recommender` interface.
- `recsys_lib.spark.als`: Spark MLlib's implicit-feedback ALS behind the recsys_lib model vocabulary: fit on a Spark DataFrame, top-K in Spark with seen items removed by an anti-join and ties broken by item, checksummed Parquet artifacts, and a conversion to the local `ALS` when the factors fit in one process.
- `recsys_lib.spark.data`: The interaction contract of `recsys_lib.data` on PySpark DataFrames: the same validation rules and error messages, the same id codes, the same filters and splits, and a guarded way back to pandas `Interactions`.
- `recsys_lib.spark.metrics`: The metrics of `recsys_lib.metrics` (precision, recall, NDCG, MAP, MRR, hit rate, coverage, novelty, ARP) on Spark DataFrames: the same definitions, names and errors, computed with joins, windows and aggregations.
- `recsys_lib.spark.pipeline`: What a pipeline notebook calls when its parameter `engine` is `"spark"`: data preparation, the frozen split, fitting and evaluation with the data in Spark, so the notebook's steps stay the same on either engine.
- `recsys_lib.spark.scoring`: Top-K for millions of users on Spark with the same model artifact and the same ranking code as `batch_recommend`: the model ships once per executor process, users are scored in bounded batches with `mapInPandas`, and the Parquet output is published atomically with a checksummed manifest.
- `recsys_lib.spark.session`: One way to get a SparkSession for `engine="spark"` steps: the cluster's own session when there is one, else a `local[*]` session built from the profile's `spark_*` keys in settings.ini.
- `recsys_lib.split`: Random per-user holdout, global temporal split and leave-last-N-out, each returning train, validation and test parts that share the id maps, with every interaction in exactly one part.
- `recsys_lib.synthetic`: A seeded generator of interaction logs that have the structure real logs have: a popularity head and a long tail, user tastes, sessions, sequences, and items released over time.
- `recsys_lib.tracking`: MLflow experiment tracking and model registry: a SQLite file and a local artifact folder by default, a tracking server when configured; pipeline runs logged from their run directories, models registered only after a successful run, `champion` / `challenger` aliases, and models loaded back with their checksums verified."""

__version__ = "0.0.1"
