"""RQA's library: models, losses, data tables, encoding, FAISS, metrics and the training loop.

Nothing in here imports Ray or knows about the CLI, so every piece is usable from a notebook.
"""

__version__ = "0.1.0"
