"""The inference layer of the pipeline: corpus encoding, query encoding, cross-encoder pair
scoring and top-k search over sharded tables, on Ray actor pools (``actors: N``) or in the driver
process (``actors: 0``: the same worker classes called in turn). Results stream into sharded
tables. Modules: settings (the section keys), pool, workers, steps, search."""
