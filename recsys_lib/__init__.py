"""Jupyter-first recommender systems, from notebook prototype to scheduled production job

Modules:

- `recsys_lib.metrics`: Top-K accuracy metrics (precision, recall, NDCG, MAP, MRR, hit rate) and beyond-accuracy metrics (coverage, novelty, ARP) of a recommendation table against ground truth, for every user in one vectorised pass.
- `recsys_lib.synthetic`: A seeded generator of interaction logs that have the structure real logs have: a popularity head and a long tail, user tastes, sessions, sequences, and items released over time."""

__version__ = "0.0.1"
