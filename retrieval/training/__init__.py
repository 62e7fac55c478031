"""The training loop and what feeds it: config, example tables joined to the corpus, collators.

Runs inside one worker process (DeepSpeed engine, torch.distributed); launching is pipelines/'.
"""
